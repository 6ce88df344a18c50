"""Signing keys: generation (0600), persistence, RS256, rotation, RFC 7638 kid; bootstrap admin."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import stat

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from registry.app import create_app
from registry.auth.keys import KeySet, thumbprint
from registry.auth.service import AuthService, Identity
from registry.config import Config
from registry.services import SERVICES

from .conftest import basic, bearer, get_token


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_rfc7638_thumbprint_example():
    """The example of RFC 7638 section 3.1."""
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_ec_kid_is_the_thumbprint_of_the_public_jwk(tmp_path):
    keys = KeySet.load(tmp_path / "keys")
    nums = keys.signing_key.public_key().public_numbers()
    members = {"crv": "P-256", "kty": "EC", "x": _b64u(nums.x.to_bytes(32, "big")), "y": _b64u(nums.y.to_bytes(32, "big"))}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    assert keys.signing.kid == _b64u(hashlib.sha256(canonical).digest())


def test_generated_key_is_private_and_reused(tmp_path):
    first = KeySet.load(tmp_path / "keys")
    (path,) = (tmp_path / "keys").iterdir()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o700
    assert KeySet.load(tmp_path / "keys").signing.kid == first.signing.kid


def test_rs256_selectable(tmp_path):
    keys = KeySet.load(tmp_path / "keys", "RS256")
    assert keys.alg == "RS256" and isinstance(keys.signing_key, rsa.RSAPrivateKey)
    assert keys.jwks()["keys"][0]["kty"] == "RSA"


def _write_key(path, key):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return str(path)


async def test_rotation_old_tokens_stay_valid_with_verification_keys(aiohttp_client, tmp_path, fast_bcrypt):
    old_pem = _write_key(tmp_path / "old.pem", ec.generate_private_key(ec.SECP256R1()))
    new_pem = _write_key(tmp_path / "new.pem", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    public_old = tmp_path / "old.pub"
    public_old.write_bytes(
        serialization.load_pem_private_key(open(old_pem, "rb").read(), None).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    cfg = Config(data_dir=tmp_path / "data")
    cfg.auth.admin_password = "admin-password-for-tests"
    cfg.auth.signing_key = old_pem
    client = await aiohttp_client(create_app(cfg))
    await client.app[SERVICES].auth.principals.create_tenant("acme")
    old_token = (await get_token(client, "repository:acme/app:pull", creds=("admin", "admin-password-for-tests")))["token"]
    await client.close()

    cfg.auth.signing_key = new_pem
    cfg.auth.verification_keys = [str(public_old)]
    client = await aiohttp_client(create_app(cfg))
    new_token = (await get_token(client, "repository:acme/app:pull", creds=("admin", "admin-password-for-tests")))["token"]
    assert jwt.get_unverified_header(new_token)["alg"] == "RS256"
    for tok in (old_token, new_token):
        assert (await client.get("/v2/acme/app/tags/list", headers=bearer(tok))).status == 404
    jwks = await (await client.get("/auth/jwks.json")).json()
    assert {k["kty"] for k in jwks["keys"]} == {"EC", "RSA"}
    await client.close()

    cfg.auth.verification_keys = []  # rotation finished: the old key is no longer accepted
    client = await aiohttp_client(create_app(cfg))
    assert (await client.get("/v2/acme/app/tags/list", headers=bearer(old_token))).status == 401


async def test_bootstrap_admin_generated_password_printed_once(aiohttp_client, tmp_path, capsys, fast_bcrypt):
    cfg = Config(data_dir=tmp_path / "data")
    client = await aiohttp_client(create_app(cfg))
    out = capsys.readouterr().out
    assert "berth: created admin user 'admin' with password " in out
    password = out.split("with password ", 1)[1].split()[0]
    assert len(password) >= 16
    r = await client.get("/auth/token", params={"service": "berth", "scope": "repository:x/y:pull"},
                         headers=basic("admin", password))
    assert r.status == 200
    await client.close()
    client = await aiohttp_client(create_app(cfg))  # second start: the admin exists, nothing printed
    assert "password" not in capsys.readouterr().out
    await client.close()


async def test_bootstrap_admin_from_configured_password(client, capsys):
    assert "password" not in capsys.readouterr().out
    r = await client.get("/v2/", headers=basic("admin", "admin-password-for-tests"))
    assert r.status == 200
    user = await client.app[SERVICES].auth.principals.get_user("admin")
    assert user.is_admin


async def test_identity_from_token_and_allowed_actions_api(client, auth):
    """The surface the admin API builds on."""
    await auth.principals.create_tenant("acme")
    admin = await auth.login("admin", "admin-password-for-tests", "127.0.0.1")
    assert admin.kind == "admin" and admin.is_admin
    assert await auth.allowed_actions(admin, "repository", "acme/app") == {"pull", "push", "delete"}
    assert await auth.allowed_actions(admin, "repository", "nowhere/app") == set()
    assert await auth.allowed_actions(admin, "registry", "admin") == {"*"}
    access = await auth.grant(admin, ["registry:admin:*", "repository:acme/app:pull"])
    ident, got = await auth.identity_from_token(auth.issue_token(admin, access)["token"])
    assert ident.username == "admin" and got == access
    anon = Identity("anonymous", "")
    assert await auth.allowed_actions(anon, "registry", "admin") == set()
    assert isinstance(auth, AuthService)


async def test_issued_claims_are_what_json_dumps_writes(client, auth):
    """issue_token writes the claims from a template kept per principal: the same bytes as
    json.dumps(claims, separators=(",", ":")) in the same order, names that need escaping
    included, and a changed access list (even the same list object, changed) is written anew."""
    user = Identity("user", 'ünï"code', 2, {}, None, None, "u9:1.5")
    access = [{"type": "repository", "name": 'acme/"x\u2603', "actions": ["pull"], "class": "image"}]

    def payload(token: str) -> bytes:
        p = token.split(".")[1]
        return base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))

    for _ in range(2):
        raw = payload(auth.issue_token(user, access)["token"])
        claims = json.loads(raw)
        assert raw == json.dumps(claims, separators=(",", ":")).encode()
        assert list(claims) == ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access", "berth"]
        assert claims["sub"] == 'ünï"code' and claims["access"] == access
        assert claims["berth"] == {"kind": "user", "ver": 2, "uid": "u9:1.5", "use": "access"}
    access[0]["actions"].append("push")
    assert json.loads(payload(auth.issue_token(user, access)["token"]))["access"][0]["actions"] == ["pull", "push"]


def test_instances_starting_together_share_one_complete_key(tmp_path):
    """Several processes generating the signing key at once on one data directory all end
    up with the same, complete key (it is published atomically), and leave no temp files."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(6) as pool:
        kids = pool.map(_load_kid, [str(tmp_path / "keys")] * 12)
    assert len(set(kids)) == 1
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["signing-es256.pem"]


def _load_kid(keys_dir: str) -> str:
    return KeySet.load(keys_dir).signing.kid
