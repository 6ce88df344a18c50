"""Live servers for the fuzzer: real ``berth serve`` processes, auth on and off, SQLite and PostgreSQL.

``FUZZ_EXAMPLES`` (environment) is the total number of generated cases of a run, shared
out over the servers and the tests (default 2400: about 75 s on this 2-core machine when idle, 3–4 minutes under load);
``make fuzz N=20000`` runs a long one. Every server's log is checked for tracebacks and
its store for consistency at the end (tests/fuzz/test_fuzz.py, last test of each server).
The figures of the run are printed under the summary.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
from dataclasses import dataclass, field

import pytest

from registry.config import Config
from tests.conftest import DATABASE_PARAMS
from tests.e2e.conftest import BerthServer, lower_tempdir
from tests.process.conftest import berth_executable

from .strategies import TENANT
from .wire import Stats, build, send

ADMIN_PASSWORD = "fuzz-admin-password"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "2400"))
# how the cases of one server are shared out over the tests
SHARE = {"routes": 0.5, "framing": 0.15, "uploads": 0.15, "manifests": 0.2}

SERVER_PARAMS = [
    pytest.param((auth, getattr(db, "values", [db])[0]), id=f"{'auth-on' if auth else 'auth-off'}-{getattr(db, 'values', [db])[0]}",
                 marks=getattr(db, "marks", ()))
    for db in DATABASE_PARAMS for auth in (False, True)
]


def examples(test: str) -> int:
    return max(10, int(EXAMPLES * SHARE[test] / len(SERVER_PARAMS)))


@dataclass
class Live:
    server: BerthServer
    auth: bool
    database: str
    database_url: str | None
    stats: Stats = field(default_factory=Stats)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def label(self) -> str:
        return f"{'auth on' if self.auth else 'auth off'}, {self.database}"

    def admin_basic(self) -> bytes:
        return b"Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode())

    def creds_header(self) -> list[tuple[bytes, bytes]]:
        """What a well-behaved client of this server sends: admin's Basic credentials with auth on."""
        return [(b"Authorization", self.admin_basic())] if self.auth else []

    def request(self, method: str, path: str, body: bytes | None = None, headers: list[tuple[bytes, bytes]] | None = None):
        hdrs = [(b"Host", f"127.0.0.1:{self.port}".encode()), *self.creds_header(), *(headers or [])]
        self.stats.requests += 1
        return send(self.port, build(method, path.encode(), hdrs, body), method=method)

    def config(self) -> Config:
        return Config(data_dir=self.server.data, database_url=self.database_url)


_ALL: list[Live] = []


@pytest.fixture(scope="session", params=SERVER_PARAMS)
def live(request):
    auth, db = request.param
    berth_executable()
    url = None
    cm = None
    if db == "postgres":
        cm = request.getfixturevalue("postgres_cluster").database()
        url = cm.__enter__()
    root = lower_tempdir("berth-fuzz-")
    env = {"BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD, "BERTH_ACCESS_LOG": "false"}
    if url:
        env["BERTH_DATABASE_URL"] = url
    server = BerthServer(root, auth=auth, env=env)
    server.start()
    live = Live(server, auth, db, url)
    _ALL.append(live)
    if auth:  # the tenant valid names live in; the first login pays bcrypt, later ones hit the cache
        r = live.request("POST", "/admin/tenants", json.dumps({"name": TENANT}).encode(),
                         [(b"Content-Type", b"application/json")])
        assert r.status == 201, (r.status, r.body)
    try:
        yield live
    finally:
        server.stop()
        if cm is not None:
            cm.__exit__(None, None, None)
        if not any(live.stats.failures.values()):
            shutil.rmtree(root, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    if not _ALL:
        return
    tr = terminalreporter
    tr.write_sep("-", "fuzz figures")
    total = Stats()
    for live in _ALL:
        s = live.stats
        tr.write_line(f"{live.label}: {s.cases} cases, {s.requests} requests, {s.parser_400} answered by the HTTP parser, "
                      f"{s.no_answer_expected} cut short by the client (no answer expected), failures: {s.failures or 0}")
        total.cases += s.cases
        total.requests += s.requests
        for k, v in s.failures.items():
            total.fail(k) if v == 1 else total.failures.__setitem__(k, total.failures.get(k, 0) + v)
    tr.write_line(f"total: {total.cases} cases, {total.requests} requests, failures: {total.failures or 0} "
                  f"(FUZZ_EXAMPLES={EXAMPLES}, logs at {[str(x.server.log_path) for x in _ALL if x.stats.failures]})")
