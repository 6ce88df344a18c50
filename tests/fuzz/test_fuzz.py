"""Generated hostile input against live ``berth serve`` processes (issue 7).

Four servers: auth on and off, SQLite and PostgreSQL (tests/fuzz/conftest.py). For each:

* ``test_routes`` — every route of the route table, the realm, the admin API and health, with
  generated names, references, digests, upload ids, scopes, queries, headers, bodies and
  credentials (none, admin, wrong, garbage tokens);
* ``test_framing`` — bytes no HTTP library sends: control characters and bare CR/LF in the
  request line and headers, ``Content-Length`` lies (short bodies cut off by the client,
  long ones running into the next request), broken chunked bodies, huge and numerous headers,
  invalid ``Host``;
* ``test_uploads`` — upload sessions driven against a model: chunks with true and lying
  ``Content-Range``, digests right and wrong; every ``Range`` the server reports is checked,
  and every blob it accepts is pulled back byte for byte;
* ``test_manifests`` — generated manifests: invalid JSON, wrong shapes, unknown and
  self-referencing digests, deep nesting, chains of indexes, thousands of layers;
* ``test_log_and_store`` — last: no traceback in the server's log, and a consistent store.

Rules for every answer: tests/fuzz/wire.py. The HTTP parser's own 400s (text/plain) are
accepted only in ``test_framing``, for bytes that are not valid HTTP.
"""
from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from . import strategies as S
from .conftest import examples
from .consistency import check_store
from .wire import NoAnswer, build, problems, send

SETTINGS = dict(deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])

ALL = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
# every route of registry/routes.py and registry/auth/setup.py (docs/openapi.yaml), and some that are not
ROUTES = [
    ("/v2/", ALL), ("/v2/_catalog", ALL), ("/v2/{name}/tags/list", ALL), ("/v2/{name}/referrers/{digest}", ALL),
    ("/v2/{name}/manifests/{reference}", ALL), ("/v2/{name}/blobs/{digest}", ALL),
    ("/v2/{name}/blobs/uploads/", ALL), ("/v2/{name}/blobs/uploads/{uid}", ALL),
    ("/auth/token", ALL), ("/auth/jwks.json", ALL), ("/healthz", ALL),
    ("/admin/whoami", ALL), ("/admin/tenants", ALL), ("/admin/tenants/{tenant}", ALL),
    ("/admin/tenants/{tenant}/members", ALL), ("/admin/tenants/{tenant}/members/{user}", ALL),
    ("/admin/tenants/{tenant}/robots", ALL), ("/admin/tenants/{tenant}/robots/{robot}", ALL),
    ("/admin/tenants/{tenant}/robots/{robot}/rotate", ALL), ("/admin/tenants/{tenant}/pull-secrets", ALL),
    ("/admin/users", ALL), ("/admin/users/{user}", ALL), ("/admin/users/{user}/password", ALL),
    ("/admin/tokens", ALL), ("/admin/audit", ALL), ("/{name}", ALL), ("/v2/{name}", ALL),
]
# admin path parameters never name the fuzz tenant or the admin: deleting those would end the run's coverage
admin_param = st.one_of(S.text, S.component).filter(lambda s: s not in (S.TENANT, "admin"))


def _fill(template: str, draw) -> str:
    values = {
        "name": lambda: S.pct(draw(S.name), safe="/"),
        "digest": lambda: S.pct(draw(S.digest), safe=":"),
        "reference": lambda: S.pct(draw(S.reference), safe=":"),
        "uid": lambda: S.pct(draw(S.upload_id)),
        "tenant": lambda: S.pct(draw(admin_param)),
        "user": lambda: S.pct(draw(admin_param)),
        "robot": lambda: S.pct(draw(admin_param)),
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)](), template)


def _creds(live, draw) -> list[tuple[bytes, bytes]]:
    kind = draw(st.sampled_from(["admin", "admin", "admin", "none", "wrong", "garbage"]))
    if kind == "admin" and live.auth:
        return [(b"Authorization", live.admin_basic())]
    if kind == "wrong":  # one username: the failed-login limit answers 429 after a few, before bcrypt
        return [(b"Authorization", b"Basic " + __import__("base64").b64encode(b"nobody:" + draw(st.binary(max_size=8))))]
    if kind == "garbage":
        return [(b"Authorization", draw(st.sampled_from([b"Bearer ", b"Basic ", b"Bearer a.b.c", b"Negotiate x", b"Basic %%%"]))
                 + S.header_value(draw(S.text)))]
    return []


def _check(live, method: str, data: bytes, *, parser_ok: bool = False, half_close: bool = False,
           answer_optional: bool = False):
    try:
        ans = send(live.port, data, method=method, half_close=half_close)
    except NoAnswer as e:
        if answer_optional:
            live.stats.no_answer_expected += 1
            # the client cut its own request short; the server must still be there
            alive = live.request("GET", "/healthz")
            assert alive.status == 200, alive
            return None
        live.stats.fail("no answer")
        raise AssertionError(f"{live.label}: {e}\nrequest: {data[:600]!r}") from None
    finally:
        live.stats.requests += 1
    if parser_ok and ans.status == 400 and (ans.header("Content-Type") or "").startswith("text/plain"):
        live.stats.parser_400 += 1
    found = problems(ans, method, port=live.port, parser_ok=parser_ok)
    if found:
        for p in found:
            live.stats.fail(p.split(":")[0])
        raise AssertionError(f"{live.label}: " + "; ".join(found) + f"\nrequest: {data[:600]!r}\nanswer: {ans.status} {ans.headers}")
    return ans


# ---- every route ---------------------------------------------------------------------------

@settings(max_examples=examples("routes"), **SETTINGS)
@given(data=st.data())
def test_routes(live, data):
    live.stats.cases += 1
    draw = data.draw
    template, methods = draw(st.sampled_from(ROUTES))
    method = draw(st.sampled_from(methods))
    path = _fill(template, draw)
    q = draw(S.query)
    target = path + ("?" + q if q else "")
    headers = [(b"Host", f"127.0.0.1:{live.port}".encode()), *_creds(live, draw)]
    for key, strat in draw(st.lists(st.sampled_from([
        ("Content-Type", S.content_type), ("Content-Range", S.content_range), ("Range", S.byte_range),
        ("Accept", S.content_type), ("Docker-Upload-UUID", S.upload_id), ("If-None-Match", S.digest),
        ("X-Forwarded-For", S.text), ("Origin", S.text), ("Sec-Fetch-Site", S.text), ("Accept-Encoding", S.text),
        ("X-Request-ID", S.text), ("X-Forwarded-Proto", S.text), ("Forwarded", S.text),  # headers a server may echo
    ]), max_size=4, unique_by=lambda kv: kv[0])):
        headers.append((key.encode(), S.header_value(draw(strat))))
    body = draw(S.body) if method in ("POST", "PUT", "PATCH") or draw(st.booleans()) else None
    raw = build(method, target.encode(), headers, body)
    # a request line over 8190 bytes is refused by the HTTP parser itself (400 text/plain; docs/api.md)
    _check(live, method, raw, parser_ok=len(raw.split(b"\r\n", 1)[0]) > 8190)


# ---- bytes that are not (quite) HTTP -------------------------------------------------------

@st.composite
def raw_requests(draw, live):
    """(method, bytes, half_close, answer_optional)."""
    host = f"127.0.0.1:{live.port}".encode()
    name = f"{S.TENANT}/framing"
    digest = draw(st.one_of(S.valid_digest, st.just(S.sha256(b"x" * 10))))
    method, target = draw(st.sampled_from([
        ("POST", f"/v2/{name}/blobs/uploads/?digest={digest}"), ("POST", f"/v2/{name}/blobs/uploads/"),
        ("PUT", f"/v2/{name}/manifests/latest"), ("POST", "/auth/token"), ("POST", "/admin/tenants"),
        ("GET", "/v2/"), ("GET", f"/v2/{name}/tags/list"),
    ]))
    creds = live.creds_header()
    body = draw(st.binary(max_size=64))
    kind = draw(st.sampled_from(["short", "long", "chunked", "control", "huge", "many", "line", "host", "dup"]))
    headers = [(b"Host", host), *creds]
    half_close = optional = False
    if kind == "short":  # announce more than is sent, then stop sending
        extra = draw(st.integers(1, 10_000))
        data = build(method, target.encode(), headers + [(b"Content-Length", str(len(body) + extra).encode())], body)
        half_close = optional = True
    elif kind == "long":  # send more than announced: the rest is read as the next request
        cut = draw(st.integers(0, len(body)))
        data = build(method, target.encode(), headers + [(b"Content-Length", str(cut).encode())], body)
    elif kind == "chunked":
        chunks = draw(st.lists(st.binary(min_size=1, max_size=20), max_size=4))
        size_fmt = draw(st.sampled_from(["{:x}", "{:X}", "{:x};ext=1", "0x{:x}", "{:x} ", "-{:x}", "{:d}0"]))
        tail = draw(st.sampled_from([b"0\r\n\r\n", b"0\r\nX-Trailer: 1\r\n\r\n", b"", b"0\r\n", b"zz\r\n\r\n"]))
        payload = b"".join(size_fmt.format(len(c)).encode() + b"\r\n" + c + b"\r\n" for c in chunks) + tail
        data = build(method, target.encode(), headers + [(b"Transfer-Encoding", b"chunked")], payload, framing=False)
        # a chunk size that may announce more than follows (or no last chunk) leaves the server waiting
        # for the rest, as it must: the client then closes its side, and an answer is optional
        half_close = optional = tail in (b"", b"0\r\n") or size_fmt not in ("{:x}", "{:X}", "{:x};ext=1")
    elif kind == "control":  # raw control bytes in the request line or a header
        ctl = draw(st.sampled_from([b"\x00", b"\x01", b"\r", b"\n", b"\x7f", b"\x1b", b"\t", b"\xff", b" "]))
        where = draw(st.sampled_from(["path", "name", "value", "header-name"]))
        if where == "path":
            data = build(method, target.replace("framing", "fr" + "\0" + "aming").encode().replace(b"\0", ctl), headers, body)
        elif where == "name":
            data = build(method, f"/v2/{S.TENANT}/a".encode() + ctl + b"b/tags/list", headers, None)
        elif where == "value":
            data = build(method, target.encode(), headers + [(b"Content-Range", b"0-" + ctl + b"1")], body)
        else:
            data = build(method, target.encode(), headers + [(b"X-" + ctl + b"y", b"1")], body)
    elif kind == "huge":
        size = draw(st.sampled_from([8190, 8191, 8200, 16_384, 65_536, 200_000]))
        data = build(method, target.encode(), headers + [(b"X-Huge", b"a" * size)], body)
    elif kind == "many":
        n = draw(st.integers(90, 400))
        data = build(method, target.encode(), headers + [(f"X-H{i}".encode(), b"v") for i in range(n)], body)
    elif kind == "line":
        method = draw(st.sampled_from(["GET", "G\x00T", "", "get", "PRI", "CONNECT", "X" * 100]))
        version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/9.9", b"HTTP/1.1 extra", b"", b"http/1.1"]))
        path = draw(st.sampled_from([target.encode(), b"*", b"http://evil/v2/", b"", b"/v2/" + b"a/" * 5000,
                                     b"/v2/%", b"/v2/%zz/tags/list", b"//v2//"]))
        data = method.encode("latin-1") + b" " + path + b" " + version + b"\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
        # CONNECT opens a tunnel: the HTTP parser then waits for the client (no Berth code runs;
        # docs/api.md): the client closes its side, and an answer is optional
        half_close = optional = method == "CONNECT"
        method = method if method in ("GET", "HEAD") else "GET"
    elif kind == "host":
        bad = draw(st.sampled_from([b"", b"a b", b'a"b', b"a,realm=x", b"[::1", b"a:b:c", b"\xff", b"x" * 5000, b"a@b"]))
        data = build("GET", b"/v2/", [(b"Host", bad), *creds], None)
        method = "GET"
    else:  # duplicated / conflicting framing headers
        data = build(method, target.encode(), headers + [(b"Content-Length", str(len(body)).encode()),
                                                         (b"Content-Length", str(len(body) + 1).encode()),
                                                         (b"Transfer-Encoding", b"chunked")], body, framing=False)
    return method, data, half_close, optional


@settings(max_examples=examples("framing"), **SETTINGS)
@given(data=st.data())
def test_framing(live, data):
    live.stats.cases += 1
    method, raw, half_close, optional = data.draw(raw_requests(live))
    _check(live, method, raw, parser_ok=True, half_close=half_close, answer_optional=optional)


# ---- upload sessions against a model --------------------------------------------------------

step = st.one_of(
    st.tuples(st.just("patch"), st.binary(max_size=200), st.sampled_from(["true", "none", "none", "lie-start", "lie-end", "garbage"]),
              st.integers(-3, 3)),
    st.tuples(st.just("status"), st.none(), st.none(), st.none()),
)


def _range_end(ans) -> int:
    m = re.fullmatch(r"0-(\d+)", ans.header("Range") or "")
    assert m, f"no Range header in {ans.status} {ans.headers}"
    return int(m.group(1))


@settings(max_examples=examples("uploads"), **SETTINGS)
@given(steps=st.lists(step, max_size=6), last=st.binary(max_size=100),
       digest_kind=st.sampled_from(["right", "right", "wrong", "of-all-sent"]), repo=S.valid_path)
def test_uploads(live, steps, last, digest_kind, repo):
    live.stats.cases += 1
    name = f"{S.TENANT}/up/{repo}"
    r = live.request("POST", f"/v2/{name}/blobs/uploads/")
    assert r.status == 202, (r.status, r.body)
    location = r.header("Location")
    acked, sent = b"", b""
    for kind, chunk, mode, delta in steps:
        if kind == "status":
            ans = _check(live, "GET", build("GET", location.encode(), _hdr(live), None))
            assert ans.status == 204 and _range_end(ans) == max(len(acked) - 1, 0), (ans.status, ans.headers, len(acked))
            continue
        headers = _hdr(live)
        start, end = len(acked), len(acked) + len(chunk) - 1
        honest = mode in ("true", "none")
        if mode == "true":
            headers.append((b"Content-Range", f"{start}-{end}".encode()))
        elif mode == "lie-start":
            headers.append((b"Content-Range", f"{start + (delta or 1)}-{end + (delta or 1)}".encode()))
        elif mode == "lie-end":
            headers.append((b"Content-Range", f"{start}-{end + (delta or 1)}".encode()))
        elif mode == "garbage":
            headers.append((b"Content-Range", b"bytes=" + str(delta).encode() + b"-x"))
        honest = honest and (mode != "true" or len(chunk) > 0)  # an empty chunk has no true Content-Range
        ans = _check(live, "PATCH", build("PATCH", location.encode(), headers, chunk))
        sent += chunk
        if ans.status == 202:
            assert honest or (mode == "lie-start" and start + (delta or 1) == len(acked)), (mode, delta, ans.headers)
            acked += chunk
            assert _range_end(ans) == max(len(acked) - 1, 0), (ans.headers, len(acked))
            location = ans.header("Location") or location
        else:
            assert not honest, f"an honest chunk refused: {ans.status} {ans.body[:300]!r}"
            assert ans.status in (400, 416), (ans.status, ans.body)
    digest = {"right": S.sha256(acked + last), "wrong": S.sha256(acked + last + b"!"), "of-all-sent": S.sha256(sent + last)}[digest_kind]
    ans = _check(live, "PUT", build("PUT", f"{location}?digest={digest}".encode(), _hdr(live), last or None))
    expected = digest == S.sha256(acked + last)
    pushed = _pushed.setdefault(live.port, set())
    if ans.status == 201:
        assert expected, f"blob {digest} accepted but {len(acked + last)} bytes were acknowledged"
        got = live.request("GET", f"/v2/{name}/blobs/{digest}")
        assert got.status == 200 and got.body == acked + last, (got.status, len(got.body))
        pushed.add((name, digest))
    else:
        assert not expected, f"an upload with the right digest refused: {ans.status} {ans.body[:300]!r}"
        assert ans.status == 400 and json.loads(ans.body)["errors"][0]["code"] == "DIGEST_INVALID", (ans.status, ans.body)
        if (name, digest) not in pushed:  # an earlier example may have pushed those very bytes there
            assert live.request("HEAD", f"/v2/{name}/blobs/{digest}").status == 404


_pushed: dict[int, set] = {}


def _hdr(live) -> list[tuple[bytes, bytes]]:
    return [(b"Host", f"127.0.0.1:{live.port}".encode()), *live.creds_header()]


# ---- manifests --------------------------------------------------------------------------------

BASE = f"{S.TENANT}/manifests"
_base_cache: dict[int, dict] = {}


def _base(live) -> dict:
    """Blobs and manifests every generated manifest may reference (pushed once per server)."""
    if live.port in _base_cache:
        return _base_cache[live.port]
    blobs = {}
    for data in (b'{"architecture":"amd64","os":"linux"}', b"layer one", b"layer two", b""):
        d = S.sha256(data)
        r = live.request("POST", f"/v2/{BASE}/blobs/uploads/?digest={d}", data)
        assert r.status == 201, (r.status, r.body)
        blobs[d] = len(data)
    config, layers = list(blobs)[0], list(blobs)[1:]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": S.OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": blobs[config]},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": blobs[d]} for d in layers]}).encode()
    r = live.request("PUT", f"/v2/{BASE}/manifests/base", manifest, [(b"Content-Type", S.OCI_MANIFEST.encode())])
    assert r.status == 201, (r.status, r.body)
    _base_cache[live.port] = {"blobs": blobs, "config": config, "layers": layers, "manifest": S.sha256(manifest),
                              "manifest_size": len(manifest), "tags": ["base"]}
    return _base_cache[live.port]


@st.composite
def manifest_bodies(draw, base):
    # what this run pushed before, drawn by index so the strategy's shape never depends on that state
    fixed = list(base["blobs"]) + [base["manifest"]]
    recent = st.integers(0, 4).map(lambda i: (base.get("pushed") or fixed)[-1 - i % len(base.get("pushed") or fixed)])
    known = st.one_of(st.sampled_from(fixed), recent)
    digests = st.one_of(known, known, S.digest)
    kind = draw(st.sampled_from(["image", "image", "index", "chain", "wide", "deep", "garbage", "json"]))
    ctype = draw(st.one_of(st.sampled_from([S.OCI_MANIFEST, S.OCI_INDEX, S.DOCKER_MANIFEST, S.DOCKER_LIST, None]), S.content_type))
    if kind == "garbage":
        return draw(S.body), ctype, kind
    if kind == "json":
        return json.dumps(draw(S.json_value)).encode(), ctype, kind
    if kind == "deep":  # JSON nested past the parser's limit, in annotations
        depth = draw(st.integers(50, 3000))
        body = (b'{"schemaVersion":2,"mediaType":"' + S.OCI_MANIFEST.encode() + b'","annotations":{"a":' + b"[" * depth
                + b"]" * depth + b"}}")
        return body, S.OCI_MANIFEST, kind
    size_of = lambda d: base["blobs"].get(d, base["manifest_size"] if d == base["manifest"] else 1)  # noqa: E731
    desc = lambda d, mt: {"mediaType": mt, "digest": d, "size": size_of(d)}  # noqa: E731
    if kind == "wide":  # thousands of layers
        n = draw(st.integers(1000, 6000))
        layer = draw(digests)
        doc = {"schemaVersion": 2, "mediaType": S.OCI_MANIFEST, "config": desc(base["config"], "application/vnd.oci.image.config.v1+json"),
               "layers": [desc(layer, "application/vnd.oci.image.layer.v1.tar+gzip")] * n}
        return json.dumps(doc).encode(), S.OCI_MANIFEST, kind
    if kind in ("index", "chain"):  # an index of known manifests, or of earlier indexes (a chain), or of itself's tag
        children = draw(st.lists(digests, max_size=5))
        doc = {"schemaVersion": 2, "mediaType": draw(st.sampled_from([S.OCI_INDEX, S.DOCKER_LIST])),
               "manifests": [desc(d, S.OCI_MANIFEST if d == base["manifest"] else S.OCI_INDEX) for d in children]}
    else:
        doc = {"schemaVersion": draw(st.sampled_from([2, 2, 1, "2", None])),
               "mediaType": draw(st.sampled_from([S.OCI_MANIFEST, S.DOCKER_MANIFEST, None, "", "x"])),
               "config": draw(st.one_of(S.descriptor(digests), st.just(desc(base["config"], "application/vnd.oci.image.config.v1+json")))),
               "layers": draw(st.lists(st.one_of(S.descriptor(digests), known.map(lambda d: desc(d, "application/vnd.oci.image.layer.v1.tar+gzip"))), max_size=6))}
    if draw(st.booleans()):
        doc["subject"] = draw(st.one_of(S.descriptor(digests), known.map(lambda d: desc(d, S.OCI_MANIFEST))))
    if draw(st.booleans()):
        doc["annotations"] = draw(st.dictionaries(S.text, S.text, max_size=3))
    if draw(st.booleans()):
        doc["artifactType"] = draw(S.text)
    if doc.get("mediaType") is None:
        doc.pop("mediaType", None)
    return json.dumps(doc).encode(), ctype, kind


MANIFEST_ERRORS = {"MANIFEST_INVALID", "MANIFEST_BLOB_UNKNOWN", "TAG_INVALID", "DIGEST_INVALID", "SIZE_INVALID", "UNSUPPORTED",
                   "BLOB_UNKNOWN", "MANIFEST_UNKNOWN",
                   "NOT_FOUND"}  # a reference holding '/' (%2F) matches no route


@settings(max_examples=examples("manifests"), **SETTINGS)
@given(data=st.data())
def test_manifests(live, data):
    live.stats.cases += 1
    base = _base(live)
    body, ctype, kind = data.draw(manifest_bodies(base))
    ref = data.draw(st.one_of(st.sampled_from(["latest", "base", "t1"]), st.just(S.sha256(body)), S.reference))
    headers = _hdr(live) + ([(b"Content-Type", S.header_value(ctype))] if ctype is not None else [])
    target = f"/v2/{BASE}/manifests/{S.pct(ref, safe=':')}"
    ans = _check(live, "PUT", build("PUT", target.encode(), headers, body))
    if ans.status == 201:
        digest = ans.header("Docker-Content-Digest")
        assert digest == S.sha256(body), (digest, S.sha256(body))
        got = live.request("GET", f"/v2/{BASE}/manifests/{digest}")
        assert got.status == 200 and got.body == body, got.status
        base.setdefault("pushed", []).append(digest)
    else:
        code = json.loads(ans.body)["errors"][0]["code"]
        assert code in MANIFEST_ERRORS, (ans.status, ans.body[:300])


# ---- afterwards ---------------------------------------------------------------------------------

def test_log_and_store(live):
    """Last for each server: nothing in its log is a traceback, and the store is consistent."""
    log = live.server.log()
    tracebacks = [m.start() for m in re.finditer("Traceback", log)]
    if tracebacks:
        live.stats.fail("traceback in the log")
    assert not tracebacks, f"{live.label}: {len(tracebacks)} tracebacks in {live.server.log_path}:\n{log[tracebacks[0] - 300:][:3000]}"
    found, counts = check_store(live.config())
    if found:
        live.stats.fail("inconsistent store")
    assert not found, f"{live.label}: the store is inconsistent ({counts}):\n" + "\n".join(found[:50])
    assert counts["links"] > 0 and counts["manifests"] > 0, counts  # the run stored something to check
