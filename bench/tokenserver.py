#!/usr/bin/env python3
"""The token server the bench gives CNCF Distribution 2.8.2 (its `auth: token:` realm).

Distribution does not issue tokens itself: it verifies JWTs issued by a separate service
(docs: Distribution's token.md / jwt.md). This is a minimal one, enough for the bench:

- one user (``--user`` / ``--password``, HTTP Basic, compared with ``hmac.compare_digest``:
  no password hashing, so it is cheaper than any real token service);
- ``GET /token?service=..&scope=repository:<name>:pull,push`` grants every scope asked for;
- ES256 JWTs carrying the signing certificate in the ``x5c`` header. Distribution 2.8.2
  verifies the chain against its ``rootcertbundle`` (the self-signed CA this module writes)
  and then the signature with the leaf's public key — the robust route (the other one,
  a ``kid`` that is the libtrust key id of a key in the bundle, depends on libtrust's id format).

``write_keys(dir)`` creates ``ca.pem`` (the bundle for Distribution's config), ``signing.key``
and ``signing.pem`` (the leaf, signed by the CA). Run as a script it serves on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import hashlib
import hmac
import secrets
import time
from pathlib import Path

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TOKEN_TTL = 900  # seconds; longer than any bench row


# ---------------------------------------------------------------------------- keys
def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, public_key, issuer: str, signing_key, is_ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(_name(issuer)).public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=7))
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True)
    return builder.sign(signing_key, hashes.SHA256())


def write_keys(directory: Path) -> dict[str, Path]:
    """A self-signed CA and an ES256 signing key with a certificate the CA signed; returns the paths."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("bench token CA", ca_key.public_key(), "bench token CA", ca_key, is_ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = _certificate("bench token signer", leaf_key.public_key(), "bench token CA", ca_key, is_ca=False)
    paths = {"ca": directory / "ca.pem", "key": directory / "signing.key", "cert": directory / "signing.pem"}
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    return paths


# ---------------------------------------------------------------------------- tokens
def libtrust_key_id(public_key) -> str:
    """Distribution's (libtrust's) key id: base32 of the first 240 bits of SHA-256 of the DER
    public key, in 12 groups of 4 separated by ':'."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


class Issuer:
    """header "x5c": the signing certificate (Distribution verifies it against rootcertbundle, then
    the JWT); "kid": the libtrust key id of the signing key, whose certificate must then be in
    rootcertbundle itself (Distribution looks the key up, no chain to verify)."""

    def __init__(self, key_pem: bytes, cert_pem: bytes, issuer: str, service: str, header: str = "x5c") -> None:
        self.key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem)
        if header == "kid":
            self.headers = {"kid": libtrust_key_id(cert.public_key())}
        else:
            self.headers = {"x5c": [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]}
        self.issuer, self.service = issuer, service

    def token(self, subject: str, scopes: list[str]) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "iat": now, "nbf": now - 5,
                  "exp": now + TOKEN_TTL, "jti": secrets.token_hex(8), "access": parse_scopes(scopes)}
        return jwt.encode(claims, self.key, algorithm="ES256", headers=self.headers)


def parse_scopes(scopes: list[str]) -> list[dict]:
    """``repository:bench/x:pull,push`` → ``{"type", "name", "actions"}`` (split at the first and last colon)."""
    access = []
    for scope in " ".join(scopes).split():
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind and name:
            access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
    return access


def basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def make_app(issuer: Issuer, user: str, password: str) -> web.Application:
    async def token(request: web.Request) -> web.Response:
        creds = basic_credentials(request.headers.get("Authorization", ""))
        if creds is None or not (hmac.compare_digest(creds[0], user) and hmac.compare_digest(creds[1], password)):
            return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401,
                                     headers={"WWW-Authenticate": 'Basic realm="bench"'})
        if request.query.get("service", issuer.service) != issuer.service:
            return web.json_response({"errors": [{"code": "INVALID_REQUEST"}]}, status=400)
        jwt_ = issuer.token(creds[0], request.query.getall("scope", []))
        return web.json_response({"token": jwt_, "access_token": jwt_, "expires_in": TOKEN_TTL})

    app = web.Application()
    app.router.add_get("/token", token)
    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--keys", type=Path, required=True, help="directory of write_keys()")
    p.add_argument("--issuer", default="bench-token-server")
    p.add_argument("--service", default="distribution")
    p.add_argument("--user", default="bench")
    p.add_argument("--password", required=True)
    p.add_argument("--header", choices=["x5c", "kid"], default="x5c", help="how tokens name their key")
    args = p.parse_args()
    issuer = Issuer((args.keys / "signing.key").read_bytes(), (args.keys / "signing.pem").read_bytes(),
                    args.issuer, args.service, args.header)
    web.run_app(make_app(issuer, args.user, args.password), host="127.0.0.1", port=args.port,
                access_log=None, print=None)


if __name__ == "__main__":
    main()
