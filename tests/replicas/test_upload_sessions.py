"""Issue 6 and issue 9 (item 1), as reported: two `berth serve --no-auth` processes on one
data directory (filesystem driver, SQLite), one chunked upload whose requests land on both.

Before upload sessions moved into the database, each process kept the offset and running
hash of the uploads it had seen in memory: the 2000-byte push was refused (A's hash had
not seen B's chunk), and the 30-byte one was accepted under the digest of 15 bytes.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAME = "two/processes"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """One `berth serve --no-auth` on 127.0.0.1."""

    def __init__(self, data: Path, log: Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        env["PYTHONPATH"] = str(ROOT)  # this tree's code, whatever is installed
        self._log = open(log, "ab")
        self.log_path = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "registry.cli", "serve", "--no-auth", "--host", "127.0.0.1", "--port", str(self.port), "--data", str(data)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"berth exited ({self.proc.returncode}):\n{self.log_path.read_text()}")
            try:
                if self.request("GET", "/v2/")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"berth did not start:\n{self.log_path.read_text()}")
            time.sleep(0.1)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """Processes A and B on one data directory (the first creates the schema)."""
    work = tmp_path_factory.mktemp("replicas")
    a = Process(work / "data", work / "a.log")
    try:
        a.wait_ready()
        b = Process(work / "data", work / "b.log")
        try:
            b.wait_ready()
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


def start(p: Process) -> str:
    status, headers, body = p.request("POST", f"/v2/{NAME}/blobs/uploads/")
    assert status == 202, body
    return headers["location"]


def patch(p: Process, loc: str, data: bytes, first: int | None = None):
    headers = {"Content-Type": "application/octet-stream"}
    if first is not None:
        headers["Content-Range"] = f"{first}-{first + len(data) - 1}"
    return p.request("PATCH", loc, data, headers)


def test_chunks_on_two_processes_commit_what_both_received(two):
    """Issue 6: POST and PATCH 0-999 on A, PATCH 1000-1999 on B, PUT on A."""
    a, b = two
    data = os.urandom(2000)
    loc = start(a)
    assert patch(a, loc, data[:1000], 0)[0] == 202
    status, headers, _ = patch(b, loc, data[1000:], 1000)
    assert status == 202 and headers["range"] == "0-1999"
    status, headers, _ = a.request("GET", loc)  # A reads the offset B recorded
    assert status == 204 and headers["range"] == "0-1999"
    status, headers, body = a.request("PUT", f"{loc}?digest={sha256(data)}")
    assert status == 201, body
    assert headers["docker-content-digest"] == sha256(data)
    for p in (a, b):
        status, _, got = p.request("GET", f"/v2/{NAME}/blobs/{sha256(data)}")
        assert status == 200 and got == data


def test_a_digest_of_part_of_the_upload_is_refused(two):
    """Issue 9 item 1: PATCH 10 bytes via A, 20 via B, PUT 5 more via A with the digest of
    the 15 bytes A saw → 400 DIGEST_INVALID; nothing placed, the session gone."""
    a, b = two
    first, second, last = b"0123456789", b"abcdefghijklmnopqrst", b"VWXYZ"
    loc = start(a)
    assert patch(a, loc, first)[0] == 202
    assert patch(b, loc, second)[0] == 202
    seen_by_a = sha256(first + last)
    status, _, body = a.request("PUT", f"{loc}?digest={seen_by_a}", last, {"Content-Type": "application/octet-stream"})
    assert status == 400, body
    assert b'"DIGEST_INVALID"' in body
    for p in (a, b):
        assert p.request("GET", f"/v2/{NAME}/blobs/{seen_by_a}")[0] == 404
        assert p.request("GET", loc)[0] == 404
    # the same requests with the digest of everything received: placed, and it hashes right
    loc = start(b)
    assert patch(a, loc, first)[0] == 202
    assert patch(b, loc, second)[0] == 202
    everything = first + second + last
    status, _, body = a.request("PUT", f"{loc}?digest={sha256(everything)}", last)
    assert status == 201, body
    status, _, got = b.request("GET", f"/v2/{NAME}/blobs/{sha256(everything)}")
    assert status == 200 and got == everything and sha256(got) == sha256(everything)


def test_a_chunk_behind_the_other_process_gets_416(two):
    """A chunk that does not start where the database says the upload stands: 416, Range,
    Location and Docker-Upload-UUID, whichever process answers; nothing appended."""
    a, b = two
    loc = start(a)
    assert patch(a, loc, b"x" * 100, 0)[0] == 202
    assert patch(b, loc, b"y" * 100, 100)[0] == 202
    status, headers, body = patch(a, loc, b"z" * 100, 100)  # A's view of the offset is stale
    assert status == 416, body
    assert b'"BLOB_UPLOAD_INVALID"' in body
    assert headers["range"] == "0-199"
    assert headers["location"] == loc and headers["docker-upload-uuid"] == loc.rsplit("/", 1)[1]
    data = b"x" * 100 + b"y" * 100
    assert b.request("PUT", f"{loc}?digest={sha256(data)}")[0] == 201


def test_a_process_killed_mid_chunk_leaves_the_session_to_the_other(tmp_path):
    """SIGKILL A while it streams a chunk: B sees the offset A last recorded, takes over the
    dead process's lease at once (same host) and the upload completes with what was recorded."""
    import sqlite3

    a = Process(tmp_path / "data", tmp_path / "a.log")
    a.wait_ready()
    b = Process(tmp_path / "data", tmp_path / "b.log")
    try:
        b.wait_ready()
        loc = start(a)
        uuid = loc.rsplit("/", 1)[1]
        assert patch(a, loc, b"recorded!", 0)[0] == 202
        # a chunk announced as 1000 bytes, of which A receives 10 and then is killed
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
        conn.putrequest("PATCH", loc)
        conn.putheader("Content-Length", "1000")
        conn.putheader("Content-Range", "9-1008")
        conn.endheaders()
        conn.send(b"lost bytes")
        db = sqlite3.connect(tmp_path / "data" / "berth.db")
        deadline = time.monotonic() + 30
        while db.execute("SELECT lease_token FROM uploads WHERE id = ?", (uuid,)).fetchone()[0] is None:
            assert time.monotonic() < deadline, "A never claimed the session"
            time.sleep(0.02)  # until A holds the session
        db.close()
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        conn.close()
        status, headers, _ = b.request("GET", loc)
        assert status == 204 and headers["range"] == "0-8"
        status, headers, body = patch(b, loc, b" and more", 9)
        assert status == 202, body
        assert headers["range"] == "0-17"
        data = b"recorded! and more"
        assert b.request("PUT", f"{loc}?digest={sha256(data)}")[0] == 201
        assert b.request("GET", f"/v2/{NAME}/blobs/{sha256(data)}")[2] == data
    finally:
        b.stop()
        a.stop()
