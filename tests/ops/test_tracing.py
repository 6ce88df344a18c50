"""Optional OpenTelemetry tracing (registry.tracing, docs/operations.md "Tracing").

The spans are checked as a collector receives them: a real OTLP/HTTP receiver on 127.0.0.1
(``POST /v1/traces``, protobuf ``ExportTraceServiceRequest``) and a real ``berth serve`` with
``BERTH_TRACING_OTLP_ENDPOINT`` pointing at it; the spans arrive through the SDK's batch
exporter, the last of them when the server is stopped (the flush at exit). Tracing off is
checked to import nothing of OpenTelemetry and to run no code of registry.tracing per request.
"""
from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import threading
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from registry import tracing
from registry.config import Config, ConfigError
from tests.conftest import push_image, sha256
from tests.e2e.conftest import REPO_ROOT, BerthServer, lower_tempdir

ADMIN_PASSWORD = "tracing-admin-pw-7"
REPO = "acme/app"
# a caller's W3C trace context: version 00, trace id, parent span id, sampled
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


# ---- a real OTLP/HTTP receiver ---------------------------------------------------------------------


class Receiver:
    """``POST /v1/traces`` on 127.0.0.1: every ExportTraceServiceRequest kept, and its bytes."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self.pb = trace_service_pb2
        self.bodies: list[bytes] = []
        self.requests: list = []
        self.paths: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                ok = self.path == "/v1/traces" and self.headers.get("Content-Type") == "application/x-protobuf"
                if ok:
                    request = receiver.pb.ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    with receiver.lock:
                        receiver.bodies.append(body)
                        receiver.requests.append(request)
                with receiver.lock:
                    receiver.paths.append(self.path)
                answer = receiver.pb.ExportTraceServiceResponse().SerializeToString() if ok else b""
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[dict]:
        """Every span received, as a dict (ids in hex, attributes as a dict, the resource's too)."""
        out = []
        with self.lock:
            requests = list(self.requests)
        for req in requests:
            for rs in req.resource_spans:
                resource = _attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        out.append({"name": s.name, "kind": s.kind, "trace_id": s.trace_id.hex(),
                                    "span_id": s.span_id.hex(), "parent": s.parent_span_id.hex(),
                                    "attributes": _attributes(s.attributes), "status": s.status.code,
                                    "events": [(e.name, _attributes(e.attributes)) for e in s.events],
                                    "resource": resource, "scope": ss.scope.name})
        return out


def _value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def _attributes(kvs) -> dict:
    return {kv.key: _value(kv.value) for kv in kvs}


@pytest.fixture
def receiver():
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def workdir():
    import shutil

    root = lower_tempdir("berth-tracing-")
    yield root
    shutil.rmtree(root, ignore_errors=True)


# ---- helpers over plain HTTP ------------------------------------------------------------------------


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _token(server: BerthServer, scope: str) -> str:
    query = urllib.parse.urlencode({"service": "berth", "scope": scope})
    res = server._send("GET", f"/auth/token?{query}", _basic("admin", ADMIN_PASSWORD), None)
    assert res.status == 200, res.body
    return res.json()["token"]


def _server_span(spans: list[dict], name: str, status: int | None = None) -> dict:
    found = [s for s in spans if s["name"] == name and s["kind"] == 2  # SPAN_KIND_SERVER
             and (status is None or s["attributes"].get("http.response.status_code") == status)]
    assert found, f"no server span {name!r} ({status}) among {sorted({s['name'] for s in spans})}"
    return found[-1]


def _children(spans: list[dict], parent: dict) -> list[dict]:
    return [s for s in spans if s["parent"] == parent["span_id"] and s["trace_id"] == parent["trace_id"]]


def _descendants(spans: list[dict], parent: dict) -> list[dict]:
    out, todo = [], [parent]
    while todo:
        kids = _children(spans, todo.pop())
        out += kids
        todo += kids
    return out


# ---- the spans of a push and a pull, as a collector receives them --------------------------------------


@pytest.mark.process
def test_spans_of_a_push_and_a_pull_reach_a_real_otlp_receiver(receiver, workdir):
    env = {"BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD, "BERTH_TRACING_OTLP_ENDPOINT": receiver.endpoint,
           "BERTH_TRACING_SERVICE_NAME": "berth-under-test", "OTEL_BSP_SCHEDULE_DELAY": "200"}
    server = BerthServer(workdir, auth=True, env=env).start()
    try:
        res = server._send("POST", "/admin/tenants", {**_basic("admin", ADMIN_PASSWORD),
                                                      "Content-Type": "application/json"},
                           json.dumps({"name": "acme"}).encode())
        assert res.status == 201, res.body
        push_token = _token(server, f"repository:{REPO}:push,pull")
        bearer = {"Authorization": f"Bearer {push_token}"}
        layer = b"a layer traced on its way in" * 20
        config_blob = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        for blob in (layer, config_blob):
            res = server._send("POST", f"/v2/{REPO}/blobs/uploads/?digest={sha256(blob)}",
                               {**bearer, "Content-Type": "application/octet-stream"}, blob)
            assert res.status == 201, res.body
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config_blob),
                       "size": len(config_blob)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(layer),
                        "size": len(layer)}]}).encode()
        res = server._send("PUT", f"/v2/{REPO}/manifests/v1",
                           {**bearer, "Content-Type": "application/vnd.oci.image.manifest.v1+json"}, manifest)
        assert res.status == 201, res.body

        # the pull, with a token of its own (verified afresh) and the caller's trace context
        pull_token = _token(server, f"repository:{REPO}:pull")
        pull = {"Authorization": f"Bearer {pull_token}", "traceparent": TRACEPARENT,
                "X-Request-Id": "traced-pull-1"}
        res = server._send("GET", f"/v2/{REPO}/manifests/v1",
                           {**pull, "Accept": "application/vnd.oci.image.manifest.v1+json"}, None)
        assert res.status == 200 and res.body == manifest
        res = server._send("GET", f"/v2/{REPO}/blobs/{sha256(layer)}", {"Authorization": f"Bearer {pull_token}"},
                           None)
        assert res.status == 200 and res.body == layer
        res = server._send("GET", f"/v2/{REPO}/manifests/nope", {"Authorization": f"Bearer {pull_token}"}, None)
        assert res.status == 404
        res = server._send("GET", f"/v2/{REPO}/manifests/v1", {"Authorization": "Bearer not-a-token"}, None)
        assert res.status == 401
    finally:
        server.stop()  # SIGTERM: the app's cleanup flushes the spans still queued
    log = server.log()
    assert server.proc.returncode == 0, log
    assert "Traceback" not in log, log

    spans = receiver.spans()
    assert spans, f"the receiver got nothing (paths {receiver.paths})\n{log}"
    assert set(receiver.paths) == {"/v1/traces"}
    assert {s["resource"].get("service.name") for s in spans} == {"berth-under-test"}
    assert {s["scope"] for s in spans} == {"berth"}

    # one server span per request, named after the route template, with its status
    manifest_put = _server_span(spans, "PUT /v2/{name}/manifests/{reference}", 201)
    blob_post = _server_span(spans, "POST /v2/{name}/blobs/uploads/", 201)
    token_get = _server_span(spans, "GET /auth/token", 200)
    _server_span(spans, "GET /v2/", 401)  # the start-up probe: anonymous
    blob_get = _server_span(spans, "GET /v2/{name}/blobs/{digest}", 200)
    _server_span(spans, "GET /v2/{name}/manifests/{reference}", 404)
    refused = _server_span(spans, "GET /v2/{name}/manifests/{reference}", 401)
    pulled = [s for s in spans if s["attributes"].get("berth.request_id") == "traced-pull-1"]
    assert len(pulled) == 1
    pull_span = pulled[0]
    assert pull_span["name"] == "GET /v2/{name}/manifests/{reference}" and pull_span["kind"] == 2
    a = pull_span["attributes"]
    assert (a["http.request.method"], a["http.route"], a["http.response.status_code"]) == (
        "GET", "/v2/{name}/manifests/{reference}", 200)
    assert (a["berth.repository"], a["berth.tenant"], a["berth.principal"]) == (REPO, "acme", "admin")
    assert a["url.path"] == f"/v2/{REPO}/manifests/v1"

    # the caller's traceparent: same trace, the server span is the caller's span's child
    assert pull_span["trace_id"] == TRACE_ID and pull_span["parent"] == PARENT_ID
    assert manifest_put["trace_id"] != TRACE_ID and manifest_put["parent"] == ""  # no traceparent: a new root

    # child spans: auth, database and content driver under their request span
    kids = _children(spans, pull_span)
    verify = [s for s in kids if s["name"] == "auth.verify_token"]
    assert len(verify) == 1 and verify[0]["attributes"]["berth.auth.outcome"] == "ok"
    assert verify[0]["attributes"]["berth.auth.principal_kind"] == "admin"
    get_manifest = [s for s in kids if s["name"] == "Catalog.get_manifest.<locals>.run"]
    assert len(get_manifest) == 1
    assert get_manifest[0]["attributes"] == {"db.system.name": "sqlite", "berth.db.operation": "read"}
    assert all(s["trace_id"] == TRACE_ID for s in _descendants(spans, pull_span))

    blob_kids = _children(spans, blob_post)
    ops = {s["name"] for s in blob_kids}
    assert {"auth.verify_token", "storage.start_upload", "storage.append", "storage.commit"} <= ops, ops
    assert any(s["attributes"].get("berth.db.operation") == "write" for s in blob_kids), ops
    assert {s["attributes"]["berth.storage.driver"] for s in blob_kids if s["name"].startswith("storage.")} == {
        "filesystem"}
    assert "storage.stat" in {s["name"] for s in _children(spans, blob_get)}
    assert any(s["attributes"].get("berth.db.operation") == "write" for s in _children(spans, manifest_put))

    login = [s for s in _children(spans, token_get) if s["name"] == "auth.login"]
    assert login and login[0]["attributes"]["berth.auth.outcome"] == "ok"
    tenant_post = _server_span(spans, "POST /admin/tenants", 201)
    names = {s["name"] for s in _descendants(spans, tenant_post)}
    assert {"auth.login", "Principals.create_tenant.<locals>.run"} <= names, names  # ORM operations by their own name
    assert "auth.grant" in {s["name"] for s in _children(spans, token_get)}

    bad = [s for s in _children(spans, refused) if s["name"] == "auth.verify_token"]
    assert bad and bad[0]["attributes"]["error.type"] == "InvalidToken"

    # every database and driver span is inside a request: none is a root
    for s in spans:
        if s["kind"] != 2:
            assert s["parent"], s

    # no secret anywhere: neither in the bytes the collector got nor in any attribute or event
    everything = b"".join(receiver.bodies)
    for secret in (ADMIN_PASSWORD, push_token, pull_token, push_token.split(".")[2], "not-a-token"):
        assert secret.encode() not in everything, secret
    assert b"authorization" not in everything.lower()
    assert base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()) not in everything
    for s in spans:
        text = json.dumps([s["attributes"], s["events"]]).lower()
        assert "authorization" not in text and "bearer" not in text and "basic" not in text, s


# ---- configuration -------------------------------------------------------------------------------


def test_the_settings_and_their_checks():
    cfg = Config.load(None, env={"BERTH_TRACING_OTLP_ENDPOINT": "http://collector:4318",
                                 "BERTH_TRACING_SAMPLE_RATIO": "0.25", "BERTH_TRACING_SERVICE_NAME": "reg"})
    assert (cfg.tracing.otlp_endpoint, cfg.tracing.sample_ratio, cfg.tracing.service_name) == (
        "http://collector:4318", 0.25, "reg")
    assert Config().tracing.otlp_endpoint is None  # off by default
    for env, words in (({"BERTH_TRACING_SAMPLE_RATIO": "1.5"}, "between 0 and 1"),
                       ({"BERTH_TRACING_OTLP_ENDPOINT": "collector:4318"}, "http:// or https://"),
                       ({"BERTH_TRACING_SERVICE_NAME": " "}, "must not be empty")):
        with pytest.raises(ConfigError) as e:
            Config.load(None, env=env)
        assert len(e.value.problems) == 1 and words in e.value.problems[0], e.value.problems
    assert tracing.traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert tracing.traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"
    assert tracing.traces_url("https://c/otlp/") == "https://c/otlp/v1/traces"


_BLOCK_OPENTELEMETRY = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from registry.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_an_endpoint_without_the_packages_is_one_line_and_exit_2(tmp_path):
    env = {**os.environ, "BERTH_TRACING_OTLP_ENDPOINT": "http://127.0.0.1:9/"}
    p = subprocess.run([sys.executable, "-c", _BLOCK_OPENTELEMETRY, "serve", "--data", str(tmp_path / "d"),
                        "--port", "9"], capture_output=True, text=True, timeout=60, env=env, cwd=REPO_ROOT)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("berth: configuration: tracing.otlp_endpoint is set but the OpenTelemetry "
                               "packages are not installed"), lines[0]
    assert "pip install 'berth[tracing]'" in lines[0]
    assert not (tmp_path / "d").exists()  # refused before anything was made


# ---- tracing off: nothing loaded, nothing run ----------------------------------------------------------


_OFF = """
import asyncio, sys, tempfile
from aiohttp.test_utils import TestClient, TestServer
from registry.app import create_app
from registry.config import Config
from registry import logs

async def main():
    cfg = Config(data_dir=tempfile.mkdtemp())
    cfg.auth.enabled = False
    app = create_app(cfg)
    async with TestClient(TestServer(app, **logs.server_kwargs(cfg))) as client:
        r = await client.get("/v2/")
        assert r.status == 200, r.status
        r = await client.get("/v2/acme/app/manifests/v1", headers={"traceparent": "00-%s-%s-01"})
        assert r.status == 404, r.status
    print(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"))

asyncio.run(main())
""" % (TRACE_ID, PARENT_ID)


def test_tracing_off_imports_no_opentelemetry_module(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    p = subprocess.run([sys.executable, "-c", _OFF], capture_output=True, text=True, timeout=120, env=env,
                       cwd=REPO_ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]", p.stdout


async def test_tracing_off_runs_no_code_of_the_tracing_module_per_request(client):
    """The request path with tracing off is the path without tracing: no middleware, no wrapper
    (create_app's one ``if`` is at start-up)."""
    app = client.server.app
    assert not tracing.enabled()
    names = [getattr(m, "__qualname__", repr(m)) for m in app.middlewares]
    assert not any("trace" in n for n in names), names
    await push_image(client, REPO, "v1")
    called: list[str] = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename == tracing.__file__:
            called.append(frame.f_code.co_name)

    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        for path in ("/v2/", f"/v2/{REPO}/manifests/v1", f"/v2/{REPO}/tags/list", "/nope"):
            r = await client.get(path, headers={"traceparent": TRACEPARENT})
            await r.read()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    assert called == []


# ---- sampling and the span helpers in-process -----------------------------------------------------------


async def test_sample_ratio_zero_keeps_only_the_callers_sampled_traces(serve, config, receiver):
    config.tracing.otlp_endpoint = receiver.endpoint
    config.tracing.sample_ratio = 0.0
    client = await serve(config)
    try:
        assert tracing.enabled()
        assert (await client.get("/v2/", headers={"X-Request-Id": "unsampled"})).status == 200
        r = await client.get("/v2/", headers={"X-Request-Id": "sampled", "traceparent": TRACEPARENT})
        assert r.status == 200
        r = await client.get("/v2/", headers={"X-Request-Id": "declined", "traceparent": TRACEPARENT[:-2] + "00"})
        assert r.status == 200
        assert tracing.flush()
        ids = [s["attributes"].get("berth.request_id") for s in receiver.spans()]
        assert ids == ["sampled"], ids
    finally:
        await client.close()
    assert not tracing.enabled()  # the app's cleanup shut it down


@pytest.mark.process
def test_every_worker_exports_its_own_spans_and_flushes_them_at_exit(receiver, workdir):
    """``--workers 2``: each worker has its own exporter (its pid in the resource); every request's
    span arrives, the last ones flushed when the supervisor's SIGTERM stops the workers."""
    env = {"BERTH_TRACING_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "60000"}  # only the exit flushes
    server = BerthServer(workdir, auth=False, env=env, extra_args=("--workers", "2")).start()
    try:
        for i in range(12):
            res = server._send("GET", "/v2/", {"X-Request-Id": f"w-{i}"}, None)
            assert res.status == 200
    finally:
        server.stop()
    assert server.proc.returncode == 0, server.log()
    spans = [s for s in receiver.spans() if s["attributes"].get("berth.request_id", "").startswith("w-")]
    assert sorted(s["attributes"]["berth.request_id"] for s in spans) == sorted(f"w-{i}" for i in range(12))
    pids = {s["resource"]["process.pid"] for s in spans}
    assert pids and server.proc.pid not in pids  # the workers', not the supervisor's


async def test_a_collector_that_never_answers_does_not_hold_up_the_shutdown(serve, config):
    """Exports retry for up to 10 s; stopping waits at most tracing.SHUTDOWN_FLUSH_MS for them."""
    import socket
    import time

    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        config.tracing.otlp_endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = await serve(config)
        for _ in range(3):
            assert (await client.get("/v2/")).status == 200
        started = time.monotonic()
        await client.close()  # the app's cleanup: tracing.shutdown()
        took = time.monotonic() - started
    assert not tracing.enabled()
    assert took < tracing.SHUTDOWN_FLUSH_MS / 1000 + 2, took


async def test_a_driver_stream_is_one_span_until_its_last_chunk(serve, config, receiver):
    from registry.services import SERVICES

    config.tracing.otlp_endpoint = receiver.endpoint
    client = await serve(config)
    try:
        _, _, _, (layer,) = await push_image(client, REPO, "v1")
        driver = client.server.app[SERVICES].driver
        with tracing._tracer.start_as_current_span("caller"):
            data = b"".join([chunk async for chunk in driver.read(layer)])
        assert data and tracing.flush()
    finally:
        await client.close()
    spans = receiver.spans()
    caller = next(s for s in spans if s["name"] == "caller")
    (read,) = [s for s in spans if s["name"] == "storage.read"]
    assert read["parent"] == caller["span_id"]
    assert read["attributes"]["berth.storage.bytes"] == len(data) and read["attributes"]["berth.storage.chunks"] >= 1
    assert read["attributes"]["berth.storage.driver"] == "filesystem"
