"""/admin/tenants/{tenant}/robots: secret shown once, never listed; revoke and rotate at once."""
from __future__ import annotations

import pytest

from .conftest import ADMIN, ALICE, BOB, DAVE, basic, bearer, err, token_for, token_ok

pytestmark = pytest.mark.usefixtures("world")


async def create(client, body, headers=ALICE, tenant="acme"):
    r = await client.post(f"/admin/tenants/{tenant}/robots", json=body, headers=headers)
    assert r.status == 201, await r.text()
    return await r.json()


async def test_create_shows_secret_once_and_list_never(client):
    robot = await create(client, {"name": "ci", "actions": ["pull", "push"], "repositories": ["app", "team/*"],
                                  "description": "CI pipeline"})
    assert robot["username"] == "acme+ci"
    assert len(robot["secret"]) >= 43  # 32 random bytes, urlsafe base64
    assert robot["actions"] == ["pull", "push"] and robot["repositories"] == ["app", "team/*"]
    r = await client.get("/admin/tenants/acme/robots", headers=ALICE)
    text = await r.text()
    assert robot["secret"] not in text and "secret" not in text
    listed = (await r.json())["robots"]
    assert [x["username"] for x in listed] == ["acme+ci"]
    r = await client.get("/admin/tenants/acme/robots/ci", headers=ALICE)
    assert "secret" not in await r.json()
    await err(await client.get("/admin/tenants/acme/robots/nope", headers=ALICE), 404, "NAME_UNKNOWN")


async def test_robot_secret_logs_in_with_its_actions_only(client, auth):
    robot = await create(client, {"name": "ci", "actions": ["pull"]})
    tok = await token_ok(client, basic(robot["username"], robot["secret"]), "repository:acme/app:pull,push",
                         "repository:globex/app:pull")
    _, access = await auth.identity_from_token(tok["token"])
    assert access == [{"type": "repository", "name": "acme/app", "actions": ["pull"]}]


async def test_expiry(client, principals):
    robot = await create(client, {"name": "temp", "actions": ["pull"], "expires_in": 3600})
    assert robot["expires_at"] and robot["expired"] is False
    await err(await client.post("/admin/tenants/acme/robots", json={"name": "t2", "actions": ["pull"],
                                                                   "expires_in": -5}, headers=ALICE),
              400, "INVALID_REQUEST")


@pytest.mark.parametrize("body,code", [
    ({"name": "ci", "actions": ["fly"]}, "INVALID_REQUEST"),
    ({"name": "ci", "actions": []}, "INVALID_REQUEST"),
    ({"name": "ci", "actions": "pull"}, "INVALID_REQUEST"),
    ({"name": "CI!", "actions": ["pull"]}, "NAME_INVALID"),
    ({"actions": ["pull"]}, "INVALID_REQUEST"),
    ({"name": "ci", "actions": ["pull"], "repositories": "app"}, "INVALID_REQUEST"),
    ({"name": "ci", "actions": ["pull"], "repositories": ["acme/app"]}, "INVALID_REQUEST"),
    ({"name": "ci", "actions": ["pull"], "repositories": ["../globex/*"]}, "INVALID_REQUEST"),
    ({"name": "ci", "actions": ["pull"], "secret": "mine"}, "INVALID_REQUEST"),
])
async def test_bad_robot_bodies_are_400(client, body, code):
    await err(await client.post("/admin/tenants/acme/robots", json=body, headers=ALICE), 400, code)


async def test_duplicate_robot_is_409(client):
    await create(client, {"name": "ci", "actions": ["pull"]})
    await err(await client.post("/admin/tenants/acme/robots", json={"name": "ci", "actions": ["pull"]},
                                headers=ALICE), 409, "DENIED")


async def test_reader_and_other_owner_cannot_manage_robots(client):
    body = {"name": "ci", "actions": ["pull"]}
    await err(await client.post("/admin/tenants/acme/robots", json=body, headers=BOB), 403, "DENIED")
    await err(await client.post("/admin/tenants/acme/robots", json=body, headers=DAVE), 403, "DENIED")
    assert (await client.post("/admin/tenants/acme/robots", json=body, headers=ADMIN)).status == 201


async def test_revoke_then_login_and_old_tokens_fail(client, auth):
    robot = await create(client, {"name": "ci", "actions": ["pull", "push"]})
    creds = basic(robot["username"], robot["secret"])
    tok = await token_ok(client, creds, "repository:acme/app:pull")
    assert await auth.login(robot["username"], robot["secret"], "t") is not None  # cached
    r = await client.delete("/admin/tenants/acme/robots/ci", headers=ALICE)
    assert r.status == 200 and await r.json() == {"deleted": "acme+ci"}
    r = await token_for(client, creds, "repository:acme/app:pull")
    await err(r, 401, "UNAUTHORIZED")
    r = await client.get("/v2/acme/app/tags/list", headers=bearer(tok["token"]))
    assert r.status == 401 and "invalid_token" in r.headers["WWW-Authenticate"]
    await err(await client.delete("/admin/tenants/acme/robots/ci", headers=ALICE), 404, "NAME_UNKNOWN")


async def test_rotate_old_secret_fails_new_works(client):
    robot = await create(client, {"name": "ci", "actions": ["pull"]})
    old = basic(robot["username"], robot["secret"])
    tok = await token_ok(client, old, "repository:acme/app:pull")
    r = await client.post("/admin/tenants/acme/robots/ci/rotate", headers=ALICE)
    assert r.status == 200
    rotated = await r.json()
    assert rotated["secret"] != robot["secret"] and rotated["username"] == "acme+ci"
    await err(await token_for(client, old, "repository:acme/app:pull"), 401, "UNAUTHORIZED")
    await token_ok(client, basic("acme+ci", rotated["secret"]), "repository:acme/app:pull")
    r = await client.get("/v2/acme/app/tags/list", headers=bearer(tok["token"]))
    assert r.status == 401
    await err(await client.post("/admin/tenants/acme/robots/nope/rotate", headers=ALICE), 404, "NAME_UNKNOWN")
