"""The token service: who may do what, logins, registry tokens (JWT) and their verification.

Used by the realm (``registry.auth.token``), the /v2/ guard (``registry.auth.guard``)
and the admin API. Nothing here knows about HTTP.

Rules (docs/auth.md):
- a tenant owns every repository ``<tenant>/…``; a repository outside an existing
  tenant is never granted anything, not even to an admin;
- admins may pull, push and delete in every tenant; users by role per tenant
  (reader: pull, writer: pull+push, owner: pull+push+delete); robots only in their
  tenant, only their actions, only repositories matching their globs (relative to the
  tenant), only before their expiry; a public tenant adds anonymous pull for everyone;
- tokens carry the principal's version (and identity generation); a token is accepted
  only while the principal still exists at that version, and its access is
  re-intersected with what the principal may do now.
"""
from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import ipaddress
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from pathlib import Path

import jwt

from storage.principals import ROLES, Principals, RobotRecord, UserRecord

from .keys import KeyRing, KeySet, keep_old_for, sign_jwt
from .scopes import parse_scopes

log = logging.getLogger("berth.auth")

REPOSITORY_ACTIONS = ("pull", "push", "delete")
LEEWAY = 60  # seconds of clock skew accepted on exp/nbf
PRINCIPAL_CACHE_TTL = 5.0  # seconds a principal's state is trusted from memory (forget() drops it)
TENANT_MISS_REFRESH = 0.5  # a tenant not in a snapshot older than this re-reads the list (created on another replica)
VERIFIED_TOKENS = 4096  # signature-checked tokens remembered (LRU); exp is re-checked on every use
GRANTS = 4096  # grant() answers remembered (who, scopes asked)
GRANT_SCOPES_MAX = 1024  # characters of scope text a remembered grant may be asked with
ADMIN_USERNAME = "admin"
KNOWN_PAIR_TTL = 24 * 3600  # a (username, address) that logged in this recently skips the global caps
CREDENTIAL_CACHE_MAX_AGE = 10  # × credential_cache_ttl: a cache hit extends an entry up to this age


def _refused(reason: str, limit: str | None = None) -> None:
    from .. import metrics  # noqa: PLC0415

    metrics.LOGINS_REFUSED.labels(reason).inc()
    if limit:
        metrics.RATE_LIMITED.labels(limit).inc()


class InvalidToken(Exception):
    """The token is malformed, badly signed, expired, or its principal changed."""


class TooManyAttempts(Exception):
    """Too many failed logins for this username or client address."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Identity:
    """Who is calling."""

    kind: str  # "admin" | "user" | "robot" | "service" | "anonymous"
    username: str  # "" for anonymous; robots "<tenant>+<name>"; service = token subject
    version: int = 0  # principal version the credential/token was issued at
    roles: Mapping[str, str] = field(default_factory=dict)  # users: tenant -> reader|writer|owner
    robot: RobotRecord | None = None  # robots
    access: tuple | None = None  # "service" (admin-issued) tokens: the fixed access list
    uid: str = ""  # principal generation ("u<id>:<created>"), so a re-created name is a new principal
    # "service" tokens: tenant name -> the generation it had when the token was issued; the token
    # reaches a tenant only while it is that same tenant (not one deleted and created again)
    tenants: Mapping[str, str] | None = None

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    @property
    def authenticated(self) -> bool:
        return self.kind != "anonymous"


ANONYMOUS = Identity("anonymous", "")


@dataclass(frozen=True)
class _Tenants:
    names: frozenset[str]
    public: frozenset[str]
    generations: Mapping[str, str] = field(default_factory=dict)  # name -> "t<id>:<created>"


def _tenant_of(type_: str, name: str) -> tuple[str, ...]:
    """The tenant a resource belongs to, if any (for the snapshot's miss refresh)."""
    if type_ == "repository" and "/" in name:
        return (name.partition("/")[0],)
    return ()


@functools.lru_cache(maxsize=4)
def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def identity_of(record: UserRecord | RobotRecord) -> Identity:
    if isinstance(record, RobotRecord):
        return Identity("robot", record.username, record.version, {}, record, None, f"r{record.id}:{record.created_at!r}")
    return Identity(
        "admin" if record.is_admin else "user",
        record.username,
        record.version,
        dict(record.roles),
        None,
        None,
        f"u{record.id}:{record.created_at!r}",
    )


def allowed_for(identity: Identity, type_: str, name: str, tenants: _Tenants) -> set[str]:
    """What ``identity`` may do on resource ``type_:name`` (pure; tenants is a snapshot)."""
    if type_ == "repository":
        tenant, sep, rest = name.partition("/")
        if not sep or not rest or tenant not in tenants.names:
            return set()  # outside any tenant: nothing, for anyone
        acts: set[str] = set()
        if tenant in tenants.public:
            acts.add("pull")
        kind = identity.kind
        if kind == "admin":
            acts.update(REPOSITORY_ACTIONS)
        elif kind == "user":
            acts.update(ROLES.get(identity.roles.get(tenant, ""), ()))
        elif kind == "robot":
            r = identity.robot
            if (
                r is not None
                and r.tenant == tenant
                and not r.expired()
                and (r.repositories is None or any(fnmatchcase(rest, g) for g in r.repositories))
            ):
                acts.update(a for a in r.actions if a in REPOSITORY_ACTIONS)
        elif kind == "service":
            if not identity.tenants or identity.tenants.get(tenant) != tenants.generations.get(tenant):
                return acts  # not the tenant this token was issued for (or an unbound token)
            for entry in identity.access or ():
                if entry.get("type") == "repository" and entry.get("name") == name:
                    acts.update(a for a in entry.get("actions", ()) if a in REPOSITORY_ACTIONS)
        return acts
    if type_ == "registry":
        if name == "catalog":
            return {"*"}  # the listing itself is filtered per repository
        if name == "admin":
            if identity.kind == "admin" or (identity.kind == "user" and "owner" in identity.roles.values()):
                return {"*"}
            if identity.kind == "service" and any(
                e.get("type") == "registry" and e.get("name") == "admin" and "*" in e.get("actions", ())
                for e in identity.access or ()
            ):
                return {"*"}
    return set()


class AccessList:
    """An Access (registry.auth) over a token's granted access list."""

    def __init__(self, access: list[dict]) -> None:
        self._grants: dict[tuple[str, str], set[str]] = {}
        for e in access:
            self._grants.setdefault((e["type"], e["name"]), set()).update(e["actions"])

    def allows(self, repository: str, action: str) -> bool:
        return action in self._grants.get(("repository", repository), ())

    def has(self, type_: str, name: str, action: str) -> bool:
        return action in self._grants.get((type_, name), ())


class IdentityAccess:
    """An Access computed from who the caller is (catalog filtering, HTTP Basic on /v2/)."""

    def __init__(self, identity: Identity, tenants: _Tenants) -> None:
        self.identity = identity
        self._tenants = tenants

    def allows(self, repository: str, action: str) -> bool:
        return action in allowed_for(self.identity, "repository", repository, self._tenants)

    def has(self, type_: str, name: str, action: str) -> bool:
        return action in allowed_for(self.identity, type_, name, self._tenants)


class AuthService:
    """Logins, permissions and registry tokens for one Berth (see the module docstring)."""

    def __init__(self, config, principals: Principals, keys: KeySet | None = None) -> None:
        """``config`` is the whole registry Config (its ``auth`` section and ``data_dir`` are used)."""
        self.config = config.auth
        self.principals = principals
        # shared by every replica through the database (or configured): await keys.start() first
        self.keys = keys or KeyRing(
            principals.db,
            Path(config.data_dir) / "keys",
            self.config.algorithm,
            self.config.signing_key,
            self.config.verification_keys,
            keep_old_for(self.config),
        )
        # keyed BLAKE2b(user, secret) -> (expiry, identity, first verified): hits extend the expiry up to a cap
        self._creds: dict[bytes, tuple[float, Identity, float]] = {}
        self._cache_salt = secrets.token_bytes(32)  # per process: the cache keys are useless elsewhere
        self._records: dict[str, tuple[float, UserRecord | RobotRecord | None]] = {}
        # username -> (record, identity_of(record)): one Identity per record read, not one per request
        self._identities: dict[str, tuple[UserRecord | RobotRecord, Identity]] = {}
        self._tenants: tuple[float, _Tenants] | None = None
        self.trusted_proxies = tuple(ipaddress.ip_network(c, strict=False) for c in self.config.trusted_proxies or ())
        # logins whose secret is being checked now: per username and per address (in-flight caps),
        # and the checks themselves, so identical concurrent logins share one bcrypt
        self._in_flight_user: dict[str, int] = {}
        self._in_flight_addr: dict[str, int] = {}
        self._checking: dict[tuple[str, str], asyncio.Future] = {}
        # (token, audience) -> claims whose signature, alg, aud and iss were verified: clients
        # reuse one token for many requests, so each pays the ECDSA/RSA check once
        self._verified: OrderedDict[tuple[str, str], dict] = OrderedDict()
        # token -> (until, epoch, exp, identity, access now): identity_from_token's answer, reused
        # until the principal record or tenant list it was computed from is due to be re-read, so
        # a token's repeated use costs one dict lookup; forget() and a key retirement bump the epoch
        self._granted: dict[str, tuple[float, int, float, Identity, list[dict]]] = {}
        self._epoch = 0
        # (kind, username, *scopes asked) -> (identity, tenant snapshot, tenants asked, access): grant()'s
        # answer, a pure function of the three; reused while the caller is the same Identity object (one
        # per principal record read) and tenants() still answers the same snapshot object
        self._grants: dict[tuple, tuple[Identity, _Tenants, tuple[str, ...], list[dict]]] = {}
        # (kind, username, version, uid) -> (access, head, tail): an access token's claims as JSON
        # but for exp, nbf, iat and jti, made once per principal and access list (issue_token)
        self._templates: dict[tuple, tuple[list[dict], str, str]] = {}

    # ---- principal state (briefly cached) ---------------------------------------
    async def _record(self, username: str) -> UserRecord | RobotRecord | None:
        now = time.monotonic()
        hit = self._records.get(username)
        if hit and hit[0] > now:
            return hit[1]
        if "+" in username:
            rec = await self.principals.get_robot(username)
        else:
            rec = await self.principals.get_user(username)
        if len(self._records) > 10000:
            self._records.clear()
        self._records[username] = (now + PRINCIPAL_CACHE_TTL, rec)
        return rec

    async def tenants(self, *wanted: str) -> _Tenants:
        """The tenant snapshot, read at most every PRINCIPAL_CACHE_TTL seconds; sooner when one
        of ``wanted`` is missing from a snapshot older than TENANT_MISS_REFRESH (a tenant just
        created through another replica is usable at once, and a name that is no tenant costs
        at most one read of the list per TENANT_MISS_REFRESH)."""
        now = time.monotonic()
        if self._tenants and self._tenants[0] > now:
            snap = self._tenants[1]
            if all(w in snap.names for w in wanted) or self._tenants[0] - now > PRINCIPAL_CACHE_TTL - TENANT_MISS_REFRESH:
                return snap
        rows = await self.principals.list_tenants()
        snap = _Tenants(frozenset(t.name for t in rows), frozenset(t.name for t in rows if t.public),
                        {t.name: t.generation for t in rows})
        self._tenants = (now + PRINCIPAL_CACHE_TTL, snap)
        return snap

    async def current(self, identity: Identity) -> Identity | None:
        """The identity as it stands now, or None if the principal is gone, changed or expired."""
        if identity.kind in ("anonymous", "service"):
            return identity
        rec = await self._record(identity.username)
        if rec is None:
            return None
        now_ident = self._identity_of(rec)
        if now_ident is identity:  # the same record as last time (the warm login path)
            return None if identity.robot is not None and identity.robot.expired() else identity
        if now_ident.version != identity.version or now_ident.uid != identity.uid or now_ident.kind != identity.kind:
            return None
        if now_ident.robot is not None and now_ident.robot.expired():
            return None
        return now_ident

    def _identity_of(self, rec: UserRecord | RobotRecord) -> Identity:
        """identity_of(rec), made once per record read (records are re-read every PRINCIPAL_CACHE_TTL)."""
        hit = self._identities.get(rec.username)
        if hit is not None and hit[0] is rec:
            return hit[1]
        ident = identity_of(rec)
        if len(self._identities) > 10000:
            self._identities.clear()
        self._identities[rec.username] = (rec, ident)
        return ident

    def forget(self, username: str) -> None:
        """Drop cached credentials and state of ``username`` (a user, a robot ``t+n``, or a tenant name:
        then every robot of that tenant). Call after revoke, rotate, password or membership change, and
        tenant deletion. Tenant lists are re-read too."""
        self._tenants = None
        self._epoch += 1
        self._granted.clear()
        self._grants.clear()  # stale from now on anyway (a new snapshot follows): free them at once
        robots_of = username + "+"
        def gone(u: str) -> bool:
            return u == username or u.startswith(robots_of)
        for k in [k for k in self._records if gone(k)]:
            del self._records[k]
        for k in [k for k in self._identities if gone(k)]:
            del self._identities[k]
        for k in [k for k, v in self._creds.items() if gone(v[1].username)]:
            del self._creds[k]

    # ---- logins ------------------------------------------------------------------
    def _counter_key(self, kind: str, *parts: str) -> str:
        return f"{kind}:" + hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()

    async def login(self, username: str, password: str, remote: str) -> Identity | None:
        """The identity for these credentials, or None. Raises TooManyAttempts.

        docs/auth.md "Logins" states the rules; in short:

        * a credential verified in the last ``credential_cache_ttl`` seconds is accepted from
          memory (still checked against the principal's current version) and never limited;
          each hit extends it, up to ``CREDENTIAL_CACHE_MAX_AGE`` × the TTL since bcrypt ran;
        * identical logins from one address arriving together share one check;
        * at most ``max_logins_in_flight_per_*`` checks run at once per username and per
          address in this process (checked before any await; more → 429, Retry-After 1);
        * every check first reserves a failure in the database, shared by every replica:
          per (username, address) ``max_failed_logins``, per username and per address the much
          higher global caps (skipped for a pair that logged in within ``KNOWN_PAIR_TTL``). A
          correct secret gives the reservation back.
        """
        # keyed BLAKE2b (a MAC, as HMAC-SHA256 was, at a third of its cost: one C call, no Python HMAC object)
        ckey = hashlib.blake2b(b"%s\0%s" % (username.encode("utf-8", "surrogatepass"),
                                            password.encode("utf-8", "surrogatepass")),
                               key=self._cache_salt).digest()
        now = time.monotonic()
        hit = self._creds.get(ckey)
        if hit is not None:
            expiry, cached, first = hit
            if expiry > now and cached.username == username:
                ident = await self.current(cached)
                if ident is not None:
                    ttl = self.config.credential_cache_ttl
                    self._creds[ckey] = (min(now + ttl, first + CREDENTIAL_CACHE_MAX_AGE * ttl), cached, first)
                    return ident
            self._creds.pop(ckey, None)
        flight = (ckey, remote)
        task = self._checking.get(flight)
        if task is None:
            # synchronous: nothing can slip in between this check and the increments
            if (self._in_flight_user.get(username, 0) >= self.config.max_logins_in_flight_per_username
                    or self._in_flight_addr.get(remote, 0) >= self.config.max_logins_in_flight_per_address):
                log.info("login for %r from %s refused: too many logins in flight", username, remote)
                _refused("rate_limited", "logins_in_flight")
                raise TooManyAttempts(1)
            self._in_flight_user[username] = self._in_flight_user.get(username, 0) + 1
            self._in_flight_addr[remote] = self._in_flight_addr.get(remote, 0) + 1
            # a task of its own: a client that hangs up never leaves a reservation half-done
            task = asyncio.ensure_future(self._check_login(username, password, remote, ckey))
            self._checking[flight] = task
            task.add_done_callback(lambda t: (self._checking.pop(flight, None), t.cancelled() or t.exception()))
        return await asyncio.shield(task)

    @staticmethod
    def _release(counts: dict[str, int], key: str) -> None:
        n = counts.get(key, 0) - 1
        if n > 0:
            counts[key] = n
        else:
            counts.pop(key, None)

    async def _check_login(self, username: str, password: str, remote: str, ckey: bytes) -> Identity | None:
        cfg = self.config
        try:
            pair = self._counter_key("p", username, remote)
            known = self._counter_key("ok", username, remote)
            caps = [(self._counter_key("u", username), cfg.max_failed_logins_per_username),
                    (self._counter_key("a", remote), cfg.max_failed_logins_per_address)]
            counted, retry_after = await self.principals.reserve_login(
                (pair, cfg.max_failed_logins), caps, known, cfg.failed_login_window, KNOWN_PAIR_TTL)
            if retry_after is not None:
                log.info("login for %r from %s refused: too many failed logins", username, remote)
                _refused("rate_limited", "failed_logins")
                raise TooManyAttempts(retry_after)
            if not username or not password:
                rec = None
            elif "+" in username:
                rec = await self.principals.verify_robot(username, password)
            else:
                rec = await self.principals.verify_user(username, password)
            if rec is None:
                log.info("failed login for %r from %s", username, remote)
                _refused("invalid_credentials")
                return None  # the reserved failure stays counted
            await self.principals.login_succeeded(counted, pair, known, cfg.failed_login_window, KNOWN_PAIR_TTL)
        finally:
            self._release(self._in_flight_user, username)
            self._release(self._in_flight_addr, remote)
        now = time.monotonic()
        self._records[username] = (now + PRINCIPAL_CACHE_TTL, rec)
        ident = self._identity_of(rec)
        if cfg.credential_cache_ttl > 0:
            if len(self._creds) > 10000:
                self._creds = {k: v for k, v in self._creds.items() if v[0] > now}
            self._creds[ckey] = (now + cfg.credential_cache_ttl, ident, now)
        return ident

    # ---- permissions -------------------------------------------------------------
    async def allowed_actions(self, identity: Identity, type_: str, name: str) -> set[str]:
        return allowed_for(identity, type_, name, await self.tenants(*_tenant_of(type_, name)))

    async def identity_access(self, identity: Identity, type_: str = "", name: str = "") -> IdentityAccess:
        """What ``identity`` may do; ``type_``/``name``: the resource about to be asked (its tenant
        is looked up again if the snapshot does not know it yet)."""
        return IdentityAccess(identity, await self.tenants(*_tenant_of(type_, name)))

    async def grant(self, identity: Identity, scopes: list[str]) -> list[dict]:
        """The access entries of a token: each asked scope intersected with what is allowed.

        Malformed scopes and scopes with nothing granted are left out (asking for more is
        not an error). ``*`` on a repository asks for every allowed action. The list may be
        shared with other callers: do not change it.

        The answer depends on the identity, the scopes and the tenant snapshot only: it is
        kept, and given again while ``identity`` is the same object (``current()`` and
        ``login()`` give one per principal record read; a changed or revoked principal, or a
        ``forget()``, makes a new one or none) and ``tenants()``, asked for the same tenants,
        answers the same snapshot (re-read every PRINCIPAL_CACHE_TTL, sooner for a tenant it
        misses, at once after ``forget()``). A robot's expiry is checked on every call.
        """
        key = (identity.kind, identity.username, *scopes)
        hit = self._grants.get(key)
        if hit is not None and hit[0] is identity and (identity.robot is None or not identity.robot.expired()):
            if await self.tenants(*hit[2]) is hit[1]:
                await self._fresh_keys()  # a token is issued next: sign with the current key
                return hit[3]
        parsed = parse_scopes(scopes)
        wanted = tuple(t for s in parsed for t in _tenant_of(s.type, s.name))
        tenants = await self.tenants(*wanted)
        await self._fresh_keys()  # a token is issued next: sign with the current key
        out = self._grant(identity, parsed, tenants)
        if sum(map(len, scopes)) <= GRANT_SCOPES_MAX:
            if len(self._grants) >= GRANTS:
                self._grants.clear()
            self._grants[key] = (identity, tenants, wanted, out)
        return out

    @staticmethod
    def _grant(identity: Identity, parsed: list, tenants: _Tenants) -> list[dict]:
        out = []
        for s in parsed:
            allowed = allowed_for(identity, s.type, s.name, tenants)
            if not allowed:
                continue
            if s.type == "repository":
                wanted = set(REPOSITORY_ACTIONS) if "*" in s.actions else set(s.actions)
                acts = [a for a in REPOSITORY_ACTIONS if a in wanted and a in allowed]
            else:
                acts = [a for a in s.actions if a in allowed]
            if acts:
                entry = {"type": s.type, "name": s.name, "actions": acts}
                if s.klass:
                    entry["class"] = s.klass
                out.append(entry)
        return out

    # ---- tokens ------------------------------------------------------------------
    def _claims(self, identity: Identity, ttl: int, audience: str) -> dict:
        now = int(time.time())
        return {
            "iss": self.config.issuer,
            "sub": identity.username,
            "aud": audience,
            "exp": now + ttl,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
        }

    def _sign(self, claims: dict | bytes) -> str:
        return sign_jwt(claims, self.keys.signing_key, self.keys.alg, self.keys.signing.kid)

    def _berth_claim(self, identity: Identity, use: str) -> dict:
        claim = {"kind": identity.kind, "ver": identity.version, "uid": identity.uid, "use": use}
        if identity.tenants is not None:
            claim["tenants"] = dict(identity.tenants)
        return claim

    async def service_identity(self, subject: str, access: list[dict]) -> Identity:
        """A "service" identity (admin-issued token) bound to the tenants its access names, as they
        are now (read from the database, not the cache): a tenant deleted and created again under
        the same name, or created only later, is never reached by it."""
        generations = {t.name: t.generation for t in await self.principals.list_tenants()}
        bound = {}
        for e in access:
            if e.get("type") == "repository":
                tenant = e.get("name", "").partition("/")[0]
                if tenant in generations:
                    bound[tenant] = generations[tenant]
        return Identity("service", subject, access=tuple(access), tenants=bound)

    def issue_token(self, identity: Identity, access: list[dict], ttl: int | None = None) -> dict:
        """A signed registry token: ``{"token", "access_token", "expires_in", "issued_at"}``."""
        ttl = int(ttl or self.config.token_ttl)
        head, tail = self._access_template(identity, access)
        now = int(time.time())
        payload = f'{head}{now + ttl},"nbf":{now},"iat":{now},"jti":"{secrets.token_urlsafe(16)}"{tail}'
        token = self._sign(payload.encode())
        return {"token": token, "access_token": token, "expires_in": ttl, "issued_at": rfc3339(now)}

    def _access_template(self, identity: Identity, access: list[dict]) -> tuple[str, str]:
        """(head, tail): exactly what ``json.dumps(claims, separators=(",", ":"))`` writes for an access
        token's claims (iss, sub, aud, exp, nbf, iat, jti, access, berth, in that order) before ``exp``'s
        value and after ``jti``'s. json.dumps of the claims was ~10 µs of a token; the text around the
        four values that change is made once per principal (kind, name, version, generation) and kept
        while it is asked with an equal access list."""
        key = (identity.kind, identity.username, identity.version, identity.uid)
        hit = self._templates.get(key) if identity.tenants is None else None
        if hit is not None and hit[0] == access:
            return hit[1], hit[2]
        compact = (",", ":")
        head = (f'{{"iss":{json.dumps(self.config.issuer)},"sub":{json.dumps(identity.username)},'
                f'"aud":{json.dumps(self.config.service)},"exp":')
        tail = (f',"access":{json.dumps([dict(e) for e in access], separators=compact)},'
                f'"berth":{json.dumps(self._berth_claim(identity, "access"), separators=compact)}}}')
        if identity.tenants is None:  # service tokens (admin-issued, bound to tenants) are made one at a time
            if len(self._templates) >= GRANTS:
                self._templates.clear()
            self._templates[key] = (copy.deepcopy(access), head, tail)
        return head, tail

    @property
    def refresh_audience(self) -> str:
        return f"{self.config.service}#refresh"

    def issue_refresh_token(self, identity: Identity) -> str:
        """A refresh token (OAuth2 offline access): a JWT for a distinct audience, no access claim."""
        if identity.kind not in ("admin", "user", "robot"):
            raise ValueError("refresh tokens are issued to users and robots only")
        claims = self._claims(identity, int(self.config.refresh_token_ttl), self.refresh_audience)
        claims["berth"] = self._berth_claim(identity, "refresh")
        return self._sign(claims)

    async def _fresh_keys(self, token: str | None = None, audience: str = "") -> None:
        """Re-read the shared keys when due, or when ``token`` names a key this process does not know."""
        kid = None
        if token is not None and (token, audience) not in self._verified:
            try:
                kid = jwt.get_unverified_header(token).get("kid")
            except (jwt.PyJWTError, UnicodeError):  # not even UTF-8: _verify refuses it (InvalidToken)
                kid = None
            kid = kid if isinstance(kid, str) else None
        if await self.keys.refresh(kid):
            self._verified.clear()  # a key was retired: its tokens must be checked again
            self._epoch += 1
            self._granted.clear()

    def _decode(self, token: str, audience: str) -> dict:
        key = (token, audience)
        claims = self._verified.get(key)
        if claims is not None:
            if claims["exp"] + LEEWAY <= time.time():
                del self._verified[key]
                raise InvalidToken("Signature has expired")
            self._verified.move_to_end(key)
            return claims
        claims = self._verify(token, audience)
        self._verified[key] = claims
        if len(self._verified) > VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return claims

    def _verify(self, token: str, audience: str) -> dict:
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, UnicodeError) as e:  # UnicodeError: a token that is not even UTF-8 (was a 500)
            raise InvalidToken(f"malformed token: {e}") from None
        key = self.keys.by_kid.get(header.get("kid", ""))
        if key is None:
            raise InvalidToken("token signed with an unknown key")
        if header.get("alg") != key.alg:  # never "none", never HMAC, never another family
            raise InvalidToken("token algorithm not allowed")
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[key.alg],
                audience=audience,
                issuer=self.config.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "nbf", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as e:
            raise InvalidToken(str(e)) from None

    async def _principal_from_claims(self, claims: dict, use: str) -> Identity:
        b = claims.get("berth")
        if not isinstance(b, dict) or b.get("use") != use:
            raise InvalidToken("not a Berth token of this kind")
        kind = b.get("kind")
        if kind == "anonymous":
            return ANONYMOUS
        if kind not in ("admin", "user", "robot"):
            raise InvalidToken("unknown principal kind")
        claimed = Identity(kind, claims["sub"], b.get("ver", -1), uid=b.get("uid", ""))
        ident = await self.current(claimed)
        if ident is None:
            raise InvalidToken("the token's principal was revoked or changed")
        return ident

    async def identity_from_token(self, token: str) -> tuple[Identity, list[dict]]:
        """Verify a registry token; return who it is for and what it grants now. Raises InvalidToken."""
        await self._fresh_keys(token, self.config.service)
        hit = self._granted.get(token)
        if hit is not None:
            until, epoch, exp, ident, access = hit
            if (until > time.monotonic() and epoch == self._epoch and exp + LEEWAY > time.time()
                    and (ident.robot is None or not ident.robot.expired())):
                return ident, access
            del self._granted[token]
        epoch = self._epoch
        ident, access, exp = await self._identity_from_token(token)
        until = self._tenants[0] if self._tenants else 0.0
        if ident.kind in ("admin", "user", "robot"):
            # the record ``ident`` was made from: another request may have re-read the principal
            # while this one awaited the tenants, and the newer record's expiry must not be
            # lent to an identity made from the older one (one Identity per record read)
            rec = self._records.get(ident.username)
            made = self._identities.get(ident.username)
            fresh = rec is not None and made is not None and made[0] is rec[1] and made[1] is ident
            until = min(until, rec[0]) if fresh else 0.0
        if epoch == self._epoch and until > time.monotonic():
            if len(self._granted) >= VERIFIED_TOKENS:
                self._granted.clear()
            self._granted[token] = (until, epoch, exp, ident, access)
        return ident, access

    async def _identity_from_token(self, token: str) -> tuple[Identity, list[dict], float]:
        claims = self._decode(token, self.config.service)
        access = claims.get("access", [])
        if not isinstance(access, list) or not all(
            isinstance(e, dict) and isinstance(e.get("type"), str) and isinstance(e.get("name"), str)
            and isinstance(e.get("actions"), list)
            for e in access
        ):
            raise InvalidToken("malformed access claim")
        b = claims.get("berth")
        if isinstance(b, dict) and b.get("kind") == "service" and b.get("use") == "access":
            bound = b.get("tenants")
            if not isinstance(bound, dict) or not all(isinstance(v, str) for v in bound.values()):
                bound = {}  # a token without tenant bindings reaches no repository
            ident = Identity("service", claims["sub"], access=tuple(access), tenants=bound)
        else:
            ident = await self._principal_from_claims(claims, "access")
        tenants = await self.tenants(*(t for e in access for t in _tenant_of(e["type"], e["name"])))
        now_access = []
        for e in access:
            allowed = allowed_for(ident, e["type"], e["name"], tenants)
            acts = [a for a in e["actions"] if a in allowed]
            if acts:
                now_access.append({**e, "actions": acts})
        return ident, now_access, float(claims["exp"])

    async def identity_from_refresh_token(self, token: str) -> Identity:
        """Verify a refresh token; return its (still valid) principal. Raises InvalidToken."""
        await self._fresh_keys(token, self.refresh_audience)
        claims = self._decode(token, self.refresh_audience)
        ident = await self._principal_from_claims(claims, "refresh")
        if not ident.authenticated:
            raise InvalidToken("anonymous refresh token")
        return ident

    def jwks(self) -> dict:
        return self.keys.jwks()

    # ---- bootstrap ---------------------------------------------------------------
    async def ensure_admin(self) -> tuple[bool, str | None]:
        """Create the bootstrap admin ``admin`` when no admin exists.

        Returns (created, generated password or None when it came from the configuration).
        """
        if await self.principals.any_admin():
            return False, None
        password = self.config.admin_password
        generated = not password
        if generated:
            password = secrets.token_urlsafe(18)
        try:
            await self.principals.create_user(ADMIN_USERNAME, password, is_admin=True)
        except Exception as e:  # e.g. a plain user named "admin" exists, or a concurrent start won
            if await self.principals.any_admin():
                return False, None
            from ..config import ConfigError  # noqa: PLC0415

            # one line and exit 2 (berth serve), e.g. BERTH_ADMIN_PASSWORD shorter than 8 characters
            raise ConfigError(f"auth.admin_password: cannot create the bootstrap admin user: {e}") from e
        return True, (password if generated else None)
