"""Signing and verification keys for registry tokens: load, generate, JWK, RFC 7638 thumbprint.

Where the signing key comes from:

* ``auth.signing_key`` (a PEM file) when configured: every replica is given the same file;
* otherwise the database (table ``signing_keys``, :class:`KeyRing`): the newest live
  generation signs, every live one verifies, so a token issued by one replica verifies
  on all. On the first start the table is empty: a replica imports the key of an earlier
  single-instance deployment (``<data>/keys/signing-<alg>.pem``) or generates one, and
  inserts it as generation 1 (insert-or-ignore on the primary key); replicas starting at
  once all re-read and agree on the row that won. ``berth keys rotate`` adds a generation
  and gives the older keys a ``not_after`` (they verify until the longest token lifetime
  has passed); ``berth keys retire`` ends one at once.

Each process re-reads the live keys at most every :data:`KEY_REFRESH_INTERVAL` seconds
(lazily, on a token request), and at once (at most once a second) when a token names a
``kid`` it does not know: a key added by one replica verifies on all immediately, a
rotation changes the signer everywhere within 5 s, a retired key stops verifying within
5 s. ``auth.verification_keys`` adds PEM keys (public or private) that are accepted but
never used to sign.

:class:`KeySet` is the file-only variant (``KeySet.load``): one key under ``<data>/keys``
(mode 0600), created atomically by the first process.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

log = logging.getLogger("berth.auth")

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
    return load_private_pem(Path(path).read_bytes(), str(path))


def load_private_pem(data: bytes, where: str):
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise KeyError_(f"{where}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise KeyError_(f"{where}: only EC and RSA keys are supported")
    return key


def private_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


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
    pem = private_pem(key)
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

    async def start(self) -> None:
        """Load what lives outside this process (nothing, for a file key set)."""

    async def refresh(self, kid: str | None = None) -> bool:
        """Re-read shared keys if due (or ``kid`` is unknown); True when a key stopped verifying."""
        return False


# ---- keys shared through the database (replicas) ------------------------------------------

KEY_REFRESH_INTERVAL = 5.0  # seconds a process trusts its copy of the live keys
UNKNOWN_KID_REFRESH = 1.0  # an unknown kid forces a re-read at most this often


@dataclass(frozen=True)
class StoredKey:
    generation: int
    kid: str
    algorithm: str
    private_pem: str
    created_at: float
    not_after: float | None


def _rows(conn, now: float | None) -> list[StoredKey]:
    from sqlalchemy import select  # noqa: PLC0415

    from storage.models import SigningKey  # noqa: PLC0415

    q = select(SigningKey).order_by(SigningKey.generation.desc())
    if now is not None:
        q = q.where(SigningKey.not_after.is_(None) | (SigningKey.not_after > now))
    return [StoredKey(r.generation, r.kid, r.algorithm, r.private_pem, r.created_at, r.not_after)
            for r in conn.execute(q)]


def _live_rows(conn) -> list[StoredKey]:
    return _rows(conn, time.time())


def _all_rows(conn) -> list[StoredKey]:
    return _rows(conn, None)


def _insert(conn, generation: int, key, retire_older_at: float | None) -> bool:
    """Insert ``key`` as ``generation`` unless that generation exists (another replica won)."""
    from sqlalchemy import update  # noqa: PLC0415

    from storage.db import upsert_insert  # noqa: PLC0415
    from storage.models import SigningKey  # noqa: PLC0415

    pub = make_public(key.public_key())
    res = conn.execute(upsert_insert(conn, SigningKey).values(
        generation=generation, kid=pub.kid, algorithm=pub.alg, private_pem=private_pem(key).decode(),
        created_at=time.time(), not_after=None).on_conflict_do_nothing())
    if res.rowcount != 1:
        return False
    if retire_older_at is not None:
        conn.execute(update(SigningKey).where(SigningKey.generation < generation, SigningKey.not_after.is_(None)
                                              | (SigningKey.not_after > retire_older_at))
                     .values(not_after=retire_older_at))
    return True


def _retire(conn, kid: str, at: float) -> StoredKey | None:
    from sqlalchemy import update  # noqa: PLC0415

    from storage.models import SigningKey  # noqa: PLC0415

    live = _live_rows(conn)
    if live and live[0].kid == kid:
        raise KeyError_(f"{kid} is the current signing key: rotate first (berth keys rotate)")
    conn.execute(update(SigningKey).where(SigningKey.kid == kid).values(not_after=at))
    return next((k for k in _all_rows(conn) if k.kid == kid), None)


class KeyRing(KeySet):
    """The key set of one replica: configured keys plus the live keys in the database.

    Same surface as :class:`KeySet` (``signing_key``, ``signing``, ``alg``, ``by_kid``,
    ``jwks()``); ``await start()`` before the first use, ``await refresh(kid)`` on token
    requests (cheap unless due). See the module docstring.
    """

    def __init__(self, db, keys_dir: Path, algorithm: str = "ES256", signing_key: str | None = None,
                 verification_keys: list[str] = (), keep_old_for: float = 0.0) -> None:
        self.db = db
        self.keep_old_for = keep_old_for
        self.keys_dir = Path(keys_dir)
        self.algorithm = algorithm
        self._configured = load_private(Path(signing_key)) if signing_key else None
        self._extra = [make_public(load_public(Path(p))) for p in verification_keys]
        self._stored: list[StoredKey] = []
        self._private: dict[str, object] = {}  # kid -> private key, parsed once
        self._checked = float("-inf")  # monotonic time of the last read
        self._forced = float("-inf")
        self._lock = asyncio.Lock()
        self.signing_key = None
        self.signing = None
        self.alg = None
        self.by_kid = {}
        if self._configured is not None:
            self._apply([])

    # ---- the database ------------------------------------------------------------------
    async def start(self) -> None:
        """Read the live keys; on an empty table import or generate generation 1 (race-free)."""
        stored = await self.db.read(_all_rows)  # one read: the generation to claim and the live keys agree
        now = time.time()
        rows = [r for r in stored if r.not_after is None or r.not_after > now]
        if self._configured is None:
            if not rows:
                key, source = self._initial_key()
                if await self.db.write(_insert, 1 + (stored[0].generation if stored else 0), key, None):
                    log.info("signing key %s (%s) stored in the database", make_public(key.public_key()).kid, source)
                rows = await self.db.read(_live_rows)
            elif rows[0].algorithm != self.algorithm and self.algorithm in ALGORITHMS:
                log.warning("the current signing key is %s, auth.algorithm asks for %s: rotating",
                            rows[0].algorithm, self.algorithm)
                await rotate(self.db, self.algorithm, self.keep_old_for)
                rows = await self.db.read(_live_rows)
            if not rows:
                raise KeyError_("no signing key in the database")
        self._apply(rows)
        self._checked = time.monotonic()

    def _initial_key(self):
        path = self.keys_dir / f"signing-{self.algorithm.lower()}.pem"
        if path.exists():  # a single-instance deployment from before: keep its tokens valid
            return load_private(path), f"imported from {path}"
        return generate(self.algorithm), "generated"

    async def refresh(self, kid: str | None = None) -> bool:
        now = time.monotonic()
        unknown = kid is not None and kid not in self.by_kid and now - self._forced >= UNKNOWN_KID_REFRESH
        if not unknown and now - self._checked < KEY_REFRESH_INTERVAL:
            return False
        if self._lock.locked() and not unknown:
            return False  # another request is re-reading; use the keys we have meanwhile
        async with self._lock:
            if unknown:
                self._forced = time.monotonic()
            elif time.monotonic() - self._checked < KEY_REFRESH_INTERVAL:
                return False
            try:
                rows = await self.db.read(_live_rows)
            except Exception:  # keep serving with the keys we have; try again later
                log.exception("re-reading the signing keys failed")
                self._checked = time.monotonic()
                return False
            self._checked = time.monotonic()
            before = set(self.by_kid)
            if rows or self._configured is not None:
                self._apply(rows)
            return bool(before - set(self.by_kid))

    # ---- in memory ---------------------------------------------------------------------
    def _private_of(self, row: StoredKey):
        key = self._private.get(row.kid)
        if key is None:
            key = self._private[row.kid] = load_private_pem(row.private_pem.encode(), f"signing key {row.kid}")
        return key

    def _apply(self, rows: list[StoredKey]) -> None:
        signer = self._configured if self._configured is not None else self._private_of(rows[0])
        by_kid: dict[str, PublicKey] = {}
        signing = make_public(signer.public_key())
        by_kid[signing.kid] = signing
        for row in rows:
            by_kid.setdefault(row.kid, make_public(self._private_of(row).public_key()))
        for p in self._extra:
            by_kid.setdefault(p.kid, p)
        self._private = {k: v for k, v in self._private.items() if k in by_kid}
        self._stored = rows
        # one assignment each: a request running meanwhile sees the old or the new set
        self.signing_key, self.signing, self.alg = signer, signing, signing.alg
        self.by_kid = by_kid


def keep_old_for(auth_config) -> float:
    """Seconds an old key must keep verifying after a rotation: the longest token lifetime (+ leeway)."""
    return float(max(auth_config.token_ttl, auth_config.refresh_token_ttl, auth_config.max_admin_token_ttl)) + 60


async def rotate(db, algorithm: str = "ES256", keep_old_for: float = 0.0) -> StoredKey:
    """Make a new signing key current on every replica (within KEY_REFRESH_INTERVAL); older keys
    keep verifying for ``keep_old_for`` seconds. Concurrent rotations: one wins, the others re-read."""
    key = generate(algorithm)
    rows = await db.read(_all_rows)
    generation = (rows[0].generation if rows else 0) + 1
    await db.write(_insert, generation, key, time.time() + keep_old_for)
    return (await db.read(_live_rows))[0]


async def retire(db, kid: str) -> StoredKey | None:
    """Stop accepting tokens signed with ``kid`` (every replica within KEY_REFRESH_INTERVAL)."""
    return await db.write(_retire, kid, time.time())


async def stored_keys(db) -> list[StoredKey]:
    return await db.read(_all_rows)


_EC_HASHES = {"ES256": hashes.SHA256, "ES384": hashes.SHA384, "ES512": hashes.SHA512}
# the signature algorithm objects (stateless), made once: a new ECDSA(SHA256()) a token cost ~3 µs
_EC_SIGNERS = {alg: ec.ECDSA(h()) for alg, h in _EC_HASHES.items()}
_HEADERS: dict[tuple[str, str], bytes] = {}  # (alg, kid) -> the JWS header, encoded once


def sign_jwt(claims: dict | bytes, key, alg: str, kid: str) -> str:
    """A compact JWS of ``claims`` (header ``{"alg", "kid", "typ": "JWT"}``), exactly what
    ``jwt.encode`` makes and verifies, with EC keys signed here directly: PyJWT's generic path
    (header and claims re-serialised and checked on every call) cost as much as the ECDSA
    signature itself on the token endpoint. Other algorithms go through PyJWT. ``claims`` may
    be given already as the JSON ``jwt.encode`` would write (``separators=(",", ":")``)."""
    if alg not in _EC_HASHES:
        import jwt  # noqa: PLC0415

        if isinstance(claims, bytes):
            return jwt.api_jws.encode(claims, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})
    header = _HEADERS.get((alg, kid))
    if header is None:
        header = _HEADERS[(alg, kid)] = _b64(json.dumps({"alg": alg, "kid": kid, "typ": "JWT"},
                                                        separators=(",", ":")).encode()).encode()
    if not isinstance(claims, bytes):
        claims = json.dumps(claims, separators=(",", ":")).encode()
    signing_input = header + b"." + _b64(claims).encode()
    r, s = decode_dss_signature(key.sign(signing_input, _EC_SIGNERS[alg]))
    size = (key.curve.key_size + 7) // 8
    return (signing_input + b"." + _b64(r.to_bytes(size, "big") + s.to_bytes(size, "big")).encode()).decode()

