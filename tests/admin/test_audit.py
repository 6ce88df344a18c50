"""Every admin action lands in the audit log; GET /admin/audit (owners: their tenants only)."""
from __future__ import annotations

import pytest

from .conftest import ADMIN, ALICE, BOB, DAVE, err

pytestmark = pytest.mark.usefixtures("world")


async def events(client, headers=ADMIN, query=""):
    r = await client.get(f"/admin/audit{query}", headers=headers)
    assert r.status == 200, await r.text()
    return (await r.json())["events"]


async def test_actions_are_audited_with_who_what_when_where(client):
    await client.post("/admin/tenants", json={"name": "initech"}, headers=ADMIN)
    await client.post("/admin/users", json={"username": "erin", "password": "erin-password"}, headers=ADMIN)
    await client.put("/admin/tenants/acme/members/erin", json={"role": "reader"}, headers=ADMIN)
    await client.put("/admin/tenants/acme/members/erin", json={"role": "writer"}, headers=ALICE)
    await client.post("/admin/tenants/acme/robots", json={"name": "ci", "actions": ["pull"]}, headers=ALICE)
    await client.post("/admin/tenants/acme/robots/ci/rotate", headers=ALICE)
    await client.post("/admin/tenants/acme/pull-secrets", json={"namespace": "shop", "robot": "k"}, headers=ALICE)
    await client.delete("/admin/tenants/acme/robots/ci", headers=ALICE)
    await client.delete("/admin/tenants/acme/members/erin", headers=ALICE)
    await client.patch("/admin/tenants/acme", json={"public": True}, headers=ALICE)
    await client.put("/admin/users/erin/password", json={"password": "erin-password-2"}, headers=ADMIN)
    await client.post("/admin/tokens", json={"subject": "ci", "scope": ["repository:acme/a:pull"]}, headers=ADMIN)
    await client.delete("/admin/users/erin", headers=ADMIN)
    await client.delete("/admin/tenants/initech", headers=ADMIN)
    evs = await events(client)
    assert [e["action"] for e in reversed(evs)] == [
        "tenant.create", "user.create", "member.set", "member.set", "robot.create", "robot.rotate", "robot.create",
        "pull-secret.create", "robot.delete", "member.remove", "tenant.update", "user.password", "token.issue",
        "user.delete", "tenant.delete",
    ]
    for e in evs:
        assert e["remote"] == "127.0.0.1" and e["at"].endswith("Z") and isinstance(e["id"], int)
    by_action = {e["action"]: e for e in reversed(evs)}  # the newest of each action
    assert by_action["member.set"]["actor"] == "alice" and by_action["member.set"]["tenant"] == "acme"
    assert by_action["member.set"]["target"] == "erin" and by_action["member.set"]["detail"] == {"role": "writer", "previous": "reader"}
    assert by_action["robot.rotate"]["target"] == "acme+ci"
    assert by_action["token.issue"]["actor"] == "admin"
    assert "secret" not in str(evs).lower().replace("pull-secret", "")


async def test_secrets_are_never_audited(client):
    r = await client.post("/admin/tenants/acme/robots", json={"name": "ci", "actions": ["pull"]}, headers=ALICE)
    secret = (await r.json())["secret"]
    await client.post("/admin/users", json={"username": "erin", "password": "erin-password"}, headers=ADMIN)
    r = await client.get("/admin/audit", headers=ADMIN)
    text = await r.text()
    assert secret not in text and "erin-password" not in text


async def test_owner_sees_only_own_tenant(client):
    await client.post("/admin/tenants/acme/robots", json={"name": "a", "actions": ["pull"]}, headers=ALICE)
    await client.post("/admin/tenants/globex/robots", json={"name": "g", "actions": ["pull"]}, headers=DAVE)
    await client.post("/admin/tenants", json={"name": "initech"}, headers=ADMIN)
    assert [e["target"] for e in await events(client, ALICE)] == ["acme+a"]
    assert [e["target"] for e in await events(client, DAVE)] == ["globex+g"]
    assert [e["target"] for e in await events(client, ALICE, "?tenant=acme")] == ["acme+a"]
    await err(await client.get("/admin/audit?tenant=globex", headers=ALICE), 403, "DENIED")
    await err(await client.get("/admin/audit", headers=BOB), 403, "DENIED")
    assert len(await events(client, ADMIN)) == 3
    assert [e["target"] for e in await events(client, ADMIN, "?tenant=globex")] == ["globex+g"]


async def test_paging(client):
    for i in range(5):
        await client.post("/admin/tenants/acme/robots", json={"name": f"r{i}", "actions": ["pull"]}, headers=ALICE)
    r = await client.get("/admin/audit?limit=2", headers=ALICE)
    page = await r.json()
    assert [e["target"] for e in page["events"]] == ["acme+r4", "acme+r3"]
    r = await client.get(page["next"], headers=ALICE)
    assert [e["target"] for e in (await r.json())["events"]] == ["acme+r2", "acme+r1"]
    before = page["events"][-1]["id"]
    assert [e["target"] for e in await events(client, ALICE, f"?before={before}&limit=10")] == [
        "acme+r2", "acme+r1", "acme+r0"]


@pytest.mark.parametrize("query", ["?limit=0", "?limit=x", "?before=-1", "?before=abc"])
async def test_bad_paging_is_400(client, query):
    await err(await client.get(f"/admin/audit{query}", headers=ADMIN), 400, "INVALID_REQUEST")
