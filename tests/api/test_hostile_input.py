"""Garbage at every endpoint: never a 500, always the spec's JSON error body.

Every route of the route table gets every method with malformed headers, bodies,
parameters and names, with auth off and on. A 5xx, or an error without an
``errors`` list, fails the test.
"""
from __future__ import annotations

import itertools
import json

import pytest
from yarl import URL

from registry.app import create_app
from registry.config import Config
from tests.conftest import push_image

D = "sha256:" + "a" * 64
PATHS = [
    "/v2/", "/v2/_catalog", "/v2/_catalog?n=abc", "/v2/_catalog?n=-1&last=%ff",
    "/v2/a/b/tags/list?n=99999999999999999999", "/v2/a/b/tags/list?last=",
    f"/v2/a/b/manifests/{D}", "/v2/a/b/manifests/latest", "/v2/a/b/manifests/sha256:zz", "/v2/a/b/manifests/%00",
    f"/v2/a/b/blobs/{D}", "/v2/a/b/blobs/md5:abc", "/v2/a/b/blobs/sha256:", "/v2/A/B/blobs/" + D,
    "/v2/a/b/blobs/uploads/", f"/v2/a/b/blobs/uploads/?digest={D}", "/v2/a/b/blobs/uploads/?mount=x&from=../y",
    "/v2/a/b/blobs/uploads/" + "f" * 32, "/v2/a/b/blobs/uploads/..%2f..%2fetc", "/v2/a/b/blobs/uploads/zz?digest=bad",
    f"/v2/a/b/referrers/{D}?artifactType=%ff", "/v2/a/b/referrers/nope", "/v2/" + "a/" * 200 + "manifests/x",
    "/auth/token?service=berth&scope=repository:a:b:c:d:e", "/auth/token?scope=%ff%fe", "/auth/jwks.json",
    "/admin/tenants", "/admin/tenants/%ff", "/admin/tenants/a/robots/b/rotate", "/admin/users/x/password",
    "/admin/tenants/a/pull-secrets", "/admin/tokens", "/admin/audit?limit=x&before=y", "/healthz", "/nope",
]
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
HEADERS = [
    {},
    {"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Content-Range": "9-1"},
    {"Authorization": "Bearer not.a.jwt", "Content-Range": "bytes=abc"},
    {"Authorization": "Basic %%%", "Content-Type": "application/json", "Accept": "application/yaml"},
    {"Authorization": "Basic " + "YWRtaW46" * 3, "Content-Range": "0-99999999999999999999999"},
]
BODIES = [b"", b"{", b"[]", json.dumps({"name": 1, "public": "x", "actions": "pull", "scope": 7}).encode(), b"\xff" * 64]


def _config(tmp_path, auth: bool) -> Config:
    cfg = Config(data_dir=tmp_path / "data")
    cfg.auth.enabled = auth
    cfg.auth.admin_password = "hostile-admin-password"
    cfg.auth.max_failed_logins = 10_000  # this test is not about the limiter
    return cfg


@pytest.mark.parametrize("auth", [False, True], ids=["auth-off", "auth-on"])
async def test_no_5xx_and_always_a_json_error(aiohttp_client, tmp_path, auth):
    client = await aiohttp_client(create_app(_config(tmp_path, auth)))
    if not auth:
        await push_image(client, "a/b", "latest")  # some state for the handlers to trip over
    failures = []
    for i, (path, method) in enumerate(itertools.product(PATHS, METHODS)):
        headers = HEADERS[i % len(HEADERS)]
        body = BODIES[i % len(BODIES)] if method in ("POST", "PUT", "PATCH") else None
        r = await client.request(method, URL(path, encoded=True), headers=headers, data=body)
        raw = await r.read()
        where = f"{method} {path} {headers} -> {r.status}"
        if r.status >= 500:
            failures.append(f"{where}: {raw[:200]!r}")
        elif r.status >= 400 and method != "HEAD":
            try:
                errors = json.loads(raw)["errors"]
                assert isinstance(errors, list) and errors and all("code" in e and "message" in e for e in errors)
            except (ValueError, KeyError, TypeError, AssertionError):
                failures.append(f"{where}: not an OCI error body: {raw[:200]!r}")
    assert not failures, "\n".join(failures)
