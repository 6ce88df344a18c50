"""The realm: GET and POST /auth/token, grants, refresh tokens, rate limiting, jwks."""
from __future__ import annotations

import dataclasses
import time
import types
from datetime import datetime, timezone

import jwt
import pytest

from tests.conftest import error_code

from .conftest import basic, bearer, get_token


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def access_of(token: str) -> dict[str, list[str]]:
    return {e["name"]: e["actions"] for e in claims(token)["access"]}


async def test_response_shape_and_claims(client, world):
    body = await get_token(client, "repository:acme/app:pull", creds=world["alice"])
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    c = claims(body["token"])
    issued = datetime.strptime(body["issued_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)  # RFC 3339
    assert issued.timestamp() == c["iat"]
    assert {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"} <= set(c)
    assert (c["iss"], c["sub"], c["aud"]) == ("berth", "alice", "berth")
    assert c["exp"] - c["iat"] == 300
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "ES256"
    jwks = await (await client.get("/auth/jwks.json")).json()
    assert header["kid"] in {k["kid"] for k in jwks["keys"]}
    assert "refresh_token" not in body


async def test_anonymous_token_grants_only_public_pulls(client, world):
    body = await get_token(client, "repository:pub/app:pull,push", "repository:acme/app:pull")
    assert claims(body["token"])["sub"] == ""
    assert access_of(body["token"]) == {"pub/app": ["pull"]}


async def test_bad_credentials_401(client, world):
    r = await client.get("/auth/token", params={"service": "berth", "scope": "repository:acme/app:pull"},
                         headers=basic("alice", "wrong"))
    assert r.status == 401
    assert await error_code(r) == "UNAUTHORIZED"
    r = await client.get("/auth/token", params={"service": "berth"}, headers=basic("nobody", "whatever-pw"))
    assert r.status == 401
    r = await client.get("/auth/token", headers={"Authorization": "Basic !!!notbase64"})
    assert r.status == 401


async def test_wrong_service_400(client, world):
    r = await client.get("/auth/token", params={"service": "elsewhere"}, headers=basic(*world["alice"]))
    assert r.status == 400


@pytest.mark.parametrize(
    "who,expected",
    [
        ("bob", ["pull"]),  # reader
        ("carol", ["pull", "push"]),  # writer
        ("alice", ["pull", "push", "delete"]),  # owner
        ("admin", ["pull", "push", "delete"]),
        ("dave", None),  # owner of another tenant
        ("robot", ["pull", "push"]),
    ],
)
async def test_granted_is_intersection_of_asked_and_allowed(client, world, who, expected):
    body = await get_token(client, "repository:acme/app:pull,push,delete", creds=world[who])
    assert access_of(body["token"]).get("acme/app") == expected


async def test_wildcard_action_asks_for_everything_allowed(client, world):
    body = await get_token(client, "repository:acme/app:*", creds=world["carol"])
    assert access_of(body["token"]) == {"acme/app": ["pull", "push"]}


async def test_nothing_outside_a_tenant_even_for_admin(client, world):
    body = await get_token(client, "repository:notenant/x:pull,push", "repository:single:push",
                           "repository:localhost:5000/acme/app:pull", creds=world["admin"])
    assert claims(body["token"])["access"] == []


async def test_robot_of_tenant_a_gets_nothing_in_tenant_b(client, world):
    body = await get_token(client, "repository:globex/app:pull", "repository:acme/app:pull", creds=world["robot"])
    assert access_of(body["token"]) == {"acme/app": ["pull"]}


async def test_robot_repository_globs(client, world):
    body = await get_token(client, "repository:acme/app:pull,push", "repository:acme/team/x:pull",
                           "repository:acme/other:pull", "repository:acme/app2:pull", creds=world["puller"])
    assert access_of(body["token"]) == {"acme/app": ["pull"], "acme/team/x": ["pull"]}


async def test_expired_robot_cannot_log_in(client, world, principals):
    robot, secret = await principals.create_robot("acme", "old", ["pull"], expires_at=time.time() - 1)
    r = await client.get("/auth/token", params={"service": "berth"}, headers=basic(robot.username, secret))
    assert r.status == 401


async def test_admin_scope_only_for_admins_and_owners(client, world):
    for who, granted in (("admin", True), ("alice", True), ("bob", False), ("robot", False)):
        body = await get_token(client, "registry:admin:*", creds=world[who])
        assert bool(claims(body["token"])["access"]) is granted, who


# ---- OAuth2 POST -----------------------------------------------------------------


async def test_post_password_grant_with_offline_access(client, world):
    r = await client.post("/auth/token", data={
        "grant_type": "password", "username": "alice", "password": "alice-password", "client_id": "containerd-client",
        "service": "berth", "scope": "repository:acme/app:pull repository:acme/lib:pull,push", "access_type": "offline",
    })
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["access_token"] == body["token"]
    assert access_of(body["access_token"]) == {"acme/app": ["pull"], "acme/lib": ["pull", "push"]}
    assert "refresh_token" in body
    assert body["issued_at"].endswith("Z")


async def test_post_password_grant_without_offline_has_no_refresh_token(client, world):
    r = await client.post("/auth/token", data={"grant_type": "password", "username": "bob", "password": "bob-password",
                                                "service": "berth", "client_id": "x"})
    assert r.status == 200
    assert "refresh_token" not in await r.json()


async def test_post_bad_password_401_and_unsupported_grant_400(client, world):
    r = await client.post("/auth/token", data={"grant_type": "password", "username": "bob", "password": "nope",
                                                "service": "berth"})
    assert r.status == 401
    assert await error_code(r) == "UNAUTHORIZED"
    r = await client.post("/auth/token", data={"grant_type": "client_credentials", "service": "berth"})
    assert r.status == 400
    r = await client.post("/auth/token", data={"grant_type": "refresh_token", "service": "berth"})
    assert r.status == 400


async def test_post_parameters_in_query_string(client, world):
    """podman puts the parameters in the query string."""
    r = await client.post("/auth/token", params={
        "grant_type": "password", "username": "carol", "password": "carol-password", "service": "berth",
        "scope": "repository:acme/app:pull,push", "client_id": "podman",
    })
    assert r.status == 200, await r.text()
    assert access_of((await r.json())["token"]) == {"acme/app": ["pull", "push"]}


async def test_refresh_token_flow_with_chunked_body(client, world):
    body = await get_token(client, "repository:acme/app:pull", creds=world["carol"], offline_token="true")
    refresh = body["refresh_token"]

    async def chunks():
        form = f"grant_type=refresh_token&refresh_token={refresh}&service=berth&client_id=containers%2Fimage&scope=repository%3Aacme%2Fapp%3Apull%2Cpush"
        for i in range(0, len(form), 100):
            yield form[i:i + 100].encode()

    r = await client.post("/auth/token", data=chunks(),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert r.status == 200, await r.text()
    new = await r.json()
    assert access_of(new["access_token"]) == {"acme/app": ["pull", "push"]}
    assert claims(new["access_token"])["sub"] == "carol"
    # the refresh grant with the parameters in the query string
    r = await client.post("/auth/token", params={"grant_type": "refresh_token", "refresh_token": refresh,
                                                  "service": "berth", "scope": "repository:acme/app:pull"})
    assert r.status == 200


async def test_refresh_token_is_not_an_access_token_and_vice_versa(client, world):
    body = await get_token(client, "repository:acme/app:pull", creds=world["alice"], offline_token="true")
    r = await client.get("/v2/acme/app/tags/list", headers=bearer(body["refresh_token"]))
    assert r.status == 401
    r = await client.get("/v2/", headers=bearer(body["refresh_token"]))
    assert r.status == 401
    r = await client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["token"],
                                                "service": "berth"})
    assert r.status == 401


async def test_refresh_token_dies_with_password_change(client, world, principals, auth):
    body = await get_token(client, creds=world["alice"], offline_token="true")
    await principals.set_password("alice", "a-new-password")
    auth.forget("alice")
    r = await client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
                                                "service": "berth"})
    assert r.status == 401
    r = await client.get("/auth/token", params={"service": "berth"}, headers=basic(*world["alice"]))
    assert r.status == 401


async def test_anonymous_gets_no_refresh_token(client, world):
    body = await get_token(client, "repository:pub/app:pull", offline_token="true")
    assert "refresh_token" not in body


# ---- brute force -----------------------------------------------------------------


async def test_failed_logins_per_username_429_with_retry_after(client, world):
    for _ in range(5):
        r = await client.get("/auth/token", params={"service": "berth"}, headers=basic("bob", "wrong"))
        assert r.status == 401
    r = await client.get("/auth/token", params={"service": "berth"}, headers=basic("bob", "wrong"))
    assert r.status == 429
    assert await error_code(r) == "TOOMANYREQUESTS"
    assert 0 < int(r.headers["Retry-After"]) <= 300
    # even the right password is refused while locked (it was never verified before)
    r = await client.get("/auth/token", params={"service": "berth"}, headers=basic(*world["bob"]))
    assert r.status == 429
    # the POST form and Basic on /v2/ share the counter
    r = await client.post("/auth/token", data={"grant_type": "password", "username": "bob", "password": "x",
                                                "service": "berth"})
    assert r.status == 429
    r = await client.get("/v2/", headers=basic("bob", "wrong"))
    assert r.status == 429
    assert "Retry-After" in r.headers


async def test_failed_logins_per_client_address_429(client, world):
    """The per-address cap (12 here) is global over usernames, well above the per-pair limit (5)."""
    for i in range(12):
        r = await client.get("/auth/token", headers=basic(f"guess{i}", "wrong"))
        assert r.status == 401
    r = await client.get("/auth/token", headers=basic("someone-else", "wrong"))
    assert r.status == 429


async def test_recently_verified_credentials_survive_a_lockout(client, world, auth):
    await get_token(client, creds=world["carol"])  # verified once: cached
    for _ in range(6):
        await client.get("/auth/token", headers=basic("carol", "wrong"))
    body = await get_token(client, "repository:acme/app:pull", creds=world["carol"])
    assert access_of(body["token"]) == {"acme/app": ["pull"]}


async def test_credential_cache_avoids_bcrypt(client, world, principals, monkeypatch):
    await get_token(client, creds=world["robot"])
    calls = []
    real = principals.verify_robot

    async def counting(*a):
        calls.append(a)
        return await real(*a)

    monkeypatch.setattr(principals, "verify_robot", counting)
    for _ in range(5):
        await get_token(client, "repository:acme/app:pull", creds=world["robot"])
    assert calls == []


async def test_a_remembered_grant_follows_the_principal_and_the_tenants(client, world, principals, auth,
                                                                        monkeypatch):
    """The realm remembers what it granted (caller, scopes), never past the principal record and
    tenant list it came from: a change made by another process (no forget()) shows once the one
    it touches is re-read (each every PRINCIPAL_CACHE_TTL, on its own schedule), a change made
    here (forget()) at once."""
    from registry.auth import service as service_mod

    clock = [1000.0]
    monkeypatch.setattr(service_mod, "time", types.SimpleNamespace(monotonic=lambda: clock[0], time=time.time))
    ttl = service_mod.PRINCIPAL_CACHE_TTL

    async def granted(who: str = "bob") -> dict[str, list[str]]:
        return access_of((await get_token(client, "repository:acme/app:pull,push", creds=world[who]))["token"])

    assert await granted() == await granted() == {"acme/app": ["pull"]}
    await principals.set_membership("acme", "bob", "writer")  # here: the admin API calls forget()
    auth.forget("bob")
    assert await granted() == {"acme/app": ["pull", "push"]}
    # elsewhere (no version bump, no forget()): bob's record is re-read while the tenant list is not
    await principals.set_membership("acme", "bob", "reader")
    clock[0] += ttl * 0.6
    await auth.tenants("no-such-tenant")  # a miss re-reads the tenant list now, bob's record stays
    assert await granted() == {"acme/app": ["pull", "push"]}  # bob's record: still the one read before
    clock[0] += ttl * 0.6
    assert await granted() == {"acme/app": ["pull"]}  # bob's record re-read, the tenant list not
    # elsewhere: the tenant list is re-read while bob's record is not
    await principals.delete_tenant("acme")
    clock[0] += ttl * 0.6
    assert await granted() == {}


async def test_jwks_publishes_public_keys_only(client, world):
    jwks = await (await client.get("/auth/jwks.json")).json()
    (key,) = jwks["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256"
    assert "d" not in key


async def test_post_password_grant_with_basic_header(client, world):
    r = await client.post("/auth/token", data={"grant_type": "password", "service": "berth",
                                                "scope": "repository:acme/app:pull"}, headers=basic(*world["bob"]))
    assert r.status == 200
    assert access_of((await r.json())["token"]) == {"acme/app": ["pull"]}


async def test_realm_jwks_and_healthz_need_no_token(client, world):
    for path in ("/auth/token", "/auth/jwks.json", "/healthz"):
        assert (await client.get(path)).status == 200, path


async def test_a_token_is_not_remembered_past_the_record_it_was_checked_against(client, world, auth):
    """identity_from_token remembers a token's identity until its principal record is due for a
    re-read. If another request re-reads the record while this one awaits the tenant list, the
    identity made from the older record must not be kept until the newer record's expiry (the
    revocation bound would stretch to twice PRINCIPAL_CACHE_TTL)."""
    token = (await get_token(client, "repository:acme/app:pull", creds=world["alice"]))["token"]
    auth._granted.clear()
    auth._records.clear()  # alice's record is read again for this token
    real_tenants = auth.tenants

    async def tenants_while_alice_is_reread(*names):
        expiry, rec = auth._records["alice"]  # another request re-reads alice meanwhile
        auth._records["alice"] = (expiry + 1.0, dataclasses.replace(rec))
        auth._identity_of(auth._records["alice"][1])
        return await real_tenants(*names)

    auth.tenants = tenants_while_alice_is_reread
    try:
        ident, access = await auth.identity_from_token(token)
    finally:
        auth.tenants = real_tenants
    assert ident.username == "alice" and access
    assert token not in auth._granted  # made from the older record: not remembered
    ident2, _ = await auth.identity_from_token(token)  # checked again, now against the current record
    assert ident2 is auth._identities["alice"][1] and token in auth._granted
