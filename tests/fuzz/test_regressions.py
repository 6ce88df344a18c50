"""What the fuzzer found, each held by a test that failed before its fix (in-process app).

The aiohttp test server serializes response headers as ``berth serve`` does, so a header
built from unchecked request data shows here as it does live: no response at all.
"""
from __future__ import annotations

import json
import logging

import pytest
from yarl import URL

from registry.app import create_app
from registry.config import Config
from registry.httplog import ClientErrorFilter

D = "sha256:" + "0" * 64
CONTROL = ["%00", "%0a", "%0d", "%0d%0a", "%01", "%1f", "%7f", "%09", "%0d%0aX-Evil:%201"]
ROUTES = [
    ("GET", "/v2/fuzz/a{c}b/manifests/latest"),
    ("PUT", "/v2/fuzz/a{c}b/manifests/latest"),
    ("DELETE", f"/v2/fuzz/a{{c}}b/manifests/{D}"),
    ("HEAD", f"/v2/fuzz/a{{c}}b/blobs/{D}"),
    ("DELETE", f"/v2/fuzz/a{{c}}b/blobs/{D}"),
    ("POST", "/v2/fuzz/a{c}b/blobs/uploads/"),
    ("PATCH", "/v2/fuzz/a{c}b/blobs/uploads/" + "f" * 32),
    ("GET", "/v2/a{c}/tags/list"),
    ("GET", f"/v2/{{c}}x/referrers/{D}"),
]


@pytest.fixture
async def auth_client(aiohttp_client, tmp_path):
    cfg = Config(data_dir=tmp_path / "data")
    cfg.auth.enabled = True
    cfg.auth.admin_password = "fuzz-admin-password"
    return await aiohttp_client(create_app(cfg))


@pytest.mark.parametrize("method,template", ROUTES, ids=[f"{m} {t.split('/')[-2]}" for m, t in ROUTES])
async def test_control_characters_in_a_name_are_name_invalid_not_a_dropped_connection(auth_client, method, template):
    """Issue 7: the name was echoed into the WWW-Authenticate challenge; a NUL, CR or LF made
    aiohttp refuse to serialize the header and close the connection with no response."""
    for c in CONTROL:
        r = await auth_client.request(method, URL(template.format(c=c), encoded=True))
        assert r.status == 400, (c, r.status)
        assert "WWW-Authenticate" not in r.headers
        if method != "HEAD":
            body = json.loads(await r.read())
            assert body["errors"][0]["code"] == "NAME_INVALID", body


async def test_an_invalid_host_header_is_not_echoed_into_the_challenge(auth_client):
    for host in ('a"b', "a b", "a\\b", "x/y", "a,realm=evil"):
        r = await auth_client.get("/v2/", headers={"Host": host})
        assert r.status == 400, (host, r.status, r.headers.get("WWW-Authenticate"))
        assert "WWW-Authenticate" not in r.headers
        assert (await r.json())["errors"][0]["code"] == "INVALID_REQUEST"
    for host in ("registry.example.com", "registry.example.com:5000", "127.0.0.1:5000", "[::1]:5000"):
        r = await auth_client.get("/v2/", headers={"Host": host})
        assert r.status == 401
        assert f'realm="http://{host}/auth/token"' in r.headers["WWW-Authenticate"]


def test_parser_errors_are_logged_as_one_warning_line_without_a_traceback():
    from aiohttp.http_exceptions import BadHttpMessage

    try:
        raise BadHttpMessage("Invalid header value char")
    except BadHttpMessage:
        import sys

        record = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling request from %s",
                                   ("127.0.0.1",), sys.exc_info())
    assert ClientErrorFilter().filter(record)
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "127.0.0.1" in record.getMessage() and "Invalid header value char" in record.getMessage()
    # a real server error keeps its traceback
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        other = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Unhandled exception", (), sys.exc_info())
    assert ClientErrorFilter().filter(other) and other.exc_info is not None and other.levelno == logging.ERROR


# ---- bodies that break off: found by test_framing ---------------------------------------------

@pytest.fixture
async def open_client(aiohttp_client, tmp_path):
    cfg = Config(data_dir=tmp_path / "data")
    cfg.auth.enabled = False
    return await aiohttp_client(create_app(cfg))


async def _exchange(port: int, first: bytes, rest: bytes, *, half_close: bool = False) -> bytes:
    """Send ``first``, let the server start the handler, then ``rest``; return all it answers."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(first)
    await writer.drain()
    for _ in range(20):  # let the server parse the head and start reading the body
        await asyncio.sleep(0.01)
    writer.write(rest)
    if half_close:
        writer.write_eof()
    await writer.drain()
    answer = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            answer += chunk
    except (asyncio.TimeoutError, ConnectionError):
        pass
    writer.close()
    return answer


HEAD = "POST /v2/a/b/blobs/uploads/?digest=sha256:{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".format("0" * 64)


async def test_a_broken_chunk_in_the_middle_of_a_body_is_400_not_500(open_client):
    """A bad chunk size after the handler started reading reached the error middleware as an
    aiohttp payload error: 500 UNKNOWN and an ERROR traceback. Now 400 SIZE_INVALID."""
    answer = await _exchange(open_client.server.port, (HEAD + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n").encode(),
                             b"zz\r\n\r\n")
    status = int(answer.split(b" ", 2)[1])
    assert status == 400, answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["errors"][0]["code"] == "SIZE_INVALID"


async def test_a_body_cut_off_by_the_client_logs_one_line_not_a_traceback(open_client, caplog):
    """The client announces 100 bytes, sends 5 and closes its side: the handler's read fails with
    ConnectionResetError, which aiohttp logged at ERROR with a traceback. Nothing is stored."""
    caplog.set_level(logging.INFO)
    await _exchange(open_client.server.port, (HEAD + "Content-Length: 100\r\n\r\n").encode(), b"hello", half_close=True)
    for _ in range(50):  # the handler finishes after the client has gone
        import asyncio

        await asyncio.sleep(0.01)
    records = [r for r in caplog.records if r.name.startswith(("aiohttp", "berth"))]
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR], [r.getMessage() for r in records]
    r = await open_client.head("/v2/a/b/blobs/sha256:" + "0" * 64)
    assert r.status == 404


# ---- credentials that are not ASCII: found by test_routes (auth on) ---------------------------

async def _raw(port: int, data: bytes) -> tuple[int, bytes]:
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize("path", ["/v2/", "/v2/fuzz/app/tags/list", "/auth/token", "/admin/whoami"])
@pytest.mark.parametrize("value", [b"Basic \xc3\xa9", b"Basic \xff\xfe", b"Bearer \xff\xfe.a.b", b"Bearer \xc3\xa9"])
async def test_credentials_that_are_not_ascii_are_401_not_500(auth_client, path, value):
    """base64.b64decode of a non-ASCII str raises ValueError, PyJWT's header parse of a token
    holding undecodable bytes raises UnicodeEncodeError: both answered 500 UNKNOWN."""
    if path == "/auth/token" and value.startswith(b"Bearer"):
        return  # the realm ignores Bearer (anonymous token): nothing to check
    status, body = await _raw(auth_client.server.port, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: "
                              + value + b"\r\nConnection: close\r\n\r\n")
    assert status == 401, (status, body)
    assert json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED"


# ---- NUL reaching PostgreSQL: found by test_routes on the PostgreSQL servers -----------------

@pytest.fixture
async def pg_or_sqlite_client(aiohttp_client, tmp_path, database_url):
    cfg = Config(data_dir=tmp_path / "data", database_url=database_url)
    cfg.auth.enabled = True
    cfg.auth.admin_password = "fuzz-admin-password"
    return await aiohttp_client(create_app(cfg))


async def test_nul_in_a_query_or_an_admin_path_is_400_not_500(pg_or_sqlite_client):
    """PostgreSQL refuses NUL in text ("invalid byte sequence for encoding UTF8: 0x00"): a NUL in
    `last`, `artifactType`, an admin path or a username answered 500 there (SQLite had no trouble)."""
    import base64

    admin = {"Authorization": "Basic " + base64.b64encode(b"admin:fuzz-admin-password").decode()}
    c = pg_or_sqlite_client
    for path in ["/v2/_catalog?last=a%00", "/v2/a/b/tags/list?last=%00", f"/v2/a/b/referrers/sha256:{'0' * 64}?artifactType=%00",
                 "/admin/tenants/a%00b/robots", "/admin/users/a%00b", "/admin/audit?tenant=a%00"]:
        r = await c.get(URL(path, encoded=True), headers=admin)
        assert r.status == 400, (path, r.status, await r.text())
        assert (await r.json())["errors"][0]["code"] == "INVALID_REQUEST"
    r = await c.put(URL("/admin/tenants/t/members/a%00b", encoded=True), json={"role": "reader"}, headers=admin)
    assert r.status == 400
    # a username holding NUL is simply wrong credentials
    nul = {"Authorization": "Basic " + base64.b64encode(b"ad\x00min:fuzz-admin-password").decode()}
    for path in ["/v2/", "/auth/token", "/admin/whoami"]:
        r = await c.get(path, headers=nul)
        assert r.status == 401, (path, r.status, await r.text())
    r = await c.post("/admin/tenants", json={"name": "acme"}, headers=admin)
    assert r.status == 201
    r = await c.put("/admin/tenants/acme/members/a\x00b", json={"role": "reader"}, headers=admin)
    assert r.status in (400, 404), (r.status, await r.text())


async def test_a_lone_surrogate_in_an_admin_body_is_400_not_500(auth_client):
    """JSON's "\\udcff" escape decodes to a lone surrogate: creating a user with such a password
    failed in bcrypt's encode with a 500."""
    import base64

    admin = {"Authorization": "Basic " + base64.b64encode(b"admin:fuzz-admin-password").decode(),
             "Content-Type": "application/json"}
    r = await auth_client.post("/admin/users", data=b'{"username": "bob", "password": "\\udcffabcdefgh"}', headers=admin)
    assert r.status == 400, (r.status, await r.text())
    assert (await r.json())["errors"][0]["code"] == "INVALID_REQUEST"


@pytest.mark.parametrize("field", [b'"artifactType": "aa\\udcff"', b'"annotations": {"k": "\\uD800x"}'])
async def test_a_lone_surrogate_in_a_manifest_is_manifest_invalid_not_500(pg_or_sqlite_client, field):
    """Found by `make fuzz N=10000`: an index whose artifactType held a "\\udcff" escape was a 500 on
    PostgreSQL (asyncpg cannot encode it in a text column) and stored on SQLite. A paired escape
    (one real character) is still accepted."""
    import base64

    c = pg_or_sqlite_client
    admin = {"Authorization": "Basic " + base64.b64encode(b"admin:fuzz-admin-password").decode()}
    assert (await c.post("/admin/tenants", json={"name": "fuzz"}, headers=admin)).status == 201
    index = b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [], '
    headers = {**admin, "Content-Type": "application/vnd.oci.image.index.v1+json"}
    r = await c.put("/v2/fuzz/sur/manifests/bad", data=index + field + b"}", headers=headers)
    assert r.status == 400, (r.status, await r.text())
    assert (await r.json())["errors"][0]["code"] == "MANIFEST_INVALID"
    r = await c.put("/v2/fuzz/sur/manifests/good", data=index + b'"artifactType": "application/x.\\ud83d\\ude00"}',
                    headers=headers)
    assert r.status == 201, (r.status, await r.text())


async def test_a_request_the_parser_left_without_a_target_is_answered_not_a_crash(tmp_path):
    """aiohttp's C parser can hand over a request whose URL is None (it saw no request target);
    building the request raised AttributeError in the connection's task — a dropped connection
    and a traceback, once in 10,711 cases of `make fuzz N=10000`. It is now the request for `/`."""
    from unittest import mock

    from aiohttp import web
    from aiohttp.http import HttpVersion11
    from aiohttp.http_parser import RawRequestMessage
    from aiohttp.streams import EMPTY_PAYLOAD
    from multidict import CIMultiDict, CIMultiDictProxy

    from registry.httplog import install

    install()
    app = web.Application()
    message = RawRequestMessage("GET", "", HttpVersion11, CIMultiDictProxy(CIMultiDict()), (), False, None,
                                False, False, None)
    protocol = mock.Mock()
    protocol.transport.get_extra_info.return_value = ("127.0.0.1", 1)
    request = app._make_request(message, EMPTY_PAYLOAD, protocol, mock.Mock(), mock.Mock())
    assert request.path == "/" and request.url.path == "/"
