"""A server SIGKILLed in the middle of a PATCH body, restarted on the same data directory.

What a client sees afterwards: the upload session still exists, its ``Range`` covers only
the chunks that were acknowledged (202) before the kill, not the bytes of the PATCH that
was cut off; the client resumes from there with the right ``Content-Range``, finishes with
``PUT ?digest=`` and pulls back exactly what it meant to push.
"""
from __future__ import annotations

import os
import socket

import pytest

from tests.conftest import sha256

from .conftest import database_env

pytestmark = pytest.mark.process

OCTET = "application/octet-stream"
FIRST = os.urandom(64 * 1024)  # acknowledged before the kill
CUT_DECLARED = 128 * 1024 * 1024  # the PATCH that is cut off: what its headers promise …
CUT_SENT = 96 * 1024 * 1024  # … and what the client manages to send before the server dies
REST = os.urandom(1024 * 1024) + b"the end"  # sent after the restart


def _patch(server, location: str, data: bytes, start: int):
    return server._send("PATCH", location, {"Content-Type": OCTET, "Content-Range": f"{start}-{start + len(data) - 1}",
                                            "Content-Length": str(len(data))}, data)


def test_sigkill_in_the_middle_of_a_patch(servers, process_root, database_url):
    data = process_root / "data"
    env = database_env(database_url)
    server = servers(data, env=env)

    res = server._send("POST", "/v2/lib/killed/blobs/uploads/", {"Content-Length": "0"}, b"")
    assert res.status == 202
    location = res.headers["location"]
    res = _patch(server, location, FIRST, 0)
    assert (res.status, res.headers["range"]) == (202, f"0-{len(FIRST) - 1}")
    location = res.headers["location"]

    # a PATCH whose body stops in the middle; sendall() returning means the server has taken in
    # all but what the two socket buffers hold (at most 32 MiB + 4 MiB here), so it is writing
    path = location if location.startswith("/") else "/" + location.split("/", 3)[3]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    sock.connect(("127.0.0.1", server.port))
    start = len(FIRST)
    head = (f"PATCH {path} HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: {OCTET}\r\n"
            f"Content-Length: {CUT_DECLARED}\r\nContent-Range: {start}-{start + CUT_DECLARED - 1}\r\n\r\n")
    sock.sendall(head.encode())
    block = b"\xee" * (1024 * 1024)  # bytes that must never end up in the blob
    for _ in range(CUT_SENT // len(block)):
        sock.sendall(block)
    server.proc.kill()  # SIGKILL: no handler, no cleanup
    server.proc.wait(10)
    sock.close()

    restarted = servers(data, env=env)
    res = restarted._send("GET", location, {}, None)
    assert res.status == 204, res.body
    assert res.headers["range"] == f"0-{len(FIRST) - 1}", "Range must cover only the acknowledged chunk"
    assert restarted._send("PATCH", location, {"Content-Type": OCTET, "Content-Range": f"{start + 1}-{start + 1}",
                                               "Content-Length": "1"}, b"x").status == 416
    res = _patch(restarted, location, REST, start)
    assert (res.status, res.headers["range"]) == (202, f"0-{len(FIRST) + len(REST) - 1}"), res.body
    location = res.headers["location"]
    blob = FIRST + REST
    sep = "&" if "?" in location else "?"
    res = restarted._send("PUT", f"{location}{sep}digest={sha256(blob)}", {"Content-Length": "0"}, b"")
    assert res.status == 201, res.body
    res = restarted._send("GET", f"/v2/lib/killed/blobs/{sha256(blob)}", {}, None)
    assert res.status == 200
    assert res.body == blob
