"""Tenants, users, memberships, robot accounts and the audit log (SQL + bcrypt).

Secrets and passwords are stored only as bcrypt hashes; bcrypt runs in a worker
thread so it never blocks the event loop. A password change, a rotation and a deletion
bump the principal's ``version``; tokens carry the version they were issued at, so
revocation takes effect on the next request (see registry.auth). Membership changes and
tenant deletions do not: tokens are re-intersected with the roles of the moment on every
use, so they take away that tenant's access only.

Nothing here knows about HTTP or tokens: it returns plain records.
"""
from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import bcrypt
from sqlalchemy import Connection, and_, case, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .catalog import write_lock
from .db import Database, upsert_insert
from .errors import StorageError
from .models import AuditEvent, AuditEventTenant, LoginAttempt, Membership, Repository, Robot, Tenant, Upload, User

ROLES = {"reader": ("pull",), "writer": ("pull", "push"), "owner": ("pull", "push", "delete")}
ROBOT_ACTIONS = ("pull", "push", "delete")
TENANT_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*\Z")  # one repository-name component
USERNAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,127}\Z")  # no '+': reserved for robots
ROBOT_NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*\Z")
SECRET_BYTES = 32
T = TypeVar("T")


class Conflict(StorageError):
    """already exists"""
    code = "DENIED"


class NotFound(StorageError):
    """not found"""
    code = "NAME_UNKNOWN"


class Invalid(StorageError):
    """invalid value"""
    code = "NAME_INVALID"


@dataclass(frozen=True)
class TenantRecord:
    name: str
    public: bool
    created_at: float
    id: int = 0
    quota_bytes: int | None = None  # storage quota; None = unlimited

    @property
    def generation(self) -> str:
        """This incarnation of the tenant: a tenant deleted and created again under the same name
        (SQLite may even reuse its id) has another generation. Service tokens and audit events are
        bound to it."""
        return tenant_generation(self.id, self.created_at)


def tenant_generation(tenant_id: int, created_at: float) -> str:
    return f"t{tenant_id}:{created_at!r}"


@dataclass(frozen=True)
class UserRecord:
    id: int
    username: str
    is_admin: bool
    version: int
    roles: dict[str, str] = field(default_factory=dict)  # tenant -> role
    created_at: float = 0.0  # with id, tells a re-created user of the same name from the old one


@dataclass(frozen=True)
class RobotRecord:
    id: int
    tenant: str
    name: str
    username: str
    actions: tuple[str, ...]
    repositories: tuple[str, ...] | None  # globs relative to the tenant, None = every repository
    expires_at: float | None
    version: int
    created_at: float
    description: str | None = None

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at


def _hash(secret: str) -> str:
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt()).decode()


def _check(secret: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(secret.encode(), hashed.encode())
    except ValueError:
        return False


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


class Principals:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _write(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in one write transaction (see storage.db)."""
        return await self.db.write(_in_session, fn)

    async def _read(self, fn: Callable[[Session], T]) -> T:
        return await self.db.read(_in_session, fn)

    # ---- tenants ---------------------------------------------------------------
    async def create_tenant(self, name: str, public: bool = False, quota_bytes: int | None = None) -> TenantRecord:
        if not TENANT_RE.match(name) or len(name) > 64:
            raise Invalid(f"invalid tenant name {name!r}: lower-case letters, digits and . _ - inside")

        def run(s: Session) -> TenantRecord:
            t = Tenant(name=name, public=bool(public), quota_bytes=quota_bytes)
            s.add(t)
            s.flush()
            return TenantRecord(t.name, t.public, t.created_at, t.id, t.quota_bytes)

        try:
            return await self._write(run)
        except IntegrityError:
            raise Conflict(f"tenant {name!r} already exists") from None

    async def get_tenant(self, name: str) -> TenantRecord | None:
        if not isinstance(name, str) or "\x00" in name:  # no name holds NUL; PostgreSQL refuses it in text
            return None
        def run(s: Session) -> TenantRecord | None:
            t = s.execute(select(Tenant).where(Tenant.name == name)).scalar()
            return TenantRecord(t.name, t.public, t.created_at, t.id, t.quota_bytes) if t else None

        return await self._read(run)

    async def list_tenants(self) -> list[TenantRecord]:
        def run(s: Session) -> list[TenantRecord]:
            rows = s.execute(select(Tenant).order_by(Tenant.name)).scalars().all()
            return [TenantRecord(t.name, t.public, t.created_at, t.id, t.quota_bytes) for t in rows]

        return await self._read(run)

    async def set_tenant_public(self, name: str, public: bool) -> None:
        def run(s: Session) -> None:
            res = s.execute(update(Tenant).where(Tenant.name == name).values(public=bool(public)))
            if res.rowcount == 0:
                raise NotFound(f"tenant {name!r} not found")

        await self._write(run)

    async def update_tenant(self, name: str, **values) -> None:
        """Change ``public`` and/or ``quota_bytes`` (None = unlimited) in one statement. Lowering
        the quota below the usage deletes nothing: pushes of content new to the tenant are
        refused until its usage drops."""
        unknown = set(values) - {"public", "quota_bytes"}
        if unknown or not values:
            raise ValueError(f"cannot update {sorted(unknown) or 'nothing'}")

        def run(s: Session) -> None:
            res = s.execute(update(Tenant).where(Tenant.name == name).values(**values))
            if res.rowcount == 0:
                raise NotFound(f"tenant {name!r} not found")

        await self._write(run)

    async def tenant_repository_count(self, name: str) -> int:
        q = select(func.count()).select_from(Repository).where(Repository.name.startswith(f"{name}/", autoescape=True))
        return await self._read(lambda s: s.execute(q).scalar() or 0)

    async def delete_tenant(self, name: str, *, purge_repositories: bool = False) -> list[int]:
        """Delete a tenant, its memberships and robots; return the ids of users who lost access.

        With ``purge_repositories`` the tenant's repositories (manifests, tags, blob links;
        the blobs themselves go with the next gc) and upload sessions are deleted in the same
        transaction, so a tenant created later under the same name starts empty.
        """

        def run(s: Session) -> list[int]:
            # the tenant row first, FOR UPDATE (one lock order with a push's quota check and tenant check) (SQLite: the write lock): a push into the tenant
            # holds it FOR KEY SHARE while it adds a repository, link, manifest or upload
            # session (storage.catalog), so the purge below — a fresh snapshot once the lock
            # is ours — sees everything such a push committed, and later pushes find no tenant
            write_lock(s.connection())
            t = s.execute(select(Tenant).where(Tenant.name == name).with_for_update()).scalar()
            if t is None:
                raise NotFound(f"tenant {name!r} not found")
            if purge_repositories:
                prefix = f"{name}/"
                s.execute(delete(Repository).where(Repository.name.startswith(prefix, autoescape=True)))
                s.execute(delete(Upload).where(Upload.repository.startswith(prefix, autoescape=True)))
            members = list(s.execute(select(Membership.user_id).where(Membership.tenant_id == t.id)).scalars().all())
            s.execute(delete(Membership).where(Membership.tenant_id == t.id))
            s.execute(delete(Robot).where(Robot.tenant_id == t.id))
            s.execute(delete(Tenant).where(Tenant.id == t.id))
            return members

        return await self._write(run)

    # ---- users -----------------------------------------------------------------
    async def create_user(self, username: str, password: str, *, is_admin: bool = False) -> UserRecord:
        if not USERNAME_RE.match(username):
            raise Invalid(f"invalid username {username!r}")
        if len(password) < 8:
            raise Invalid("password must have at least 8 characters")
        hashed = await asyncio.to_thread(_hash, password)

        def run(s: Session) -> UserRecord:
            u = User(username=username, password_hash=hashed, is_admin=is_admin)
            s.add(u)
            s.flush()
            return UserRecord(u.id, u.username, u.is_admin, u.version, {}, u.created_at)

        try:
            return await self._write(run)
        except IntegrityError:
            raise Conflict(f"user {username!r} already exists") from None

    async def get_user(self, username: str) -> UserRecord | None:
        if not isinstance(username, str) or "\x00" in username:  # no name holds NUL; PostgreSQL refuses it in text
            return None
        def run(s: Session) -> UserRecord | None:
            u = s.execute(select(User).where(User.username == username)).scalar()
            if u is None:
                return None
            roles = s.execute(
                select(Tenant.name, Membership.role)
                .join(Membership, Membership.tenant_id == Tenant.id)
                .where(Membership.user_id == u.id)
            ).all()
            return UserRecord(u.id, u.username, u.is_admin, u.version, {t: r for t, r in roles}, u.created_at)

        return await self._read(run)

    async def list_users(self) -> list[UserRecord]:
        def run(s: Session) -> list[UserRecord]:
            users = s.execute(select(User).order_by(User.username)).scalars().all()
            roles = s.execute(
                select(Membership.user_id, Tenant.name, Membership.role).join(Tenant, Tenant.id == Membership.tenant_id)
            ).all()
            by_user: dict[int, dict[str, str]] = {}
            for uid, tenant, role in roles:
                by_user.setdefault(uid, {})[tenant] = role
            return [
                UserRecord(u.id, u.username, u.is_admin, u.version, by_user.get(u.id, {}), u.created_at) for u in users
            ]

        return await self._read(run)

    async def any_admin(self) -> bool:
        q = select(User.id).where(User.is_admin.is_(True)).limit(1)
        return await self._read(lambda s: s.execute(q).scalar() is not None)

    async def set_password(self, username: str, password: str) -> None:
        if len(password) < 8:
            raise Invalid("password must have at least 8 characters")
        hashed = await asyncio.to_thread(_hash, password)

        def run(s: Session) -> None:
            res = s.execute(
                update(User).where(User.username == username).values(password_hash=hashed, version=User.version + 1)
            )
            if res.rowcount == 0:
                raise NotFound(f"user {username!r} not found")

        await self._write(run)

    async def delete_user(self, username: str) -> None:
        def run(s: Session) -> None:
            uid = s.execute(select(User.id).where(User.username == username)).scalar()
            if uid is None:
                raise NotFound(f"user {username!r} not found")
            s.execute(delete(Membership).where(Membership.user_id == uid))
            s.execute(delete(User).where(User.id == uid))

        await self._write(run)

    async def verify_user(self, username: str, password: str) -> UserRecord | None:
        """The user when ``password`` is theirs (bcrypt, in a thread), else None."""
        q = select(User.password_hash).where(User.username == username)
        hashed = await self._read(lambda s: s.execute(q).scalar())
        if hashed is None:
            await asyncio.to_thread(_check, password, _DUMMY_HASH)  # same cost for unknown users
            return None
        if not await asyncio.to_thread(_check, password, hashed):
            return None
        return await self.get_user(username)

    # ---- memberships -----------------------------------------------------------
    async def set_membership(self, tenant: str, username: str, role: str) -> None:
        if role not in ROLES:
            raise Invalid(f"role must be one of {', '.join(ROLES)}")

        def run(s: Session) -> None:
            tid = s.execute(select(Tenant.id).where(Tenant.name == tenant)).scalar()
            uid = s.execute(select(User.id).where(User.username == username)).scalar()
            if tid is None:
                raise NotFound(f"tenant {tenant!r} not found")
            if uid is None:
                raise NotFound(f"user {username!r} not found")
            # no version bump, even on a downgrade: a token's access is re-intersected with the
            # roles of the moment on every use (registry.auth), so only this tenant's grants change
            # one statement, so two admins setting the same membership at once both succeed
            stmt = upsert_insert(s.connection(), Membership).values(tenant_id=tid, user_id=uid, role=role)
            s.execute(stmt.on_conflict_do_update(index_elements=["tenant_id", "user_id"], set_={"role": role}))

        await self._write(run)

    async def remove_membership(self, tenant: str, username: str) -> None:
        def run(s: Session) -> None:
            tid = s.execute(select(Tenant.id).where(Tenant.name == tenant)).scalar()
            uid = s.execute(select(User.id).where(User.username == username)).scalar()
            if tid is None or uid is None:
                raise NotFound(f"no membership of {username!r} in {tenant!r}")
            res = s.execute(delete(Membership).where(Membership.tenant_id == tid, Membership.user_id == uid))
            if res.rowcount == 0:
                raise NotFound(f"no membership of {username!r} in {tenant!r}")
            # no version bump: the user's other tenants (and admin rights) keep their tokens

        await self._write(run)

    async def members(self, tenant: str) -> dict[str, str]:
        q = (
            select(User.username, Membership.role)
            .join(Membership, Membership.user_id == User.id)
            .join(Tenant, Tenant.id == Membership.tenant_id)
            .where(Tenant.name == tenant)
            .order_by(User.username)
        )
        return await self._read(lambda s: {u: r for u, r in s.execute(q).all()})

    # ---- robots ----------------------------------------------------------------
    @staticmethod
    def _robot(r: Robot, tenant: str) -> RobotRecord:
        return RobotRecord(
            id=r.id,
            tenant=tenant,
            name=r.name,
            username=r.username,
            actions=tuple(a for a in r.actions.split(",") if a),
            repositories=tuple(json.loads(r.repositories)) if r.repositories else None,
            expires_at=r.expires_at,
            version=r.version,
            created_at=r.created_at,
            description=r.description,
        )

    async def create_robot(
        self,
        tenant: str,
        name: str,
        actions: list[str] | tuple[str, ...],
        repositories: list[str] | None = None,
        expires_at: float | None = None,
        description: str | None = None,
    ) -> tuple[RobotRecord, str]:
        """Create a robot; return it with its secret (shown once, stored only as bcrypt)."""
        if not ROBOT_NAME_RE.match(name) or len(name) > 64:
            raise Invalid(f"invalid robot name {name!r}")
        actions = tuple(dict.fromkeys(actions))
        if not actions or any(a not in ROBOT_ACTIONS for a in actions):
            raise Invalid(f"actions must be a non-empty list of {', '.join(ROBOT_ACTIONS)}")
        if repositories is not None:
            if not isinstance(repositories, list) or not all(isinstance(g, str) and g for g in repositories):
                raise Invalid("repositories must be a list of globs")
        secret = new_secret()
        hashed = await asyncio.to_thread(_hash, secret)

        def run(s: Session) -> RobotRecord:
            tid = s.execute(select(Tenant.id).where(Tenant.name == tenant)).scalar()
            if tid is None:
                raise NotFound(f"tenant {tenant!r} not found")
            r = Robot(
                tenant_id=tid,
                name=name,
                username=f"{tenant}+{name}",
                secret_hash=hashed,
                actions=",".join(actions),
                repositories=json.dumps(repositories) if repositories is not None else None,
                expires_at=expires_at,
                description=description,
            )
            s.add(r)
            s.flush()
            return self._robot(r, tenant)

        try:
            return await self._write(run), secret
        except IntegrityError:
            raise Conflict(f"robot {name!r} already exists in tenant {tenant!r}") from None

    async def list_robots(self, tenant: str) -> list[RobotRecord]:
        q = select(Robot).join(Tenant, Tenant.id == Robot.tenant_id).where(Tenant.name == tenant).order_by(Robot.name)
        return await self._read(lambda s: [self._robot(r, tenant) for r in s.execute(q).scalars().all()])

    async def get_robot(self, username: str) -> RobotRecord | None:
        if not isinstance(username, str) or "\x00" in username:  # no name holds NUL; PostgreSQL refuses it in text
            return None
        q = select(Robot, Tenant.name).join(Tenant, Tenant.id == Robot.tenant_id).where(Robot.username == username)

        def run(s: Session) -> RobotRecord | None:
            row = s.execute(q).first()
            return self._robot(row[0], row[1]) if row else None

        return await self._read(run)

    async def delete_robot(self, tenant: str, name: str) -> None:
        def run(s: Session) -> None:
            if s.execute(delete(Robot).where(Robot.username == f"{tenant}+{name}")).rowcount == 0:
                raise NotFound(f"robot {name!r} not found in tenant {tenant!r}")

        await self._write(run)

    async def rotate_robot(self, tenant: str, name: str) -> tuple[RobotRecord, str]:
        secret = new_secret()
        hashed = await asyncio.to_thread(_hash, secret)

        def run(s: Session) -> None:
            res = s.execute(
                update(Robot)
                .where(Robot.username == f"{tenant}+{name}")
                .values(secret_hash=hashed, version=Robot.version + 1)
            )
            if res.rowcount == 0:
                raise NotFound(f"robot {name!r} not found in tenant {tenant!r}")

        await self._write(run)
        robot = await self.get_robot(f"{tenant}+{name}")
        assert robot is not None
        return robot, secret

    async def verify_robot(self, username: str, secret: str) -> RobotRecord | None:
        q = select(Robot.secret_hash).where(Robot.username == username)
        hashed = await self._read(lambda s: s.execute(q).scalar())
        if hashed is None:
            await asyncio.to_thread(_check, secret, _DUMMY_HASH)
            return None
        if not await asyncio.to_thread(_check, secret, hashed):
            return None
        robot = await self.get_robot(username)
        if robot is None or robot.expired():
            return None
        return robot

    # ---- failed-login limits (shared by every replica) ----------------------------
    async def reserve_login(
        self,
        pair: tuple[str, int],
        caps: list[tuple[str, int]],
        known: str,
        window: float,
        known_ttl: float,
    ) -> tuple[list[str], float | None]:
        """Count a login attempt as a failure *before* its secret is checked, in one transaction.

        ``pair`` and ``caps`` are ``(key, limit)`` counters (fixed windows of ``window``
        seconds). The caps are skipped when ``known`` (the pair's last success) is younger
        than ``known_ttl``. Returns ``(keys counted, None)``, or ``([], retry_after)`` when a
        counter would pass its limit: then nothing stays counted. Each increment is one
        atomic upsert, so parallel attempts on any number of replicas each see their own
        count and no more than ``limit`` ever get through.
        """

        def run(s: Session) -> tuple[list[str], float | None]:
            now = time.time()
            stale = now - window
            last_ok = s.execute(select(LoginAttempt.window_start).where(LoginAttempt.key == known)).scalar()
            counters = [pair] + (caps if last_ok is None or last_ok <= now - known_ttl else [])
            conn = s.connection()
            over: list[float] = []
            for key, limit in counters:  # always pair, then username, then address: no lock cycles
                expired = LoginAttempt.window_start <= stale
                stmt = upsert_insert(conn, LoginAttempt).values(key=key, window_start=now, count=1)
                s.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={
                    "count": case((expired, 1), else_=LoginAttempt.count + 1),
                    "window_start": case((expired, now), else_=LoginAttempt.window_start),
                }))
                count, start = s.execute(
                    select(LoginAttempt.count, LoginAttempt.window_start).where(LoginAttempt.key == key)
                ).one()
                if count > limit:
                    over.append(start + window - now)
            keys = [k for k, _ in counters]
            if over:
                s.execute(update(LoginAttempt).where(LoginAttempt.key.in_(keys)).values(count=LoginAttempt.count - 1))
                _prune_logins(s, now, window, known_ttl)
                return [], max(1.0, max(over))
            return keys, None

        return await self._write(run)

    async def login_succeeded(self, counted: list[str], pair: str, known: str, window: float, known_ttl: float) -> None:
        """Give back a reserved attempt after a correct secret: the pair's failures are forgotten,
        the global counters lose the one reserved, and the pair is remembered as known."""

        def run(s: Session) -> None:
            now = time.time()
            # rows are locked in the order reserve_login locks them (pair, username, address), one
            # statement each, so concurrent transactions on PostgreSQL can never deadlock
            s.execute(delete(LoginAttempt).where(LoginAttempt.key == pair))
            for key in counted:
                if key != pair:
                    s.execute(update(LoginAttempt).where(LoginAttempt.key == key, LoginAttempt.count > 0)
                              .values(count=LoginAttempt.count - 1))
            stmt = upsert_insert(s.connection(), LoginAttempt).values(key=known, window_start=now, count=0)
            s.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"window_start": now}))
            _prune_logins(s, now, window, known_ttl)

        await self._write(run)

    # ---- audit -----------------------------------------------------------------
    async def audit(
        self,
        actor: str,
        action: str,
        *,
        tenant: str | None = None,
        target: str | None = None,
        remote: str | None = None,
        detail: dict | None = None,
        tenant_generation: str | None = None,
    ) -> None:
        """Write one audit event. With ``tenant``, it is also bound to that tenant's generation:
        ``tenant_generation`` when given (a tenant already deleted), else the tenant's of that name now."""

        def run(s: Session) -> None:
            event = AuditEvent(
                actor=actor,
                action=action,
                tenant=tenant,
                target=target,
                remote=remote,
                detail=json.dumps(detail) if detail else None,
            )
            s.add(event)
            s.flush()
            generation = tenant_generation
            if generation is None and tenant is not None:
                row = s.execute(select(Tenant.id, Tenant.created_at).where(Tenant.name == tenant)).first()
                generation = _generation(*row) if row else None
            if generation is not None:
                s.add(AuditEventTenant(event_id=event.id, tenant_generation=generation))

        await self._write(run)

    async def audit_events(self, tenant: str | None = None, limit: int = 100, before: int | None = None,
                           generation: str | None = None) -> list[dict]:
        """Newest first; ``tenant`` filters by name (every incarnation), ``generation`` by one incarnation."""
        q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
        if tenant is not None:
            q = q.where(AuditEvent.tenant == tenant)
        if generation is not None:
            q = q.join(AuditEventTenant, AuditEventTenant.event_id == AuditEvent.id).where(
                AuditEventTenant.tenant_generation == generation)
        if before is not None:
            q = q.where(AuditEvent.id < before)

        def run(s: Session) -> list[dict]:
            return [
                {
                    "id": e.id,
                    "at": e.at,
                    "actor": e.actor,
                    "action": e.action,
                    "tenant": e.tenant,
                    "target": e.target,
                    "remote": e.remote,
                    "detail": json.loads(e.detail) if e.detail else None,
                }
                for e in s.execute(q).scalars().all()
            ]

        return await self._read(run)


_generation = tenant_generation


def _prune_logins(s: Session, now: float, window: float, known_ttl: float) -> None:
    """Delete failure counters whose window has passed and success marks older than known_ttl.

    Rows another transaction holds are skipped (``SKIP LOCKED`` on PostgreSQL; SQLite has one
    writer): pruning never waits for, or deadlocks with, a login in progress."""
    stale = or_(and_(LoginAttempt.window_start < now - window, LoginAttempt.key.not_like("ok:%")),
                LoginAttempt.window_start < now - max(window, known_ttl))
    victims = select(LoginAttempt.key).where(stale).limit(1000).with_for_update(skip_locked=True)
    s.execute(delete(LoginAttempt).where(LoginAttempt.key.in_(victims.scalar_subquery())))


def _in_session(conn: Connection, fn: Callable[[Session], T]) -> T:
    """Run ``fn`` with an ORM session on ``conn``; flushed before the connection commits."""
    with Session(bind=conn, expire_on_commit=False) as s:
        result = fn(s)
        s.flush()
        return result


_in_session.runs_argument = True  # a database span (registry.tracing) is named after ``fn``, not this adapter


# checked against for unknown users (as costly as a real check): a constant, bcrypt.hashpw(
# b"berth-dummy-password", bcrypt.gensalt()) made once, since hashing it at import cost every
# berth process (serve, gc, fsck, each admin command) a bcrypt round of 0.3-0.5 s at start-up
_DUMMY_HASH = "$2b$12$sL5Ux/7AFvkJx2iDY8fCaOo0iUPG6K5kdE0WhgYNW6p4boX7ZX3lS"
