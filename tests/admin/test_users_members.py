"""/admin/users (admins only) and /admin/tenants/{tenant}/members (admins and the tenant's owners)."""
from __future__ import annotations

import pytest

from .conftest import ADMIN, ALICE, BOB, DAVE, basic, bearer, err, token_ok

pytestmark = pytest.mark.usefixtures("world")


async def test_admin_creates_user_who_can_log_in(client):
    r = await client.post("/admin/users", json={"username": "erin", "password": "erin-password"}, headers=ADMIN)
    assert r.status == 201
    assert await r.json() == {"username": "erin", "admin": False, "roles": {}}
    await token_ok(client, basic("erin", "erin-password"))


async def test_admin_may_create_admins(client):
    r = await client.post("/admin/users", json={"username": "root2", "password": "root2-password", "admin": True},
                          headers=ADMIN)
    assert r.status == 201
    r = await client.get("/admin/whoami", headers=basic("root2", "root2-password"))
    assert (await r.json())["admin"] is True


async def test_owner_cannot_create_users(client):
    r = await client.post("/admin/users", json={"username": "erin", "password": "erin-password"}, headers=ALICE)
    await err(r, 403, "DENIED")


@pytest.mark.parametrize("body,status,code", [
    ({"username": "erin", "password": "short"}, 400, "INVALID_REQUEST"),
    ({"username": "robot+like", "password": "long-enough"}, 400, "NAME_INVALID"),
    ({"username": "erin"}, 400, "INVALID_REQUEST"),
    ({"username": "erin", "password": "long-enough", "admin": "no"}, 400, "INVALID_REQUEST"),
    ({"username": "alice", "password": "long-enough"}, 409, "DENIED"),
])
async def test_bad_user_bodies(client, body, status, code):
    await err(await client.post("/admin/users", json=body, headers=ADMIN), status, code)


async def test_list_and_show_users(client):
    r = await client.get("/admin/users", headers=ADMIN)
    users = {u["username"]: u for u in (await r.json())["users"]}
    assert users["alice"]["roles"] == {"acme": "owner"}
    assert users["admin"]["admin"] is True
    assert "password" not in str(users).lower()
    r = await client.get("/admin/users/bob", headers=ADMIN)
    assert (await r.json())["roles"] == {"acme": "reader"}
    await err(await client.get("/admin/users/nobody", headers=ADMIN), 404, "NAME_UNKNOWN")
    await err(await client.get("/admin/users", headers=ALICE), 403, "DENIED")


async def test_password_change_takes_effect_at_once(client, auth):
    tok = await token_ok(client, BOB, "repository:acme/app:pull")
    assert await auth.login("bob", "bob-password", "t") is not None  # cached
    r = await client.put("/admin/users/bob/password", json={"password": "new-bob-password"}, headers=ADMIN)
    assert r.status == 200
    assert await auth.login("bob", "bob-password", "t") is None
    assert await auth.login("bob", "new-bob-password", "t") is not None
    r = await client.get("/v2/acme/app/tags/list", headers=bearer(tok["token"]))
    assert r.status == 401 and "invalid_token" in r.headers["WWW-Authenticate"]
    await err(await client.put("/admin/users/nobody/password", json={"password": "long-enough"}, headers=ADMIN),
              404, "NAME_UNKNOWN")


async def test_delete_user(client, auth):
    await err(await client.delete("/admin/users/admin", headers=ADMIN), 403, "DENIED")  # not yourself
    await err(await client.delete("/admin/users/bob", headers=ALICE), 403, "DENIED")
    assert (await client.delete("/admin/users/bob", headers=ADMIN)).status == 200
    assert await auth.login("bob", "bob-password", "t") is None
    await err(await client.delete("/admin/users/bob", headers=ADMIN), 404, "NAME_UNKNOWN")


async def test_owner_manages_members_of_own_tenant(client, principals):
    # an administrator adds people; the owner then manages their roles
    await err(await client.put("/admin/tenants/acme/members/dave", json={"role": "writer"}, headers=ALICE),
              404, "NAME_UNKNOWN")
    assert (await client.put("/admin/tenants/acme/members/dave", json={"role": "reader"}, headers=ADMIN)).status == 200
    r = await client.put("/admin/tenants/acme/members/dave", json={"role": "writer"}, headers=ALICE)
    assert r.status == 200
    assert await r.json() == {"tenant": "acme", "username": "dave", "role": "writer"}
    r = await client.get("/admin/tenants/acme/members", headers=ALICE)
    assert (await r.json())["members"] == [
        {"username": "alice", "role": "owner"}, {"username": "bob", "role": "reader"},
        {"username": "dave", "role": "writer"},
    ]
    # dave owns globex, not acme: he cannot manage acme even as a member
    await err(await client.get("/admin/tenants/acme/members", headers=DAVE), 403, "DENIED")
    assert (await client.delete("/admin/tenants/acme/members/dave", headers=ALICE)).status == 200
    assert "dave" not in await principals.members("acme")


async def test_member_errors(client):
    await err(await client.put("/admin/tenants/acme/members/bob", json={"role": "god"}, headers=ALICE),
              400, "INVALID_REQUEST")
    await err(await client.put("/admin/tenants/acme/members/bob", json={}, headers=ALICE), 400, "INVALID_REQUEST")
    await err(await client.put("/admin/tenants/acme/members/nobody", json={"role": "reader"}, headers=ALICE),
              404, "NAME_UNKNOWN")
    await err(await client.delete("/admin/tenants/acme/members/dave", headers=ALICE), 404, "NAME_UNKNOWN")
    await err(await client.put("/admin/tenants/nope/members/bob", json={"role": "reader"}, headers=ADMIN),
              404, "NAME_UNKNOWN")


async def test_promotion_to_owner_opens_the_admin_api(client):
    await err(await client.get("/admin/tenants/acme", headers=BOB), 403, "DENIED")
    assert (await client.put("/admin/tenants/acme/members/bob", json={"role": "owner"}, headers=ALICE)).status == 200
    assert (await client.get("/admin/tenants/acme", headers=BOB)).status == 200


async def test_membership_removal_revokes_tokens_at_once(client):
    tok = await token_ok(client, BOB, "repository:acme/app:pull")
    assert (await client.delete("/admin/tenants/acme/members/bob", headers=ALICE)).status == 200
    r = await client.get("/v2/acme/app/tags/list", headers=bearer(tok["token"]))
    assert r.status == 401
    tok = await token_ok(client, BOB, "repository:acme/app:pull")
    r = await client.get("/v2/acme/app/tags/list", headers=bearer(tok["token"]))
    assert r.status == 401 and "insufficient_scope" in r.headers["WWW-Authenticate"]
