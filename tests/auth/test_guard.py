"""The /v2/ guard: challenges, hostile tokens, revocation, tenants, catalog, mounts."""
from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from registry.auth import service as service_mod
from tests.conftest import error_code, push_blob, push_image

from .conftest import As, basic, bearer, challenge_of, get_token


async def token_for(client, who, *scopes, world=None) -> str:
    return (await get_token(client, *scopes, creds=world[who] if who else None))["token"]


# ---- challenges ------------------------------------------------------------------


async def test_base_without_token_challenges(client, world):
    r = await client.get("/v2/")
    assert r.status == 401
    assert await error_code(r) == "UNAUTHORIZED"
    ch = await challenge_of(r)
    assert ch["realm"] == f"http://{r.url.host}:{r.url.port}/auth/token"
    assert ch["service"] == "berth"
    assert "scope" not in ch and "error" not in ch


@pytest.mark.parametrize(
    "method,path,scope",
    [
        ("GET", "/v2/acme/app/manifests/latest", "repository:acme/app:pull"),
        ("HEAD", "/v2/acme/app/blobs/sha256:" + "0" * 64, "repository:acme/app:pull"),
        ("GET", "/v2/acme/app/tags/list", "repository:acme/app:pull"),
        ("POST", "/v2/acme/app/blobs/uploads/", "repository:acme/app:pull,push"),
        ("PUT", "/v2/acme/app/manifests/latest", "repository:acme/app:pull,push"),
        ("DELETE", "/v2/acme/app/manifests/sha256:" + "0" * 64, "repository:acme/app:delete"),
        ("GET", "/v2/_catalog", "registry:catalog:*"),
    ],
)
async def test_challenge_names_the_needed_scope(client, world, method, path, scope):
    r = await client.request(method, path)
    assert r.status == 401
    assert (await challenge_of(r))["scope"] == scope


async def test_configured_realm_is_used(aiohttp_client, config):
    from registry.app import create_app

    config.auth.realm = "https://registry.example.com/auth/token"
    config.auth.service = "registry.example.com"
    client = await aiohttp_client(create_app(config))
    ch = await challenge_of(await client.get("/v2/"))
    assert ch == {"realm": "https://registry.example.com/auth/token", "service": "registry.example.com"}


async def test_valid_token_without_the_action_is_insufficient_scope(client, world):
    tok = await token_for(client, "bob", "repository:acme/app:pull,push", world=world)
    r = await client.get("/v2/acme/app/tags/list", headers=bearer(tok))
    assert r.status == 404  # pull granted: the repository just does not exist
    r = await client.post("/v2/acme/app/blobs/uploads/", headers=bearer(tok))
    assert r.status == 401
    ch = await challenge_of(r)
    assert ch["error"] == "insufficient_scope" and ch["scope"] == "repository:acme/app:pull,push"
    # a token for another repository
    r = await client.get("/v2/acme/other/tags/list", headers=bearer(tok))
    assert (await challenge_of(r))["error"] == "insufficient_scope"


async def test_any_valid_token_opens_the_base(client, world):
    anon = await token_for(client, None, world=world)
    assert (await client.get("/v2/", headers=bearer(anon))).status == 200


async def test_full_push_and_pull_with_tokens(client, world):
    tok = await token_for(client, "carol", "repository:acme/app:pull,push", world=world)
    digest, body, _, layers = await push_image(As(client, bearer(tok)), "acme/app", "v1")
    r = await client.get("/v2/acme/app/manifests/v1", headers=bearer(tok))
    assert r.status == 200 and await r.read() == body
    reader = await token_for(client, "bob", "repository:acme/app:pull", world=world)
    r = await client.get(f"/v2/acme/app/blobs/{layers[0]}", headers=bearer(reader))
    assert r.status == 200
    r = await client.delete(f"/v2/acme/app/manifests/{digest}", headers=bearer(reader))
    assert r.status == 401


async def test_http_basic_directly_on_v2(client, world):
    r = await client.get("/v2/acme/app/tags/list", headers=basic(*world["bob"]))
    assert r.status == 404
    r = await client.get("/v2/globex/app/tags/list", headers=basic(*world["bob"]))
    assert r.status == 401
    assert (await challenge_of(r))["error"] == "insufficient_scope"
    r = await client.get("/v2/", headers=basic("bob", "wrong"))
    assert r.status == 401
    assert "error" not in await challenge_of(r)


# ---- hostile tokens --------------------------------------------------------------


def _claims(auth, **over) -> dict:
    now = int(time.time())
    c = {"iss": "berth", "sub": "admin", "aud": "berth", "exp": now + 300, "nbf": now, "iat": now, "jti": "x",
         "access": [{"type": "repository", "name": "acme/app", "actions": ["pull", "push"]}],
         "berth": {"kind": "admin", "ver": 1, "uid": "", "use": "access"}}
    c.update(over)
    return c


@pytest.fixture
async def admin_token(client, world):
    return await token_for(client, "admin", "repository:acme/app:pull,push", world=world)


async def _assert_invalid(client, token):
    r = await client.get("/v2/acme/app/tags/list", headers=bearer(token))
    assert r.status == 401, await r.text()
    assert (await challenge_of(r))["error"] == "invalid_token"
    r = await client.get("/v2/", headers=bearer(token))
    assert r.status == 401


def _resign(auth, token, **over) -> str:
    c = jwt.decode(token, options={"verify_signature": False})
    if "berth" in over:  # change only the named members of Berth's own claim
        over = {**over, "berth": {**c["berth"], **over["berth"]}}
    c.update(over)
    return jwt.encode(c, auth.keys.signing_key, algorithm="ES256", headers={"kid": auth.keys.signing.kid})


async def test_the_genuine_token_works(client, admin_token):
    assert (await client.get("/v2/acme/app/tags/list", headers=bearer(admin_token))).status == 404


async def test_tampered_signature(client, admin_token):
    head, payload, sig = admin_token.split(".")
    sig = ("A" if sig[0] != "A" else "B") + sig[1:]
    await _assert_invalid(client, f"{head}.{payload}.{sig}")


async def test_tampered_payload(client, admin_token, auth):
    import base64
    import json

    head, payload, sig = admin_token.split(".")
    c = json.loads(base64.urlsafe_b64decode(payload + "=="))
    c["access"][0]["name"] = "globex/app"
    forged = base64.urlsafe_b64encode(json.dumps(c).encode()).rstrip(b"=").decode()
    await _assert_invalid(client, f"{head}.{forged}.{sig}")


async def test_alg_none(client, admin_token, auth):
    c = jwt.decode(admin_token, options={"verify_signature": False})
    kid = auth.keys.signing.kid
    token = jwt.encode(c, None, algorithm="none", headers={"kid": kid})
    await _assert_invalid(client, token)
    await _assert_invalid(client, token.rstrip(".") + ".")


async def test_hs256_with_the_public_key_as_secret(client, admin_token, auth):
    import base64
    import hashlib
    import hmac
    import json

    pem = auth.keys.signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    c = jwt.decode(admin_token, options={"verify_signature": False})
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": auth.keys.signing.kid}).encode())
    body = b64(json.dumps(c).encode())
    sig = b64(hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
    await _assert_invalid(client, f"{head}.{body}.{sig}")


async def test_signed_by_another_key_with_our_kid(client, admin_token, auth):
    c = jwt.decode(admin_token, options={"verify_signature": False})
    other = ec.generate_private_key(ec.SECP256R1())
    await _assert_invalid(client, jwt.encode(c, other, algorithm="ES256", headers={"kid": auth.keys.signing.kid}))
    await _assert_invalid(client, jwt.encode(c, other, algorithm="ES256"))


@pytest.mark.parametrize(
    "override",
    [
        {"aud": "another-registry"},
        {"iss": "someone-else"},
        {"exp": int(time.time()) - 120},  # beyond the 60 s leeway
        {"nbf": int(time.time()) + 600},
        {"berth": {"ver": 999}},  # stale version
        {"berth": {"uid": "u1:0.0"}},  # another principal of the same name
        {"berth": {"use": "refresh"}},
        {"berth": {"kind": "robot"}},
        {"sub": "ghost"},
    ],
    ids=["aud", "iss", "expired", "not-yet-valid", "version", "uid", "refresh-use", "kind", "unknown-sub"],
)
async def test_resigned_with_bad_claims(client, admin_token, auth, override):
    if "exp" in override or "nbf" in override:  # computed at collection time: recompute now
        key = next(iter(override))
        override = {key: int(time.time()) + (-120 if key == "exp" else 600)}
    await _assert_invalid(client, _resign(auth, admin_token, **override))


async def test_clock_skew_within_leeway_is_accepted(client, admin_token, auth):
    now = int(time.time())
    token = _resign(auth, admin_token, exp=now - 30, nbf=now + 30)
    assert (await client.get("/v2/acme/app/tags/list", headers=bearer(token))).status == 404


async def test_garbage_tokens(client, world):
    for junk in ("x", "a.b.c", "eyJhbGciOiJFUzI1NiJ9.e30.", ""):
        r = await client.get("/v2/", headers={"Authorization": f"Bearer {junk}"})
        assert r.status == 401


# ---- tenants ---------------------------------------------------------------------


async def test_robot_of_tenant_a_gets_401_on_tenant_b(client, world):
    admin = As(client, basic(*world["admin"]))
    await push_image(admin, "globex/app", "v1")
    tok = await token_for(client, "robot", "repository:globex/app:pull", world=world)
    for path in ("/v2/globex/app/manifests/v1", "/v2/globex/app/tags/list"):
        r = await client.get(path, headers=bearer(tok))
        assert r.status == 401
        assert (await challenge_of(r))["error"] == "insufficient_scope"
    r = await client.get("/v2/globex/app/manifests/v1", headers=basic(*world["robot"]))
    assert r.status == 401


async def test_push_outside_any_tenant_refused_even_for_admin(client, world):
    tok = await token_for(client, "admin", "repository:notenant/x:pull,push", world=world)
    r = await client.post("/v2/notenant/x/blobs/uploads/", headers=bearer(tok))
    assert r.status == 401
    r = await client.post("/v2/notenant/x/blobs/uploads/", headers=basic(*world["admin"]))
    assert r.status == 401
    r = await client.post("/v2/toplevel/blobs/uploads/", headers=basic(*world["admin"]))
    assert r.status == 401


async def test_public_tenant_anonymous_pull_only(client, world):
    digest, body, _, _ = await push_image(As(client, basic(*world["admin"])), "pub/app", "v1")
    anon = await token_for(client, None, "repository:pub/app:pull,push", world=world)
    r = await client.get("/v2/pub/app/manifests/v1", headers=bearer(anon))
    assert r.status == 200 and await r.read() == body
    r = await client.post("/v2/pub/app/blobs/uploads/", headers=bearer(anon))
    assert r.status == 401
    # members of other tenants may pull a public tenant, not push to it
    tok = await token_for(client, "carol", "repository:pub/app:pull,push", world=world)
    assert (await client.get("/v2/pub/app/manifests/v1", headers=bearer(tok))).status == 200
    assert (await client.post("/v2/pub/app/blobs/uploads/", headers=bearer(tok))).status == 401
    # a private tenant is closed to anonymous callers
    anon = await token_for(client, None, "repository:acme/app:pull", world=world)
    assert (await client.get("/v2/acme/app/tags/list", headers=bearer(anon))).status == 401


async def test_tenant_made_private_closes_anonymous_tokens(client, world, principals, auth):
    await push_image(As(client, basic(*world["admin"])), "pub/app", "v1")
    anon = await token_for(client, None, "repository:pub/app:pull", world=world)
    await principals.set_tenant_public("pub", False)
    auth.forget("pub")
    assert (await client.get("/v2/pub/app/manifests/v1", headers=bearer(anon))).status == 401


# ---- revocation --------------------------------------------------------------------


async def test_deleted_robot_old_token_and_new_requests_fail(client, world, principals, auth):
    tok = await token_for(client, "robot", "repository:acme/app:pull", world=world)
    assert (await client.get("/v2/acme/app/tags/list", headers=bearer(tok))).status == 404
    await principals.delete_robot("acme", "ci")
    auth.forget("acme+ci")
    r = await client.get("/v2/acme/app/tags/list", headers=bearer(tok))
    assert r.status == 401 and (await challenge_of(r))["error"] == "invalid_token"
    r = await client.get("/auth/token", params={"service": "berth"}, headers=basic(*world["robot"]))
    assert r.status == 401


async def test_revocation_without_forget_within_the_cache_ttl(client, world, principals, monkeypatch):
    """Another process (the CLI) revoked: the brief principal cache expires and the DB says no."""
    monkeypatch.setattr(service_mod, "PRINCIPAL_CACHE_TTL", 0)
    tok = await token_for(client, "robot", "repository:acme/app:pull", world=world)
    await principals.delete_robot("acme", "ci")
    assert (await client.get("/v2/acme/app/tags/list", headers=bearer(tok))).status == 401
    r = await client.get("/auth/token", headers=basic(*world["robot"]))
    assert r.status == 401  # the cached credential is re-checked against the principal


async def test_recreated_robot_does_not_revive_old_tokens(client, world, principals, auth):
    tok = await token_for(client, "robot", "repository:acme/app:pull", world=world)
    await principals.delete_robot("acme", "ci")
    await principals.create_robot("acme", "ci", ["pull", "push"])
    auth.forget("acme+ci")
    assert (await client.get("/v2/acme/app/tags/list", headers=bearer(tok))).status == 401


async def test_rotated_robot_old_secret_and_old_token_fail(client, world, principals, auth):
    tok = await token_for(client, "robot", "repository:acme/app:pull", world=world)
    _, new_secret = await principals.rotate_robot("acme", "ci")
    auth.forget("acme+ci")
    assert (await client.get("/v2/acme/app/tags/list", headers=bearer(tok))).status == 401
    r = await client.get("/auth/token", headers=basic(*world["robot"]))
    assert r.status == 401
    tok = (await get_token(client, "repository:acme/app:pull", creds=("acme+ci", new_secret)))["token"]
    assert (await client.get("/v2/acme/app/tags/list", headers=bearer(tok))).status == 404


async def test_removed_membership_kills_old_token(client, world, principals, auth):
    tok = await token_for(client, "carol", "repository:acme/app:pull,push", world=world)
    assert (await client.post("/v2/acme/app/blobs/uploads/", headers=bearer(tok))).status == 202
    await principals.remove_membership("acme", "carol")
    auth.forget("carol")
    r = await client.post("/v2/acme/app/blobs/uploads/", headers=bearer(tok))
    assert r.status == 401 and (await challenge_of(r))["error"] == "insufficient_scope"
    fresh = await token_for(client, "carol", "repository:acme/app:pull,push", world=world)
    assert (await client.post("/v2/acme/app/blobs/uploads/", headers=bearer(fresh))).status == 401


async def test_downgraded_role_takes_push_from_old_token(client, world, principals, auth):
    tok = await token_for(client, "carol", "repository:acme/app:pull,push", world=world)
    await principals.set_membership("acme", "carol", "reader")
    auth.forget("carol")
    r = await client.post("/v2/acme/app/blobs/uploads/", headers=bearer(tok))
    assert r.status == 401 and (await challenge_of(r))["error"] == "insufficient_scope"
    assert (await client.get("/v2/acme/app/tags/list", headers=bearer(tok))).status == 404  # pull remains


async def test_recreated_user_does_not_revive_old_tokens(client, world, principals, auth):
    tok = await token_for(client, "dave", "repository:globex/app:pull", world=world)
    await principals.delete_user("dave")
    await principals.create_user("dave", "another-password")
    await principals.set_membership("globex", "dave", "owner")
    auth.forget("dave")
    assert (await client.get("/v2/globex/app/tags/list", headers=bearer(tok))).status == 401


async def test_deleted_tenant_kills_its_robots(client, world, principals, auth):
    tok = await token_for(client, "robot", "repository:acme/app:pull", world=world)
    await principals.delete_tenant("acme")
    auth.forget("acme")
    assert (await client.get("/v2/acme/app/tags/list", headers=bearer(tok))).status == 401


async def test_service_token_from_issue_token(client, world, auth):
    access = [{"type": "repository", "name": "acme/app", "actions": ["pull"]},
              {"type": "repository", "name": "notenant/app", "actions": ["pull", "push"]}]
    body = auth.issue_token(await auth.service_identity("ci-system", access), access, ttl=60)
    assert body["expires_in"] == 60
    assert (await client.get("/v2/acme/app/tags/list", headers=bearer(body["token"]))).status == 404
    assert (await client.post("/v2/acme/app/blobs/uploads/", headers=bearer(body["token"]))).status == 401
    assert (await client.post("/v2/notenant/app/blobs/uploads/", headers=bearer(body["token"]))).status == 401


# ---- catalog and cross-repository mounts --------------------------------------------


async def test_catalog_lists_only_pullable_repositories(client, world, principals):
    admin = As(client, basic(*world["admin"]))
    for repo in ("acme/app", "acme/team/x", "acme/other", "globex/app", "pub/app"):
        await push_blob(admin, repo, repo.encode())
    expected = {
        "admin": ["acme/app", "acme/other", "acme/team/x", "globex/app", "pub/app"],
        "bob": ["acme/app", "acme/other", "acme/team/x", "pub/app"],
        "dave": ["globex/app", "pub/app"],
        "puller": ["acme/app", "acme/team/x", "pub/app"],
        None: ["pub/app"],
    }
    for who, repos in expected.items():
        tok = await token_for(client, who, "registry:catalog:*", world=world)
        r = await client.get("/v2/_catalog", headers=bearer(tok))
        assert r.status == 200, (who, await r.text())
        assert (await r.json())["repositories"] == repos, who
    # without the catalog scope in the token
    tok = await token_for(client, "bob", "repository:acme/app:pull", world=world)
    r = await client.get("/v2/_catalog", headers=bearer(tok))
    assert r.status == 401 and (await challenge_of(r))["error"] == "insufficient_scope"
    # Basic on /v2/ lists the same as a token
    r = await client.get("/v2/_catalog", headers=basic(*world["dave"]))
    assert (await r.json())["repositories"] == ["globex/app", "pub/app"]


async def test_cross_tenant_mount_falls_back_to_an_upload(client, world):
    secret = b"globex's secret layer"
    digest = await push_blob(As(client, basic(*world["dave"])), "globex/app", secret)
    tok = await token_for(client, "alice", "repository:acme/app:pull,push", "repository:globex/app:pull", world=world)
    r = await client.post(f"/v2/acme/app/blobs/uploads/?mount={digest}&from=globex/app", headers=bearer(tok))
    assert r.status == 202  # a plain upload session, not 201
    r = await client.head(f"/v2/acme/app/blobs/{digest}", headers=bearer(tok))
    assert r.status == 404


async def test_same_tenant_mount_with_pull_on_the_source(client, world):
    digest = await push_blob(As(client, basic(*world["alice"])), "acme/base", b"shared layer")
    tok = await token_for(client, "carol", "repository:acme/app:pull,push", "repository:acme/base:pull", world=world)
    r = await client.post(f"/v2/acme/app/blobs/uploads/?mount={digest}&from=acme/base", headers=bearer(tok))
    assert r.status == 201
    # without pull on the source in the token: no mount
    tok = await token_for(client, "carol", "repository:acme/app2:pull,push", world=world)
    r = await client.post(f"/v2/acme/app2/blobs/uploads/?mount={digest}&from=acme/base", headers=bearer(tok))
    assert r.status == 202


async def test_robot_token_dies_with_the_robot_expiry(client, world, principals):
    import asyncio

    robot, secret = await principals.create_robot("acme", "short", ["pull"], expires_at=time.time() + 1.0)
    tok = (await get_token(client, "repository:acme/app:pull", creds=(robot.username, secret)))["token"]
    assert (await client.get("/v2/acme/app/tags/list", headers=bearer(tok))).status == 404
    await asyncio.sleep(1.1)
    r = await client.get("/v2/acme/app/tags/list", headers=bearer(tok))
    assert r.status == 401 and (await challenge_of(r))["error"] == "invalid_token"
    r = await client.get("/auth/token", headers=basic(robot.username, secret))
    assert r.status == 401  # the credential cache does not outlive the expiry either


async def test_cached_token_still_expires(client, world, monkeypatch):
    """A token's verified claims are remembered, but exp is checked again on every use."""
    from registry.auth import service as service_module

    tok = (await get_token(client, "repository:acme/app:pull", creds=world["alice"]))["token"]
    assert (await client.get("/v2/acme/app/tags/list", headers=bearer(tok))).status == 404  # verified + cached
    assert (await client.get("/v2/acme/app/tags/list", headers=bearer(tok))).status == 404  # from the cache
    later = time.time() + 3600  # far past exp + leeway
    monkeypatch.setattr(service_module.time, "time", lambda: later)
    r = await client.get("/v2/acme/app/tags/list", headers=bearer(tok))
    assert r.status == 401 and (await challenge_of(r))["error"] == "invalid_token"


async def test_cached_token_does_not_cover_a_tampered_copy(client, world):
    tok = (await get_token(client, "repository:acme/app:pull", creds=world["alice"]))["token"]
    assert (await client.get("/v2/acme/app/tags/list", headers=bearer(tok))).status == 404
    head, payload, sig = tok.split(".")
    forged = f"{head}.{payload}.{sig[:-4]}{'AAAA' if sig[-4:] != 'AAAA' else 'BBBB'}"
    r = await client.get("/v2/acme/app/tags/list", headers=bearer(forged))
    assert r.status == 401 and (await challenge_of(r))["error"] == "invalid_token"


# ---- the action comes from the matched route, never from the path text (issue 11, finding 6) ----


@pytest.mark.parametrize("name", ["acme/blobs/uploads/x", "acme/x/blobs/uploads", "acme/manifests/blobs/uploads/y"])
async def test_push_only_principal_cannot_delete_in_repositories_named_like_routes(client, world, name):
    writer = As(client, basic(*world["carol"]))  # pull, push: never delete
    digest, _, _, layers = await push_image(writer, name, "v1")
    for path in (f"/v2/{name}/manifests/{digest}", f"/v2/{name}/blobs/{layers[0]}"):
        r = await writer.delete(path)
        assert r.status == 401, await r.text()
        assert await error_code(r) == "UNAUTHORIZED"
        ch = await challenge_of(r)
        assert ch["error"] == "insufficient_scope" and ch["scope"] == f"repository:{name}:delete"
    tok = await token_for(client, "carol", f"repository:{name}:pull,push,delete", world=world)
    r = await client.delete(f"/v2/{name}/manifests/{digest}", headers=bearer(tok))
    assert r.status == 401 and (await challenge_of(r))["error"] == "insufficient_scope"
    r = await writer.get(f"/v2/{name}/tags/list")
    assert r.status == 200 and (await r.json())["tags"] == ["v1"]
    # cancelling an upload is part of pushing; the owner may delete
    r = await writer.post(f"/v2/{name}/blobs/uploads/")
    assert r.status == 202
    assert (await writer.delete(r.headers["Location"])).status == 204
    owner = As(client, basic(*world["alice"]))
    assert (await owner.delete(f"/v2/{name}/manifests/{digest}")).status == 202
