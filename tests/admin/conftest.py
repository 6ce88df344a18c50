"""Fixtures for the admin API tests: Berth with auth ON and a small world of principals."""
from __future__ import annotations

import hashlib
import json

import pytest

from registry.config import Config

# Berth with auth ON: the same app, bcrypt and header helpers as the auth tests
from tests.auth.conftest import (  # noqa: F401 - fixtures are found by name
    ADMIN_PASSWORD,
    auth,
    basic,
    bearer,
    client,
    fast_bcrypt,
    principals,
)
from tests.auth.conftest import config as auth_config


@pytest.fixture
def config(auth_config) -> Config:
    auth_config.auth.max_admin_token_ttl = 3600  # the token tests check the cap
    return auth_config


ADMIN = basic("admin", ADMIN_PASSWORD)
ALICE = basic("alice", "alice-password")  # owner of acme
BOB = basic("bob", "bob-password")  # reader of acme
DAVE = basic("dave", "dave-password")  # owner of globex


@pytest.fixture
async def world(principals):
    await principals.create_tenant("acme")
    await principals.create_tenant("globex")
    for user in ("alice", "bob", "dave"):
        await principals.create_user(user, f"{user}-password")
    await principals.set_membership("acme", "alice", "owner")
    await principals.set_membership("acme", "bob", "reader")
    await principals.set_membership("globex", "dave", "owner")


async def token_for(client, headers: dict | None, *scopes: str) -> dict:
    """A realm token (GET /auth/token)."""
    query = [("service", "berth")] + [("scope", s) for s in scopes]
    return await client.get("/auth/token", params=query, headers=headers or {})


async def token_ok(client, headers, *scopes) -> dict:
    r = await token_for(client, headers, *scopes)
    assert r.status == 200, await r.text()
    return await r.json()


async def err(r, status: int, code: str) -> dict:
    """Assert an OCI error response; return its first error."""
    body = await r.json(content_type=None)
    assert r.status == status, body
    assert r.content_type == "application/json"
    assert isinstance(body.get("errors"), list) and body["errors"], body
    assert body["errors"][0]["code"] == code, body
    return body["errors"][0]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def push_small_image(client, name: str, headers: dict, tag: str = "v1") -> str:
    """Push a one-layer image with the given Authorization headers; return the manifest digest."""
    cfg = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = f"layer of {name}".encode()
    for blob in (cfg, layer):
        r = await client.post(f"/v2/{name}/blobs/uploads/?digest={sha256(blob)}", data=blob,
                              headers={**headers, "Content-Type": "application/octet-stream"})
        assert r.status == 201, await r.text()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(cfg), "size": len(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer), "size": len(layer)}],
    }).encode()
    r = await client.put(f"/v2/{name}/manifests/{tag}", data=manifest,
                         headers={**headers, "Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 201, await r.text()
    return sha256(manifest)
