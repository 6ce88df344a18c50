"""Issue 11 (adversarial review) on the admin API: cross-site request forgery, what service tokens
may do, hostile bodies and numbers."""
from __future__ import annotations

import json

import pytest

from .conftest import ADMIN, ALICE, bearer, err

pytestmark = pytest.mark.usefixtures("world")


# ---- finding 4: cross-site request forgery ---------------------------------------------------


async def test_text_plain_post_from_a_foreign_origin_creates_nothing(client):
    """What a plain HTML form sends, with the browser's stored Basic credentials."""
    body = json.dumps({"username": "mallory", "password": "mallory-password", "admin": True})
    r = await client.post("/admin/users", data=body,
                          headers={**ADMIN, "Content-Type": "text/plain", "Origin": "https://evil.example"})
    await err(r, 403, "DENIED")
    r = await client.get("/admin/users/mallory", headers=ADMIN)
    await err(r, 404, "NAME_UNKNOWN")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None])
async def test_a_write_body_must_be_json(client, content_type):
    body = json.dumps({"username": "mallory", "password": "mallory-password", "admin": True}).encode()
    headers = dict(ADMIN)
    if content_type:
        headers["Content-Type"] = content_type
    r = await client.post("/admin/users", data=body, headers=headers)
    await err(r, 415, "UNSUPPORTED")
    await err(await client.get("/admin/users/mallory", headers=ADMIN), 404, "NAME_UNKNOWN")


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
])
@pytest.mark.parametrize("method,path", [
    ("POST", "/admin/tenants"),
    ("PATCH", "/admin/tenants/acme"),
    ("PUT", "/admin/tenants/acme/members/bob"),
    ("DELETE", "/admin/tenants/acme/members/bob"),
    ("POST", "/admin/tenants/acme/robots/ci/rotate"),
])
async def test_cross_site_writes_are_refused(client, method, path, headers):
    body = {"POST": {"name": "initech"}, "PATCH": {"public": True}, "PUT": {"role": "owner"}}.get(method)
    if path.endswith("/rotate"):
        body = None
    r = await client.request(method, path, json=body, headers={**(ALICE if "acme" in path else ADMIN), **headers})
    await err(r, 403, "DENIED")
    members = await (await client.get("/admin/tenants/acme/members", headers=ADMIN)).json()
    assert {"username": "bob", "role": "reader"} in members["members"]
    tenants = await (await client.get("/admin/tenants/acme", headers=ADMIN)).json()
    assert tenants["public"] is False


async def test_same_origin_and_non_browser_writes_work(client):
    host = f"{client.host}:{client.port}"
    for extra in ({}, {"Origin": f"http://{host}"}, {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}):
        r = await client.patch("/admin/tenants/acme", json={"public": True}, headers={**ALICE, **extra})
        assert r.status == 200, (extra, await r.text())
    # writes without a body need no Content-Type; reads are never refused for their origin
    r = await client.delete("/admin/tenants/acme/members/bob", headers=ALICE)
    assert r.status == 200
    r = await client.get("/admin/tenants", headers={**ADMIN, "Origin": "https://evil.example"})
    assert r.status == 200


async def test_configured_realm_origin_is_our_own(aiohttp_client, config, principals):
    from registry.app import create_app

    config.auth.realm = "https://registry.example.com/auth/token"
    c = await aiohttp_client(create_app(config))
    r = await c.post("/admin/tenants", json={"name": "initech"},
                     headers={**ADMIN, "Origin": "https://registry.example.com"})
    assert r.status == 201, await r.text()
    r = await c.post("/admin/tenants", json={"name": "initech2"},
                     headers={**ADMIN, "Origin": "http://registry.example.com"})  # not the realm's scheme
    await err(r, 403, "DENIED")


# ---- finding 5: service tokens cannot create or change principals or credentials ----------------


async def _service_token(client) -> str:
    r = await client.post("/admin/tokens", json={"subject": "provisioner", "scope": ["registry:admin:*"]}, headers=ADMIN)
    assert r.status == 201
    return (await r.json())["token"]


@pytest.mark.parametrize("method,path,body", [
    ("POST", "/admin/users", {"username": "mallory", "password": "mallory-password", "admin": True}),
    ("POST", "/admin/users", {"username": "mallory", "password": "mallory-password"}),
    ("PUT", "/admin/users/admin/password", {"password": "taken-over-password"}),
    ("DELETE", "/admin/users/bob", None),
    ("PUT", "/admin/tenants/acme/members/bob", {"role": "owner"}),
    ("DELETE", "/admin/tenants/acme/members/bob", None),
    ("POST", "/admin/tokens", {"subject": "x", "scope": ["registry:admin:*"]}),
])
async def test_service_token_cannot_touch_people_or_credentials(client, principals, method, path, body):
    tok = await _service_token(client)
    r = await client.request(method, path, json=body, headers=bearer(tok))
    await err(r, 403, "DENIED")
    assert await principals.get_user("mallory") is None
    assert (await principals.get_user("bob")).roles == {"acme": "reader"}
    assert await principals.verify_user("admin", "taken-over-password") is None


async def test_service_token_may_manage_tenants_robots_and_read(client):
    tok = await _service_token(client)
    assert (await client.post("/admin/tenants", json={"name": "initech"}, headers=bearer(tok))).status == 201
    r = await client.post("/admin/tenants/initech/robots", json={"name": "ci", "actions": ["pull"]}, headers=bearer(tok))
    assert r.status == 201
    r = await client.post("/admin/tenants/initech/pull-secrets", json={"namespace": "shop"}, headers=bearer(tok))
    assert r.status == 201
    for path in ("/admin/tenants", "/admin/users", "/admin/tenants/acme/members", "/admin/audit", "/admin/whoami"):
        assert (await client.get(path, headers=bearer(tok))).status == 200, path


# ---- finding 9: hostile bodies and numbers are 400/413, never 500 ------------------------------


async def test_deeply_nested_body_is_400(client):
    for raw in (b"[" * 50000, b'{"a":' * 10000, b'{"name": ' + b"[" * 65 + b"]" * 65 + b"}"):
        r = await client.post("/admin/tenants", data=raw, headers={**ADMIN, "Content-Type": "application/json"})
        await err(r, 400, "INVALID_REQUEST")
    # nesting inside strings is just text
    r = await client.post("/admin/tenants/acme/robots", headers={**ADMIN, "Content-Type": "application/json"},
                          data=json.dumps({"name": "ci", "actions": ["pull"], "description": "[" * 1000}))
    assert r.status == 201


@pytest.mark.parametrize("expires_in", ["1" + "0" * 399, "10000000000", "1" + "0" * 30, "-1", "0"])
async def test_absurd_expires_in_is_400(client, principals, expires_in):
    raw = '{"name": "ci", "actions": ["pull"], "expires_in": %s}' % expires_in
    r = await client.post("/admin/tenants/acme/robots", data=raw, headers={**ADMIN, "Content-Type": "application/json"})
    await err(r, 400, "INVALID_REQUEST")
    raw = '{"namespace": "shop", "expires_in": %s}' % expires_in
    r = await client.post("/admin/tenants/acme/pull-secrets", data=raw,
                          headers={**ADMIN, "Content-Type": "application/json"})
    await err(r, 400, "INVALID_REQUEST")
    assert await principals.list_robots("acme") == []


async def test_huge_audit_paging_numbers_are_400(client):
    for q in ("before=" + "9" * 30, "limit=" + "9" * 5000, "before=" + "9" * 19):
        await err(await client.get(f"/admin/audit?{q}", headers=ADMIN), 400, "INVALID_REQUEST")


async def test_oversized_body_is_413(client):
    raw = json.dumps({"name": "x", "actions": ["pull"], "description": "d" * (70 * 1024)})
    r = await client.post("/admin/tenants/acme/robots", data=raw, headers={**ADMIN, "Content-Type": "application/json"})
    await err(r, 413, "SIZE_INVALID")


# ---- finding 3: an owner's membership changes reach that tenant only; no username oracle ---------


async def test_owner_removing_a_member_does_not_revoke_their_other_tokens(client):
    """The admin and dave (owner of globex) are also in acme; alice (owner of acme) removes them."""
    from .conftest import DAVE, token_ok

    for who in ("admin", "dave"):
        r = await client.put(f"/admin/tenants/acme/members/{who}", json={"role": "reader"}, headers=ADMIN)
        assert r.status == 200
    admin_tok = await token_ok(client, ADMIN, "registry:admin:*")
    r = await client.get("/auth/token", params={"service": "berth", "scope": "registry:admin:*",
                                                "offline_token": "true"}, headers=DAVE)
    dave = await r.json()
    for who in ("admin", "dave"):
        assert (await client.put(f"/admin/tenants/acme/members/{who}", json={"role": "writer"},
                                 headers=ALICE)).status == 200
        assert (await client.put(f"/admin/tenants/acme/members/{who}", json={"role": "reader"},
                                 headers=ALICE)).status == 200  # a downgrade
        assert (await client.delete(f"/admin/tenants/acme/members/{who}", headers=ALICE)).status == 200
    r = await client.get("/admin/users", headers=bearer(admin_tok["token"]))
    assert r.status == 200
    r = await client.get("/admin/tenants/globex", headers=bearer(dave["token"]))
    assert r.status == 200
    r = await client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": dave["refresh_token"],
                                               "service": "berth", "scope": "repository:globex/app:pull"})
    assert r.status == 200
    # and acme is closed to dave's old token at once
    await err(await client.get("/admin/tenants/acme", headers=bearer(dave["token"])), 403, "DENIED")


@pytest.mark.parametrize("username", ["admin", "dave", "nosuchuser"])
async def test_owner_gets_one_answer_for_unknown_and_other_tenants_users(client, principals, username):
    r = await client.put(f"/admin/tenants/acme/members/{username}", json={"role": "reader"}, headers=ALICE)
    e = await err(r, 404, "NAME_UNKNOWN")
    assert e == {"code": "NAME_UNKNOWN", "detail": {"username": username},
                 "message": f"{username!r} is not a member of a tenant you own; an administrator adds new members"}
    e = await err(await client.delete(f"/admin/tenants/acme/members/{username}", headers=ALICE), 404, "NAME_UNKNOWN")
    assert e["message"] == f"{username!r} is not a member of 'acme'"
    assert username not in await principals.members("acme")


# ---- findings 7 and 8: a tenant deleted and created again is another tenant ---------------------


async def test_service_token_does_not_reach_a_recreated_tenant(client, auth):
    from .conftest import push_small_image

    r = await client.post("/admin/tokens", json={"subject": "deployer", "scope": ["repository:acme/app:pull,push"]},
                          headers=ADMIN)
    tok = (await r.json())["token"]
    await push_small_image(client, "acme/app", bearer(tok))
    assert (await client.get("/v2/acme/app/tags/list", headers=bearer(tok))).status == 200
    assert (await client.delete("/admin/tenants/acme?force=true", headers=ADMIN)).status == 200
    assert (await client.post("/admin/tenants", json={"name": "acme"}, headers=ADMIN)).status == 201
    admin = await (await client.get("/auth/token", params={"service": "berth", "scope": "repository:acme/app:pull,push"},
                                    headers=ADMIN)).json()
    await push_small_image(client, "acme/app", bearer(admin["token"]))
    for r in (await client.get("/v2/acme/app/tags/list", headers=bearer(tok)),
              await client.post("/v2/acme/app/blobs/uploads/", headers=bearer(tok))):
        assert r.status == 401, await r.text()
    # a token naming a tenant that did not exist yet never reaches it either
    r = await client.post("/admin/tokens", json={"subject": "early", "scope": ["repository:later/app:pull"]},
                          headers=ADMIN)
    early = (await r.json())["token"]
    assert (await client.post("/admin/tenants", json={"name": "later"}, headers=ADMIN)).status == 201
    assert (await client.get("/v2/later/app/tags/list", headers=bearer(early))).status == 401


async def test_a_recreated_tenant_does_not_inherit_the_audit_log(client, principals):
    r = await client.post("/admin/tenants/acme/pull-secrets", json={"namespace": "secret-ns", "server": "old.example"},
                          headers={**ALICE, "X-Forwarded-For": "198.51.100.7"})
    assert r.status == 201
    assert (await client.delete("/admin/tenants/acme?force=true", headers=ADMIN)).status == 200
    assert (await client.post("/admin/tenants", json={"name": "acme"}, headers=ADMIN)).status == 201
    await principals.create_user("erin", "erin-password")
    assert (await client.put("/admin/tenants/acme/members/erin", json={"role": "owner"}, headers=ADMIN)).status == 200
    from .conftest import basic

    erin = basic("erin", "erin-password")
    assert (await client.post("/admin/tenants/acme/robots", json={"name": "ci", "actions": ["pull"]},
                              headers=erin)).status == 201
    for query in ("", "?tenant=acme"):
        events = (await (await client.get(f"/admin/audit{query}", headers=erin)).json())["events"]
        assert [e["action"] for e in events] == ["robot.create", "member.set", "tenant.create"], query
        assert "secret-ns" not in json.dumps(events) and "198.51.100.7" not in json.dumps(events)
    # administrators still see the whole history of the name
    events = (await (await client.get("/admin/audit?tenant=acme", headers=ADMIN)).json())["events"]
    assert "pull-secret.create" in [e["action"] for e in events]
    assert "tenant.delete" in [e["action"] for e in events]


# ---- finding 9: manifests nested absurdly deep; file modes --------------------------------------


@pytest.mark.parametrize("body", [b"[" * 100000, b'{"a":' * 100000, b'{"schemaVersion": 2, "x": ' + b"[" * 65 + b"]" * 65 + b"}",
                                  b'{"schemaVersion": 2, "config": {"size": 1' + b"0" * 400 + b"}}"])
async def test_hostile_manifest_json_is_manifest_invalid(client, body):
    r = await client.put("/v2/acme/app/manifests/v1", data=body,
                         headers={**ADMIN, "Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    await err(r, 400, "MANIFEST_INVALID")
    r = await client.get("/v2/acme/app/tags/list", headers=ADMIN)
    await err(r, 404, "NAME_UNKNOWN")


def _modes(root) -> dict[str, int]:
    import os

    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = os.stat(p).st_mode & 0o777
    out["."] = os.stat(root).st_mode & 0o777
    return out


def test_cli_creates_the_data_directory_private_under_umask_022(tmp_path):
    import os
    import subprocess
    import sys

    data = tmp_path / "cli-data"
    res = subprocess.run([sys.executable, "-m", "registry.cli", "tenant", "create", "acme", "--data", str(data)],
                         capture_output=True, text=True, preexec_fn=lambda: os.umask(0o022),
                         env={**os.environ, "BERTH_DATABASE_URL": ""})
    assert res.returncode == 0, res.stderr
    modes = _modes(data)
    assert "berth.db" in modes and "blobs" in modes and "uploads" in modes
    assert {p: oct(m) for p, m in modes.items() if m & 0o077} == {}


async def test_app_makes_an_existing_data_directory_private(aiohttp_client, tmp_path, database_url):
    import os

    from registry.app import create_app
    from registry.config import Config

    data = tmp_path / "old"
    for d in ("", "blobs", "uploads"):
        (data / d).mkdir(mode=0o755, exist_ok=True)
        os.chmod(data / d, 0o755)
    old = os.umask(0o022)
    try:
        cfg = Config(data_dir=data, database_url=database_url)
        cfg.auth.admin_password = "admin-password-for-tests"
        await aiohttp_client(create_app(cfg))
    finally:
        os.umask(old)
    modes = _modes(data)
    assert modes["."] == modes["blobs"] == modes["uploads"] == modes["keys"] == 0o700
    if database_url is None:
        assert modes["berth.db"] == 0o600
