"""/admin/tenants: admins create and delete; owners see and change only their own tenant."""
from __future__ import annotations

import pytest

from .conftest import ADMIN, ALICE, DAVE, bearer, err, push_small_image, token_ok

pytestmark = pytest.mark.usefixtures("world")


async def test_admin_creates_tenant(client, principals):
    r = await client.post("/admin/tenants", json={"name": "initech", "public": True}, headers=ADMIN)
    assert r.status == 201
    body = await r.json()
    assert body["name"] == "initech" and body["public"] is True and body["created_at"].endswith("Z")
    assert (await principals.get_tenant("initech")).public is True


async def test_create_defaults_to_private(client):
    r = await client.post("/admin/tenants", json={"name": "initech"}, headers=ADMIN)
    assert (await r.json())["public"] is False


async def test_duplicate_tenant_is_409(client):
    await err(await client.post("/admin/tenants", json={"name": "acme"}, headers=ADMIN), 409, "DENIED")


@pytest.mark.parametrize("body,code", [
    ({"name": "Bad Name"}, "NAME_INVALID"),
    ({"name": "a/b"}, "NAME_INVALID"),
    ({}, "INVALID_REQUEST"),
    ({"name": 3}, "INVALID_REQUEST"),
    ({"name": "ok", "public": "yes"}, "INVALID_REQUEST"),
    ({"name": "ok", "colour": "red"}, "INVALID_REQUEST"),
    (["name"], "INVALID_REQUEST"),
])
async def test_bad_tenant_bodies_are_400(client, body, code):
    await err(await client.post("/admin/tenants", json=body, headers=ADMIN), 400, code)


async def test_malformed_json_is_400(client):
    r = await client.post("/admin/tenants", data=b"{not json", headers={**ADMIN, "Content-Type": "application/json"})
    e = await err(r, 400, "INVALID_REQUEST")
    assert "JSON" in e["message"]


async def test_owner_cannot_create_tenant(client):
    await err(await client.post("/admin/tenants", json={"name": "mine"}, headers=ALICE), 403, "DENIED")


async def test_list_admin_sees_all_owner_sees_own(client):
    r = await client.get("/admin/tenants", headers=ADMIN)
    assert [t["name"] for t in (await r.json())["tenants"]] == ["acme", "globex"]
    r = await client.get("/admin/tenants", headers=ALICE)
    assert [t["name"] for t in (await r.json())["tenants"]] == ["acme"]


async def test_get_tenant(client):
    r = await client.get("/admin/tenants/acme", headers=ALICE)
    assert r.status == 200
    body = await r.json()
    assert body["name"] == "acme"
    assert body["members"] == {"alice": "owner", "bob": "reader"}
    assert body["repositories"] == 0 and body["robots"] == 0


async def test_unknown_tenant_is_404_for_admin(client):
    await err(await client.get("/admin/tenants/nope", headers=ADMIN), 404, "NAME_UNKNOWN")


@pytest.mark.parametrize("tenant", ["globex", "does-not-exist"])
async def test_owner_gets_403_for_any_other_tenant(client, tenant):
    """Existing or not, another tenant is 403 for an owner: no probing for names."""
    for method, path, body in [
        ("GET", f"/admin/tenants/{tenant}", None),
        ("PATCH", f"/admin/tenants/{tenant}", {"public": True}),
        ("DELETE", f"/admin/tenants/{tenant}", None),
        ("GET", f"/admin/tenants/{tenant}/members", None),
        ("PUT", f"/admin/tenants/{tenant}/members/alice", {"role": "owner"}),
        ("DELETE", f"/admin/tenants/{tenant}/members/dave", None),
        ("GET", f"/admin/tenants/{tenant}/robots", None),
        ("POST", f"/admin/tenants/{tenant}/robots", {"name": "x", "actions": ["pull"]}),
        ("DELETE", f"/admin/tenants/{tenant}/robots/x", None),
        ("POST", f"/admin/tenants/{tenant}/robots/x/rotate", None),
        ("POST", f"/admin/tenants/{tenant}/pull-secrets", {"namespace": "default"}),
        ("GET", f"/admin/audit?tenant={tenant}", None),
    ]:
        r = await client.request(method, path, json=body, headers=ALICE)
        await err(r, 403, "DENIED")


async def test_owner_sets_public_flag_and_anonymous_pull_follows(client, auth):
    anon = await token_ok(client, None, "repository:acme/app:pull")
    assert anon["token"] and (await auth.identity_from_token(anon["token"]))[1] == []
    r = await client.patch("/admin/tenants/acme", json={"public": True}, headers=ALICE)
    assert r.status == 200 and (await r.json())["public"] is True
    anon = await token_ok(client, None, "repository:acme/app:pull")
    _, access = await auth.identity_from_token(anon["token"])
    assert access == [{"type": "repository", "name": "acme/app", "actions": ["pull"]}]
    await err(await client.patch("/admin/tenants/acme", json={}, headers=ALICE), 400, "INVALID_REQUEST")
    await err(await client.patch("/admin/tenants/acme", json={"public": 1}, headers=ALICE), 400, "INVALID_REQUEST")


async def test_only_admins_delete_tenants(client):
    await err(await client.delete("/admin/tenants/acme", headers=ALICE), 403, "DENIED")


async def test_delete_empty_tenant_revokes_members_and_robots(client, principals, auth):
    robot, secret = await principals.create_robot("globex", "ci", ["pull"])
    assert await auth.login(robot.username, secret, "t") is not None  # cached now
    tok = await token_ok(client, DAVE, "registry:admin:*")
    r = await client.delete("/admin/tenants/globex", headers=ADMIN)
    assert r.status == 200
    body = await r.json()
    assert body == {"deleted": "globex", "repositories_deleted": 0, "members_removed": ["dave"],
                    "robots_deleted": ["globex+ci"]}
    assert await principals.get_tenant("globex") is None
    assert await auth.login(robot.username, secret, "t") is None  # cache dropped at once
    # dave owns nothing any more: his admin-API token grants nothing (his other tenants' would stay)
    await err(await client.get("/admin/tenants", headers=bearer(tok["token"])), 403, "DENIED")
    await err(await client.delete("/admin/tenants/globex", headers=ADMIN), 404, "NAME_UNKNOWN")


async def test_delete_tenant_with_repositories_needs_force(client, principals):
    tok = await token_ok(client, ADMIN, "repository:acme/app:pull,push")
    await push_small_image(client, "acme/app", {"Authorization": f"Bearer {tok['token']}"})
    assert await principals.tenant_repository_count("acme") == 1
    e = await err(await client.delete("/admin/tenants/acme", headers=ADMIN), 409, "DENIED")
    assert e["detail"] == {"tenant": "acme", "repositories": 1}
    await err(await client.delete("/admin/tenants/acme?force=maybe", headers=ADMIN), 400, "INVALID_REQUEST")
    r = await client.delete("/admin/tenants/acme?force=true", headers=ADMIN)
    assert r.status == 200 and (await r.json())["repositories_deleted"] == 1
    # a tenant re-created under the same name starts empty
    assert (await client.post("/admin/tenants", json={"name": "acme"}, headers=ADMIN)).status == 201
    assert await principals.tenant_repository_count("acme") == 0
    tok = await token_ok(client, ADMIN, "repository:acme/app:pull")
    r = await client.get("/v2/acme/app/tags/list", headers={"Authorization": f"Bearer {tok['token']}"})
    assert r.status == 404


async def test_repository_count_is_exact_for_tenant_names_with_wildcards(principals, client):
    """'_' is a LIKE wildcard: tenant a_b must not count axb's repositories."""
    await principals.create_tenant("a_b")
    await principals.create_tenant("axb")
    tok = await token_ok(client, ADMIN, "repository:axb/app:pull,push")
    await push_small_image(client, "axb/app", {"Authorization": f"Bearer {tok['token']}"})
    assert await principals.tenant_repository_count("a_b") == 0
    r = await client.delete("/admin/tenants/a_b", headers=ADMIN)
    assert r.status == 200
    assert await principals.tenant_repository_count("axb") == 1
