"""Signing and verification keys for registry tokens: load, generate, JWK, RFC 7638 thumbprint.

The signing key is a PEM private key: ``auth.signing_key`` when configured, else one
generated on first start into ``<data>/keys/signing-<alg>.pem`` (mode 0600).
``auth.verification_keys`` adds PEM keys (public or private) that are accepted but
never used to sign: during a rotation, list the old key there and configure the new
one as ``signing_key``; tokens signed with the old key stay valid until they expire.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ALGORITHMS = ("ES256", "RS256")  # what Berth signs with
_CURVES = {"secp256r1": ("P-256", "ES256", 32), "secp384r1": ("P-384", "ES384", 48), "secp521r1": ("P-521", "ES512", 66)}


class KeyError_(ValueError):
    """A key file Berth cannot use."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(n: int, length: int | None = None) -> bytes:
    return n.to_bytes(length or max(1, (n.bit_length() + 7) // 8), "big")


@dataclass(frozen=True)
class PublicKey:
    key: object  # cryptography public key
    alg: str  # the only JWS algorithm accepted with this key
    kid: str  # RFC 7638 thumbprint
    jwk: dict


def public_jwk(public) -> tuple[dict, str]:
    """(JWK members, algorithm) of an EC or RSA public key."""
    if isinstance(public, ec.EllipticCurvePublicKey):
        if public.curve.name not in _CURVES:
            raise KeyError_(f"unsupported EC curve {public.curve.name}")
        crv, alg, size = _CURVES[public.curve.name]
        nums = public.public_numbers()
        return {"kty": "EC", "crv": crv, "x": _b64(_int_bytes(nums.x, size)), "y": _b64(_int_bytes(nums.y, size))}, alg
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < 2048:
            raise KeyError_("RSA keys must have at least 2048 bits")
        nums = public.public_numbers()
        return {"kty": "RSA", "n": _b64(_int_bytes(nums.n)), "e": _b64(_int_bytes(nums.e))}, "RS256"
    raise KeyError_("only EC and RSA keys are supported")


def thumbprint(jwk: dict) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): the required members, sorted, no whitespace."""
    required = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def make_public(public) -> PublicKey:
    members, alg = public_jwk(public)
    kid = thumbprint(members)
    return PublicKey(public, alg, kid, {**members, "kid": kid, "use": "sig", "alg": alg})


def generate(algorithm: str):
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise KeyError_(f"unsupported signing algorithm {algorithm!r}: use one of {', '.join(ALGORITHMS)}")


def load_private(path: Path):
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise KeyError_(f"{path}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise KeyError_(f"{path}: only EC and RSA keys are supported")
    return key


def load_public(path: Path):
    data = Path(path).read_bytes()
    try:
        return serialization.load_pem_public_key(data)
    except ValueError:
        pass
    try:
        return serialization.load_pem_private_key(data, password=None).public_key()
    except (ValueError, TypeError) as e:
        raise KeyError_(f"{path}: not a PEM public or private key ({e})") from None


def write_private(path: Path, key) -> None:
    """Write a new private key with mode 0600; FileExistsError if ``path`` already exists.

    The key is written whole to a temporary file first and then published with link(),
    which is atomic and never replaces a file: instances starting at once on one data
    directory either create the key or read a complete one, never half of it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class KeySet:
    """The signing key and every key tokens are verified with, by kid."""

    def __init__(self, signing_key, extra_public: list = ()) -> None:
        self.signing_key = signing_key
        self.signing = make_public(signing_key.public_key())
        self.alg = self.signing.alg
        self.by_kid: dict[str, PublicKey] = {self.signing.kid: self.signing}
        for pub in extra_public:
            p = make_public(pub)
            self.by_kid.setdefault(p.kid, p)

    @classmethod
    def load(cls, keys_dir: Path, algorithm: str = "ES256", signing_key: str | None = None,
             verification_keys: list[str] = ()) -> "KeySet":
        if signing_key:
            key = load_private(Path(signing_key))
        else:
            path = Path(keys_dir) / f"signing-{algorithm.lower()}.pem"
            if path.exists():
                key = load_private(path)
            else:
                key = generate(algorithm)
                try:
                    write_private(path, key)
                except FileExistsError:  # another process won the race: use its key
                    key = load_private(path)
        return cls(key, [load_public(Path(p)) for p in verification_keys])

    def jwks(self) -> dict:
        return {"keys": [p.jwk for p in self.by_kid.values()]}
