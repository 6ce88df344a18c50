"""Process-level tests: real ``berth serve`` / ``berth gc`` processes on 127.0.0.1, temp data dirs.

The way things happen in production: two servers sharing one data directory (and, for the
PostgreSQL run, one database), a SIGKILL in the middle of a request, the gc command run from
the shell. ``BerthServer`` (tests/e2e/conftest.py) starts and talks to one process; these
fixtures start several on one data directory. A missing ``berth`` executable skips the tests,
or fails them in CI (tests/ci.py).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.ci import skip_or_fail
from tests.e2e.conftest import REPO_ROOT, BerthServer, lower_tempdir


def berth_executable() -> str:
    local = REPO_ROOT / ".venv" / "bin" / "berth"
    if local.exists():
        return str(local)
    found = shutil.which("berth")
    if found is None:
        skip_or_fail("the berth executable is not installed (make .venv/bin/.installed)")
    return found


@pytest.fixture
def process_root():
    root = lower_tempdir("berth-process-")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def servers(process_root, request):
    """``servers(data, auth=False, env=None)`` starts one more ``berth serve`` on the data directory
    ``data`` (several may share one); every server is stopped at the end. On failure the servers'
    logs are printed."""
    berth_executable()
    started: list[BerthServer] = []

    def start(data: Path, *, auth: bool = False, env: dict[str, str] | None = None) -> BerthServer:
        server = BerthServer(lower_tempdir(f"srv{len(started)}-", process_root), auth=auth, env=env or {})
        server.data = data
        started.append(server)
        return server.start()

    yield start
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for s in started:
        if failed:
            print(f"--- log of berth on port {s.port} ---\n{s.log()[-4000:]}")
        s.stop()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def database_env(database_url: str | None) -> dict[str, str]:
    """The environment that points a berth process at the test's database (SQLite: none)."""
    return {"BERTH_DATABASE_URL": database_url} if database_url else {}
