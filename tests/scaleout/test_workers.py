"""`berth serve --workers 2`: two processes answer on one port (SQLite), start-up happens once,
SIGTERM stops them all."""
from __future__ import annotations

import os
import re
import time

import pytest

from tests.e2e.conftest import BerthServer, lower_tempdir

pytestmark = pytest.mark.e2e

# a JSON access line of GET /v2/ (log_format json, the default) carries the worker's pid
ACCESS = re.compile(r'"logger": "berth\.access".*"method": "GET", "route": "/v2/".*"pid": (\d+)')


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_two_workers_share_the_port_and_stop_together(tmp_path):
    server = BerthServer(lower_tempdir("workers-", tmp_path), auth=True, extra_args=("--workers", "2"),
                         env={"BERTH_ACCESS_LOG": "1", "BERTH_ADMIN_PASSWORD": "workers-admin-pw"})
    server.start()
    try:
        pids: set[int] = set()
        for _ in range(300):  # every request on a new connection: the kernel spreads them over both
            assert server.request("GET", "/v2/", creds=server.admin).status == 200
            pids = {int(p) for p in ACCESS.findall(server.log())}
            if len(pids) == 2:
                break
        assert len(pids) == 2, server.log()[-3000:]
        assert server.proc.pid not in pids  # the supervisor serves nothing itself
        log = server.log()
        # the once-only start-up ran once: one key, one admin, no worker raced for them
        assert log.count("stored in the database") == 1
        assert log.count("created admin user") == 1
        assert "with 2 workers" in log
    finally:
        server.proc.terminate()
        server.proc.wait(30)
        server.stop()
    assert server.proc.returncode == 0
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids):
        assert time.monotonic() < deadline, f"workers {pids} outlived SIGTERM"
        time.sleep(0.1)
