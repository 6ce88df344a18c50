"""GET /v2/ and the headers every response carries."""
from __future__ import annotations

from tests.conftest import error_code, push_image

API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")


async def test_version_check(client):
    r = await client.get("/v2/")
    assert r.status == 200
    assert r.headers[API_VERSION[0]] == API_VERSION[1]
    assert r.headers["Content-Type"].startswith("application/json")
    assert await r.json() == {}


async def test_version_check_head(client):
    r = await client.head("/v2/")
    assert r.status == 200
    assert r.headers[API_VERSION[0]] == API_VERSION[1]


ERROR_CASES = [
    ("GET", "/v2/nope/manifests/latest", 404, "NAME_UNKNOWN"),
    ("GET", "/v2/nope/blobs/sha256:" + "0" * 64, 404, "BLOB_UNKNOWN"),
    ("GET", "/v2/Bad/tags/list", 400, "NAME_INVALID"),
    ("GET", "/v3/", 404, "NOT_FOUND"),
    ("GET", "/nothing/here", 404, "NOT_FOUND"),
    ("GET", "/v2/foo", 404, "NOT_FOUND"),
    ("POST", "/v2/", 405, "UNSUPPORTED"),
    ("PATCH", "/v2/foo/manifests/latest", 405, "UNSUPPORTED"),
    ("POST", "/v2/foo/tags/list", 405, "UNSUPPORTED"),
    ("DELETE", "/v2/_catalog", 405, "UNSUPPORTED"),
    ("PUT", "/v2/foo/blobs/uploads/", 405, "UNSUPPORTED"),
]


async def test_errors_carry_api_version_and_oci_body(client):
    for method, path, status, code in ERROR_CASES:
        r = await client.request(method, path)
        assert r.status == status, (method, path)
        assert r.headers[API_VERSION[0]] == API_VERSION[1], (method, path)
        assert r.headers["Content-Type"].startswith("application/json"), (method, path)
        assert await error_code(r) == code, (method, path)


async def test_405_lists_allowed_methods(client):
    r = await client.post("/v2/")
    assert r.status == 405
    assert "GET" in r.headers.get("Allow", "")


async def test_api_version_on_every_kind_of_success(client):
    digest, _, config_digest, _ = await push_image(client, "hdr/repo", "v1")
    responses = [
        await client.get("/v2/_catalog"),
        await client.get("/v2/hdr/repo/tags/list"),
        await client.get("/v2/hdr/repo/manifests/v1"),
        await client.head("/v2/hdr/repo/manifests/v1"),
        await client.get(f"/v2/hdr/repo/blobs/{config_digest}"),
        await client.head(f"/v2/hdr/repo/blobs/{config_digest}"),
        await client.get(f"/v2/hdr/repo/referrers/{digest}"),
        await client.post("/v2/hdr/repo/blobs/uploads/"),
    ]
    for r in responses:
        assert r.status < 300, (r.method, r.url, r.status)
        assert r.headers[API_VERSION[0]] == API_VERSION[1], r.url


async def test_healthz(client):
    r = await client.get("/healthz")
    assert r.status == 200
    assert (await r.json())["status"] == "ok"
