"""Chaos tests (issue 7 parts 2 and 3): a real ``berth serve`` SIGKILLed at random moments under
concurrent pushes, and garbage collection in a tight loop under the same load.

Knobs (environment): ``CHAOS_KILLS`` (kill points of the SQLite/filesystem run, default 30;
``CHAOS_KILLS_POSTGRES``, ``CHAOS_KILLS_S3``: of the PostgreSQL and S3 runs, default a fifth of
it, at least 5; ``make chaos N=…`` sets all three), ``CHAOS_WORKERS`` (concurrent pushers,
default 4), ``CHAOS_SEED`` (default: random, printed), ``CHAOS_GC_CYCLES``/``CHAOS_GC_RUNS``
(how many collections the GC-under-load test waits for in the server and from ``berth gc``,
default 50 and 3), ``CHAOS_BIG=1`` (also 1–4 MiB layers, rarely). The content store is the
filesystem driver unless the environment names another (``BERTH_STORAGE_DRIVER=s3`` and
``BERTH_STORAGE_S3_*``, passed through to every berth process); once tests/seaweed.py (the s3
branch) is in the tree every chaos test also runs on the S3 driver, under a prefix of its own in
the session's SeaweedFS bucket (``CHAOS_S3=0``: not).
"""
from __future__ import annotations

import importlib.util
import os
import random
import shutil

import pytest

from tests.ci import skip_or_fail
from tests.e2e.conftest import lower_tempdir

from .harness import Killable, berth


def knob(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@pytest.fixture
def seed() -> int:
    s = knob("CHAOS_SEED", random.SystemRandom().getrandbits(32))
    print(f"CHAOS_SEED={s}")
    return s


def _stores() -> list[str]:
    """filesystem; and s3 once tests/seaweed.py (the SeaweedFS fixture of the s3 branch) is in
    the tree, unless CHAOS_S3=0."""
    if os.environ.get("CHAOS_S3", "").lower() in ("0", "no", "false", "off"):
        return ["filesystem"]
    return ["filesystem", "s3"] if importlib.util.find_spec("tests.seaweed") is not None else ["filesystem"]


@pytest.fixture(params=_stores())
def content_env(request, database_url):
    """BERTH_STORAGE_* for the berth processes: {} (the filesystem driver, or whatever the
    environment already says), or a key prefix of its own in the session's SeaweedFS bucket (s3;
    on the first database of BERTH_TEST_DATABASES only, unless CHAOS_S3_ALL_DATABASES=1). The
    prefix is the test's alone: what the kills leave under it is checked by this test's fsck and
    gc only (the driver lists and deletes under its prefix)."""
    if request.param == "filesystem":
        yield {}
        return
    from tests.postgres import DATABASES  # noqa: PLC0415

    current = "postgres" if database_url else "sqlite"
    if current != DATABASES[0] and not os.environ.get("CHAOS_S3_ALL_DATABASES"):
        pytest.skip("the S3 chaos run uses one database (CHAOS_S3_ALL_DATABASES=1 runs it on each)")
    weed = request.getfixturevalue("seaweedfs")  # missing weed: skipped, or failed in CI (tests/seaweed.py)
    yield {
        "BERTH_STORAGE_DRIVER": "s3",
        "BERTH_STORAGE_S3_ENDPOINT": weed.endpoint,
        "BERTH_STORAGE_S3_REGION": getattr(weed, "region", "us-east-1"),
        "BERTH_STORAGE_S3_BUCKET": request.getfixturevalue("s3_bucket"),
        "BERTH_STORAGE_S3_PREFIX": f"chaos-{os.urandom(4).hex()}",
        "BERTH_STORAGE_S3_ACCESS_KEY": weed.access_key,
        "BERTH_STORAGE_S3_SECRET_KEY": weed.secret_key,
    }


@pytest.fixture
def registry(database_url, content_env, request):
    """A killable ``berth serve`` on a fresh data directory (and the test's database)."""
    if shutil.which(berth()) is None and not os.path.exists(berth()):
        skip_or_fail("the berth executable is not installed (make .venv/bin/.installed)")
    root = lower_tempdir("berth-chaos-")
    env = dict(content_env)
    if database_url:
        env["BERTH_DATABASE_URL"] = database_url
    env.update(getattr(request, "param", {}) or {})
    server = Killable(root, env)
    yield server
    server.stop()
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        print(f"--- berth log (last 6000 characters; data kept in {root}) ---\n{server.log()[-6000:]}")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
