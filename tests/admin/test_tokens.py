"""POST /admin/tokens: service tokens, admins only, TTL capped by auth.max_admin_token_ttl."""
from __future__ import annotations

import jwt
import pytest

from .conftest import ADMIN, ALICE, bearer, err, push_small_image, token_ok

pytestmark = pytest.mark.usefixtures("world")


async def test_admin_issues_service_token(client, auth):
    body = {"subject": "ci-deployer", "scope": ["repository:acme/app:pull,push"], "expires_in": 600}
    r = await client.post("/admin/tokens", json=body, headers=ADMIN)
    assert r.status == 201
    tok = await r.json()
    assert tok["token"] == tok["access_token"] and tok["expires_in"] == 600 and tok["issued_at"].endswith("Z")
    claims = jwt.decode(tok["token"], options={"verify_signature": False})
    assert claims["sub"] == "ci-deployer" and claims["exp"] - claims["iat"] == 600
    assert claims["access"] == [{"type": "repository", "name": "acme/app", "actions": ["pull", "push"]}]
    identity, access = await auth.identity_from_token(tok["token"])
    assert identity.kind == "service" and access == claims["access"]
    # the token works against /v2/ for exactly that repository
    await push_small_image(client, "acme/app", bearer(tok["token"]))
    r = await client.get("/v2/acme/other/tags/list", headers=bearer(tok["token"]))
    assert r.status == 401


async def test_ttl_is_capped(client, config):
    body = {"subject": "ci", "scope": ["repository:acme/app:pull"], "expires_in": 10 * 24 * 3600}
    r = await client.post("/admin/tokens", json=body, headers=ADMIN)
    tok = await r.json()
    assert tok["expires_in"] == config.auth.max_admin_token_ttl == 3600
    claims = jwt.decode(tok["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600


async def test_default_ttl_is_token_ttl(client, config):
    r = await client.post("/admin/tokens", json={"subject": "ci", "scope": "repository:acme/app:pull"}, headers=ADMIN)
    assert (await r.json())["expires_in"] == config.auth.token_ttl


async def test_owners_cannot_issue_tokens(client):
    r = await client.post("/admin/tokens", json={"subject": "x", "scope": ["repository:acme/app:pull"]}, headers=ALICE)
    await err(r, 403, "DENIED")


async def test_admin_service_token_drives_the_admin_api_but_cannot_mint_tokens(client):
    r = await client.post("/admin/tokens", json={"subject": "provisioner", "scope": ["registry:admin:*"]}, headers=ADMIN)
    tok = (await r.json())["token"]
    r = await client.post("/admin/tenants", json={"name": "initech"}, headers=bearer(tok))
    assert r.status == 201
    r = await client.post("/admin/tokens", json={"subject": "x", "scope": ["registry:admin:*"]}, headers=bearer(tok))
    await err(r, 403, "DENIED")
    r = await client.get("/admin/audit?limit=1", headers=ADMIN)
    ev = (await r.json())["events"][0]
    assert ev["action"] == "tenant.create" and ev["actor"] == "service:provisioner" and ev["detail"]["via"] == "service"


@pytest.mark.parametrize("body", [
    {"scope": ["repository:acme/app:pull"]},
    {"subject": "has space", "scope": ["repository:acme/app:pull"]},
    {"subject": "ci"},
    {"subject": "ci", "scope": []},
    {"subject": "ci", "scope": ["nonsense"]},
    {"subject": "ci", "scope": ["repository:acme/app:"]},
    {"subject": "ci", "scope": ["repository:acme/app:pull"], "expires_in": 0},
    {"subject": "ci", "scope": ["repository:acme/app:pull"], "expires_in": "60"},
])
async def test_bad_token_requests_are_400(client, body):
    await err(await client.post("/admin/tokens", json=body, headers=ADMIN), 400, "INVALID_REQUEST")


async def test_realm_admin_token_can_issue(client):
    tok = await token_ok(client, ADMIN, "registry:admin:*")
    r = await client.post("/admin/tokens", json={"subject": "ci", "scope": ["repository:acme/app:pull"]},
                          headers=bearer(tok["token"]))
    assert r.status == 201
