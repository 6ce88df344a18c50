"""Who may call the admin API: 401 / 403 / 429 with OCI JSON bodies; Basic and Bearer."""
from __future__ import annotations

import pytest

from .conftest import ADMIN, ALICE, BOB, DAVE, basic, bearer, err, token_ok

pytestmark = pytest.mark.usefixtures("world")


async def test_no_credentials_is_401_with_basic_challenge(client):
    r = await client.get("/admin/tenants")
    await err(r, 401, "UNAUTHORIZED")
    assert r.headers["WWW-Authenticate"] == 'Basic realm="berth"'


@pytest.mark.parametrize("header", [
    basic("admin", "wrong"),
    basic("nobody", "whatever-password"),
    {"Authorization": "Basic !!!not-base64"},
    {"Authorization": "Basic " + "bm9jb2xvbg=="},  # "nocolon"
    {"Authorization": "Bearer not.a.token"},
    {"Authorization": "Digest abc"},
])
async def test_bad_credentials_are_401(client, header):
    r = await client.get("/admin/tenants", headers=header)
    await err(r, 401, "UNAUTHORIZED")
    assert r.headers["WWW-Authenticate"].startswith("Basic ")


async def test_reader_is_403(client):
    await err(await client.get("/admin/tenants", headers=BOB), 403, "DENIED")


async def test_robot_is_403(client, principals):
    robot, secret = await principals.create_robot("acme", "ci", ["pull", "push", "delete"])
    await err(await client.get("/admin/tenants", headers=basic(robot.username, secret)), 403, "DENIED")


async def test_brute_force_is_429_with_retry_after(client):
    for _ in range(5):
        await err(await client.get("/admin/tenants", headers=basic("alice", "nope")), 401, "UNAUTHORIZED")
    r = await client.get("/admin/tenants", headers=basic("alice", "nope"))
    await err(r, 429, "TOOMANYREQUESTS")
    assert int(r.headers["Retry-After"]) > 0
    # the same limiter as the realm: the token endpoint refuses too
    r = await client.get("/auth/token", params={"service": "berth"}, headers=basic("alice", "nope"))
    assert r.status == 429


async def test_whoami(client):
    r = await client.get("/admin/whoami", headers=ADMIN)
    assert await r.json() == {"name": "admin", "kind": "admin", "admin": True, "owns": []}
    r = await client.get("/admin/whoami", headers=ALICE)
    assert await r.json() == {"name": "alice", "kind": "user", "admin": False, "owns": ["acme"]}


async def test_bearer_token_with_registry_admin_scope(client):
    tok = await token_ok(client, ADMIN, "registry:admin:*")
    assert tok["token"]
    r = await client.get("/admin/tenants", headers=bearer(tok["token"]))
    assert r.status == 200
    assert {t["name"] for t in (await r.json())["tenants"]} == {"acme", "globex"}


async def test_owner_bearer_token_sees_own_tenant_only(client):
    tok = await token_ok(client, DAVE, "registry:admin:*")
    r = await client.get("/admin/tenants", headers=bearer(tok["token"]))
    assert [t["name"] for t in (await r.json())["tenants"]] == ["globex"]


async def test_bearer_token_without_admin_scope_is_403(client):
    tok = await token_ok(client, ADMIN, "repository:acme/app:pull")
    await err(await client.get("/admin/tenants", headers=bearer(tok["token"])), 403, "DENIED")


async def test_reader_cannot_get_admin_scope(client):
    tok = await token_ok(client, BOB, "registry:admin:*")
    await err(await client.get("/admin/tenants", headers=bearer(tok["token"])), 403, "DENIED")


async def test_owner_token_stops_working_when_membership_removed(client):
    tok = await token_ok(client, ALICE, "registry:admin:*")
    assert (await client.get("/admin/tenants/acme", headers=bearer(tok["token"]))).status == 200
    r = await client.delete("/admin/tenants/acme/members/alice", headers=ADMIN)
    assert r.status == 200
    r = await client.get("/admin/tenants/acme", headers=bearer(tok["token"]))
    await err(r, 403, "DENIED")  # alice owns nothing now: the token's registry:admin:* is gone


async def test_unknown_admin_path_is_json_404(client):
    await err(await client.get("/admin/nothing", headers=ADMIN), 404, "NOT_FOUND")


async def test_wrong_method_is_json_405(client):
    await err(await client.put("/admin/tenants", headers=ADMIN), 405, "UNSUPPORTED")


async def test_admin_api_absent_without_auth(aiohttp_client, tmp_path):
    from registry.app import create_app
    from registry.config import Config

    cfg = Config(data_dir=tmp_path / "noauth")
    cfg.auth.enabled = False
    c = await aiohttp_client(create_app(cfg))
    assert (await c.get("/admin/tenants")).status == 404
