"""Raw HTTP/1.1 over a socket, and the rules every answer of Berth must follow.

The fuzzer writes requests byte by byte (control characters, lies in ``Content-Length``,
truncated and chunked bodies are not things an HTTP client library lets one send) and
reads the answer with ``http.client.HTTPResponse``. What counts as a failure:

* no answer at all (the connection closed, or nothing within ``TIMEOUT`` seconds: a hang);
* a 5xx;
* an error (≥ 400, not HEAD) whose body is not ``{"errors": [{"code", "message", …}]}``
  with a code of ``registry.errors.CODES`` — except the HTTP parser's own answers to a
  request that is not HTTP (``400`` text/plain, only where the test sent such bytes);
* a response header holding a control character, a ``WWW-Authenticate`` whose scope
  names something that is not a repository name of the spec's grammar, a ``Location``
  that is not a path of this registry.
"""
from __future__ import annotations

import http.client
import json
import re
import socket
from dataclasses import dataclass, field

from registry.errors import CODES
from registry.names import is_name

TIMEOUT = 30.0  # seconds without a byte from the server before the request counts as hung


class NoAnswer(AssertionError):
    """The server closed the connection, or sent nothing, instead of answering."""


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes = b""

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)


@dataclass
class Stats:
    """What one server saw: requests, and the failures by kind."""
    cases: int = 0
    requests: int = 0
    parser_400: int = 0
    no_answer_expected: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def fail(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1


def build(method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes | None,
          *, framing: bool = True) -> bytes:
    """Request bytes. ``framing`` adds ``Content-Length`` for the body (unless a header sets one)."""
    lines = [method.encode("latin-1") + b" " + target + b" HTTP/1.1"]
    names = {k.lower() for k, _ in headers}
    for k, v in headers:
        lines.append(k + b": " + v)
    if framing and body is not None and b"content-length" not in names and b"transfer-encoding" not in names:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    if b"connection" not in names:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def send(port: int, data: bytes, *, method: str = "GET", half_close: bool = False) -> Answer:
    """Send ``data`` on a new connection; read one answer. Raises NoAnswer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer (and close) before it read everything; read that answer
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        resp = http.client.HTTPResponse(sock, method=method)
        try:
            resp.begin()
            body = resp.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, http.client.IncompleteRead,
                http.client.BadStatusLine) as e:
            raise NoAnswer(f"no (complete) answer: {type(e).__name__}: {e}") from None
        except TimeoutError:
            raise NoAnswer(f"no answer within {TIMEOUT}s (hang)") from None
        return Answer(resp.status, list(resp.getheaders()), body)
    finally:
        sock.close()


_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_SCOPE = re.compile(r'scope="([^"]*)"')
_CHALLENGE = re.compile(r'^Bearer realm="http://[A-Za-z0-9._:\[\]-]+/auth/token",service="berth"(?:,|\Z)')
_LOCATION = re.compile(r"^/v2/[A-Za-z0-9._/:-]+\Z")


def problems(ans: Answer, method: str, *, port: int, parser_ok: bool = False) -> list[str]:
    """Every rule of the module docstring this answer breaks (empty: fine)."""
    out = []
    if ans.status >= 500:
        out.append(f"5xx: {ans.status} {ans.body[:300]!r}")
    for k, v in ans.headers:
        if _CTL.search(v) or _CTL.search(k):
            out.append(f"control character in response header {k}: {v!r}")
    www = ans.header("WWW-Authenticate")
    if www is not None:
        if not _CHALLENGE.match(www) and www != 'Basic realm="berth"':  # the admin API's (a constant)
            out.append(f"unexpected challenge {www!r}")
        for scope in _SCOPE.findall(www):
            rtype, _, rest = scope.partition(":")
            name = rest.rpartition(":")[0]
            if not ((rtype == "repository" and is_name(name)) or scope == "registry:catalog:*"):
                out.append(f"challenge names an unchecked scope {scope!r}")
    loc = ans.header("Location")
    if loc is not None and not _LOCATION.match(loc):
        out.append(f"Location is not a path of this registry: {loc!r}")
    if ans.status >= 400 and method != "HEAD":
        ctype = ans.header("Content-Type") or ""
        if parser_ok and ans.status in (400, 413, 431) and ctype.startswith("text/plain"):
            return out  # the HTTP parser's own answer to bytes that are not a valid request
        try:
            errors = ans.json()["errors"]
            assert isinstance(errors, list) and errors
            for e in errors:
                assert isinstance(e, dict) and isinstance(e.get("message"), str), e
                assert e.get("code") in CODES, e.get("code")
        except Exception as e:  # noqa: BLE001 - any shape problem is a finding
            out.append(f"not an OCI error body ({type(e).__name__}: {e}): {ctype} {ans.body[:300]!r}")
    return out
