"""SQL metadata schema (SQLAlchemy 2 declarative). docs/storage.md describes it."""
from __future__ import annotations

import time

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def now() -> float:
    return time.time()


def Name(length: int) -> String:  # noqa: N802 - reads as a column type
    """A name compared and sorted by code point on every database: the distribution spec's
    lexical order (catalog, tags/list) and ``last`` paging need it. SQLite compares bytes
    already; PostgreSQL would use the database's locale (en_US sorts ``B`` after ``a``)."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class Base(DeclarativeBase):
    pass


class Repository(Base):
    __tablename__ = "repositories"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Name(255), unique=True, nullable=False)
    created_at: Mapped[float] = mapped_column(default=now)


class Blob(Base):
    """A blob whose content is (being) stored by the content driver (global, deduplicated).

    A push *pins* the row (``last_used_at`` = now) before it places the content; garbage
    collection marks unlinked rows unused for its grace period (``deleting_at``), deletes
    their content, then the rows. A pin, link or mount refuses a marked row."""
    __tablename__ = "blobs"
    digest: Mapped[str] = mapped_column(String(140), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[float] = mapped_column(default=now)
    last_used_at: Mapped[float] = mapped_column(default=now, nullable=False)  # commit, link, mount
    deleting_at: Mapped[float | None] = mapped_column()  # set by garbage collection; NULL = live


class RepositoryBlob(Base):
    """Which blobs a repository may serve (pushed or mounted there)."""
    __tablename__ = "repository_blobs"
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True)
    digest: Mapped[str] = mapped_column(ForeignKey("blobs.digest"), primary_key=True)
    created_at: Mapped[float] = mapped_column(default=now)
    __table_args__ = (Index("ix_repository_blobs_digest", "digest"),)


class Manifest(Base):
    __tablename__ = "manifests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False)
    digest: Mapped[str] = mapped_column(String(140), nullable=False)
    media_type: Mapped[str] = mapped_column(String(255), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # the bytes exactly as pushed
    artifact_type: Mapped[str | None] = mapped_column(Text)  # any string a manifest gives (no length limit)
    annotations: Mapped[str | None] = mapped_column(Text)  # JSON object, for referrers
    subject: Mapped[str | None] = mapped_column(String(140))  # digest of the subject, if any
    created_at: Mapped[float] = mapped_column(default=now)
    __table_args__ = (
        UniqueConstraint("repository_id", "digest"),
        Index("ix_manifests_subject", "repository_id", "subject"),
    )


class ManifestReference(Base):
    """What a manifest points at: blobs (config, layers) or child manifests (index entries)."""
    __tablename__ = "manifest_references"
    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(140), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # "blob" | "manifest"
    __table_args__ = (Index("ix_manifest_references_digest", "digest", "kind"),)


class Tag(Base):
    __tablename__ = "tags"
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(Name(128), primary_key=True)
    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifests.id", ondelete="CASCADE"), nullable=False)
    updated_at: Mapped[float] = mapped_column(default=now)


class Upload(Base):
    """An upload session. Its bytes are in the content driver; everything a replica needs to
    continue it is here: the committed offset, the running SHA-256 state at that offset, the
    driver's state, and the lease of the request writing to it (registry.service.uploads)."""
    __tablename__ = "uploads"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    repository: Mapped[str] = mapped_column(String(255), nullable=False)
    started_at: Mapped[float] = mapped_column(default=now)
    updated_at: Mapped[float] = mapped_column(default=now)
    offset: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)  # bytes committed
    hash_state: Mapped[bytes | None] = mapped_column(LargeBinary)  # SHA-256 state at `offset`, or NULL
    driver_state: Mapped[str | None] = mapped_column(Text)  # JSON, opaque (ContentDriver.append)
    lease_token: Mapped[str | None] = mapped_column(String(32))  # the request writing to it, if any
    lease_expires_at: Mapped[float | None] = mapped_column()
    # who opened the session (issue 7: concurrent sessions per principal, registry.limits)
    principal: Mapped[str | None] = mapped_column(String(160), index=True)


# ---- principals (issue 3): tenants, people, robot accounts, audit ---------------------


class Tenant(Base):
    """A tenant owns every repository named ``<tenant>/…``."""
    __tablename__ = "tenants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Name(64), unique=True, nullable=False)
    public: Mapped[bool] = mapped_column(default=False)  # anonymous pull allowed
    created_at: Mapped[float] = mapped_column(default=now)
    # storage quota (issue 7): bytes of distinct blobs and manifests its repositories may hold;
    # NULL = unlimited (storage.catalog enforces it when a blob or manifest is linked)
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(Name(128), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(128), nullable=False)  # bcrypt
    is_admin: Mapped[bool] = mapped_column(default=False)
    # bumped whenever what was granted may no longer hold (password change, membership
    # removed, deletion): tokens carry the version they were issued at
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[float] = mapped_column(default=now)


class Membership(Base):
    __tablename__ = "memberships"
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False)  # reader | writer | owner


class Robot(Base):
    """A tenant's robot account, username ``<tenant>+<name>``."""
    __tablename__ = "robots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(Name(64), nullable=False)
    username: Mapped[str] = mapped_column(Name(140), unique=True, nullable=False)
    secret_hash: Mapped[str] = mapped_column(String(128), nullable=False)  # bcrypt
    actions: Mapped[str] = mapped_column(String(64), nullable=False)  # comma-separated: pull,push,delete
    repositories: Mapped[str | None] = mapped_column(Text)  # JSON list of globs inside the tenant, or NULL = all
    expires_at: Mapped[float | None] = mapped_column()
    version: Mapped[int] = mapped_column(default=1)  # bumped on rotate
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(default=now)
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(default=now, index=True)
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    tenant: Mapped[str | None] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(Text)
    remote: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)  # JSON


class LoginAttempt(Base):
    """Failed-login counters every replica shares (registry.auth, docs/auth.md "Logins").

    One row per counter: ``p:`` a (username, client address) pair, ``u:`` a username, ``a:``
    an address, each the failures in the window that began at ``window_start``; ``ok:`` rows
    remember when a pair last logged in (``window_start``). Keys are SHA-256 digests, so no
    attempted username (often a mistyped password) is stored.
    """
    __tablename__ = "login_attempts"
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    window_start: Mapped[float] = mapped_column(Float, nullable=False, index=True)
    count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class AuditEventTenant(Base):
    """Which incarnation of a tenant an audit event belongs to: a tenant's name is reused when it is
    deleted and created again, its generation (``t<id>:<created_at>``) never is. Owners see only
    the events of their tenant's current generation."""
    __tablename__ = "audit_event_tenants"
    event_id: Mapped[int] = mapped_column(ForeignKey("audit_events.id", ondelete="CASCADE"), primary_key=True)
    tenant_generation: Mapped[str] = mapped_column(String(80), nullable=False, index=True)


# ---- replicas (issue 6): shared signing keys, leases -----------------------------------


class SigningKey(Base):
    """A token signing key shared by every replica (registry.auth.keys).

    The newest live generation signs; every key whose ``not_after`` is unset or in the
    future verifies. ``generation`` is unique: replicas starting at once on an empty table
    all try to insert generation 1 and exactly one wins, the others re-read it.
    """
    __tablename__ = "signing_keys"
    generation: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kid: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)  # RFC 7638 thumbprint
    algorithm: Mapped[str] = mapped_column(String(16), nullable=False)
    private_pem: Mapped[str] = mapped_column(Text, nullable=False)  # PKCS#8, unencrypted
    created_at: Mapped[float] = mapped_column(default=now)
    not_after: Mapped[float | None] = mapped_column()  # set on rotation: verification stops then


class Lease(Base):
    """A named lease (storage.leases): at most one holder until ``expires_at``."""
    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128), nullable=False)
    expires_at: Mapped[float] = mapped_column(nullable=False)  # database clock, epoch seconds
