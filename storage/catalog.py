"""Repository metadata: repositories, blob links, manifests, tags, referrers, uploads.

Every query the distribution API needs, behind one class. Each public method runs
one synchronous SQLAlchemy Core function in one database round trip through
:class:`storage.db.Database` (a single transaction for writes).
"""
from __future__ import annotations

import collections
import dataclasses
import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, delete, exists, func, select, text, update

from . import digest as digests
from .db import Database, begin_immediate, execute_direct, upsert_insert
from .errors import (
    BlobDeleting,
    BlobInUse,
    BlobUnknown,
    ManifestBlobUnknown,
    ManifestInUse,
    ManifestUnknown,
    NameUnknown,
    QuotaExceeded,
    TooManyUploads,
    UploadBusy,
    UploadOutOfOrder,
    UploadUnknown,
)
from .manifests import ParsedManifest
from .models import Blob, Manifest, ManifestReference, Repository, RepositoryBlob, Tag, Tenant, Upload


@dataclass(frozen=True)
class UploadRecord:
    """What the database knows of an upload session (everything a replica needs to continue it)."""
    id: str
    repository: str
    offset: int
    hash_state: bytes | None
    driver_state: dict
    started_at: float
    updated_at: float
    room: tuple[str, int, int] | None = None  # claim_upload(quota=True): quota_room, read in the same transaction
    pinned: bool = False  # claim_upload(pin=…): the blob's row was pinned in the claim's transaction


@dataclass(frozen=True)
class ManifestRecord:
    digest: str
    media_type: str
    content: bytes

    @property
    def size(self) -> int:
        return len(self.content)


def _insert_ignore(conn: Connection, model, **values) -> int:
    """INSERT … ON CONFLICT DO NOTHING; the number of rows inserted (0 or 1).

    On PostgreSQL a concurrent transaction inserting the same key makes this wait for
    it, then do nothing: concurrent pushes of the same blob, manifest or repository
    never fail on a unique constraint."""
    return conn.execute(upsert_insert(conn, model).values(**values).on_conflict_do_nothing()).rowcount


def _unknown_repository(name: str) -> NameUnknown:
    return NameUnknown(f"repository {name!r} not known to registry", {"name": name})


# The statements of the hottest paths (every pull and push asks them), built once: building
# a SQLAlchemy statement costs more CPU than SQLite takes to run it.
_REPO_ID = select(Repository.id).where(Repository.name == bindparam("name"))
_BLOB_SIZE = (
    select(Blob.size)
    .join(RepositoryBlob, RepositoryBlob.digest == Blob.digest)
    .join(Repository, Repository.id == RepositoryBlob.repository_id)
    .where(Repository.name == bindparam("name"), Blob.digest == bindparam("digest"))
)
_MANIFEST_COLUMNS = (Manifest.digest, Manifest.media_type, Manifest.content)
_MANIFEST_BY_DIGEST = (
    select(*_MANIFEST_COLUMNS)
    .join(Repository, Repository.id == Manifest.repository_id)
    .where(Repository.name == bindparam("name"), Manifest.digest == bindparam("reference"))
)
_MANIFEST_BY_TAG = (
    select(*_MANIFEST_COLUMNS)
    .join(Tag, Tag.manifest_id == Manifest.id)
    .join(Repository, Repository.id == Tag.repository_id)
    .where(Repository.name == bindparam("name"), Tag.name == bindparam("reference"))
)
_UPLOAD_ROW = select(
    Upload.id, Upload.repository, Upload.offset, Upload.hash_state, Upload.driver_state,
    Upload.started_at, Upload.updated_at, Upload.lease_token, Upload.lease_expires_at,
).where(Upload.id == bindparam("id"))


# a row of _UPLOAD_ROW as execute_direct answers it on SQLite (a plain tuple), with its names
_UploadRow = collections.namedtuple("_UploadRow", [c.key for c in _UPLOAD_ROW.selected_columns])


def _upload_row(conn: Connection, upload_id: str):
    row = execute_direct(conn, _UPLOAD_ROW, {"id": upload_id}).first()
    return row if row is None or hasattr(row, "_fields") else _UploadRow._make(row)


_LEASE_FREE = Upload.lease_token.is_(None) | Upload.lease_expires_at.is_(None) | (Upload.lease_expires_at < bindparam("p_now"))
_CLAIM = (
    update(Upload)
    .where(Upload.id == bindparam("p_id"), Upload.repository == bindparam("p_name"), _LEASE_FREE)
    .values(lease_token=bindparam("p_token"), lease_expires_at=bindparam("p_expires_at"))
)
_CLAIM_AT = _CLAIM.where(Upload.offset == bindparam("p_start"))
_TAKE_OVER = (
    update(Upload)
    .where(Upload.id == bindparam("p_id"), Upload.repository == bindparam("p_name"),
           Upload.lease_token == bindparam("p_holder"))
    .values(lease_token=bindparam("p_token"), lease_expires_at=bindparam("p_expires_at"))
)
_TAKE_OVER_AT = _TAKE_OVER.where(Upload.offset == bindparam("p_start"))
_HELD = (Upload.id == bindparam("p_id")) & (Upload.lease_token == bindparam("p_token"))
_RENEW = update(Upload).where(_HELD).values(lease_expires_at=bindparam("p_expires_at"), updated_at=bindparam("p_now"))
_SAVE = update(Upload).where(_HELD).values(
    offset=bindparam("p_offset"), hash_state=bindparam("p_hash_state"), driver_state=bindparam("p_driver_state"),
    updated_at=bindparam("p_now"), lease_token=None, lease_expires_at=None,
)
_RELEASE = update(Upload).where(_HELD).values(lease_token=None, lease_expires_at=None)
_CREATE_UPLOAD = Upload.__table__.insert().values(
    id=bindparam("p_id"), repository=bindparam("p_name"), started_at=bindparam("p_now"), updated_at=bindparam("p_now"),
    offset=0, hash_state=bindparam("p_hash_state"), driver_state=bindparam("p_driver_state"),
    principal=bindparam("p_principal"),
)
# the principal's sessions the sweeper has not removed yet, and when the oldest was last written
_OPEN_UPLOADS = select(func.count(), func.min(Upload.updated_at)).where(
    Upload.principal == bindparam("p_principal"), Upload.updated_at >= bindparam("p_since")
)
_DELETE_UPLOAD = delete(Upload).where(Upload.id == bindparam("p_id"))


_MANIFEST_ID_LOCKED = (
    select(Manifest.id)
    .where(Manifest.repository_id == bindparam("rid"), Manifest.digest == bindparam("digest"))
    .with_for_update(read=True, key_share=True)
)


def _repo_id(conn: Connection, name: str) -> int | None:
    return execute_direct(conn, _REPO_ID, {"name": name}).scalar()


def write_lock(conn: Connection) -> None:
    """Hold the database's write lock from here to the end of this write transaction.

    SQLite (pysqlite) opens a transaction only at the first INSERT/UPDATE/DELETE: the reads
    before it see whatever another process (a second ``berth serve``, ``berth gc``, the admin
    CLI) commits meanwhile, and a check made by them no longer holds when the write comes.
    ``BEGIN IMMEDIATE`` takes the lock first, so every read after it is part of the
    transaction. (In one process writes are serialised anyway.) PostgreSQL locks rows
    instead (``FOR KEY SHARE`` / ``FOR UPDATE`` where a check must hold)."""
    if conn.dialect.name == "sqlite" and not conn.connection.dbapi_connection.in_transaction:
        begin_immediate(conn)


_TENANT_KEY_SHARE = (
    select(Tenant.id).where(Tenant.name == bindparam("p_tenant")).with_for_update(read=True, key_share=True)
)


def _check_tenant(conn: Connection, name: str) -> None:
    """The repository's tenant exists, and stays until this transaction ends: its row is
    locked ``FOR KEY SHARE`` (PostgreSQL), so a tenant deletion (which locks it ``FOR UPDATE``
    first, storage.principals) either committed before — NameUnknown here — or waits for this
    push and then deletes what it added. Closes the race of a push into a tenant being
    force-deleted (issue 7): never a repository, link or manifest of a tenant that is gone."""
    tenant = name.split("/", 1)[0]
    row = execute_direct(conn, _TENANT_KEY_SHARE, {"p_tenant": tenant}).first()
    if row is None:
        raise NameUnknown(f"repository {name!r} belongs to no tenant (deleted?)", {"name": name})


def _ensure_repo(conn: Connection, name: str, tenants: bool = False) -> int:
    write_lock(conn)
    if tenants:
        _check_tenant(conn, name)
    rid = _repo_id(conn, name)
    if rid is None:
        _insert_ignore(conn, Repository, name=name, created_at=time.time())
        rid = _repo_id(conn, name)
    return rid


def _existing_repo(conn: Connection, name: str) -> int:
    rid = _repo_id(conn, name)
    if rid is None:
        raise _unknown_repository(name)
    return rid


def _pin_statement(dialect: str, steal: bool):
    from sqlalchemy.dialects import postgresql, sqlite  # noqa: PLC0415

    insert = {"sqlite": sqlite, "postgresql": postgresql}[dialect].insert
    live = Blob.deleting_at.is_(None)
    if steal:
        live = live | (Blob.deleting_at < bindparam("p_steal_before"))
    return (
        insert(Blob)
        .values(digest=bindparam("p_digest"), size=bindparam("p_size"), created_at=bindparam("p_now"),
                last_used_at=bindparam("p_hold"))
        .on_conflict_do_update(
            index_elements=[Blob.digest], set_={"last_used_at": bindparam("p_hold"), "deleting_at": None}, where=live
        )
    )


_PIN: dict[tuple[str, bool], object] = {}
# A pin dates ``last_used_at`` this far ahead: the row is the push's until its link (which sets
# ``last_used_at`` to now) however short the collector's grace — with ``--grace 0`` a collector
# would otherwise mark a row pinned a moment ago, delete the content the push just placed, and
# the link would fail. A push that dies between pin and link leaves a row gc takes this much
# later (as long as storage.gc.ORPHAN_UPLOAD_IDLE for the upload bytes it leaves).
PIN_HOLD = 15 * 60.0


def _pin(conn: Connection, digest: str, size: int, steal_before: float | None = None) -> bool:
    """Insert the blob row or mark the existing one in use (``last_used_at`` = now + ``PIN_HOLD``, until
    the link); False, changing
    nothing, while garbage collection has it marked for deletion (``deleting_at``), unless that
    mark is older than ``steal_before`` (a collector that died midway): then it is cleared.

    One statement, so it is atomic on both databases; on PostgreSQL it also locks the row until
    the transaction ends, so a collector's mark waits for it, then sees the fresh
    ``last_used_at`` and leaves the row alone."""
    key = (conn.dialect.name, steal_before is not None)
    stmt = _PIN.get(key)
    if stmt is None:
        if key[0] not in ("sqlite", "postgresql"):
            raise RuntimeError(f"unsupported database {key[0]!r}: use SQLite or PostgreSQL")
        stmt = _PIN[key] = _pin_statement(*key)
    now = time.time()
    params = {"p_digest": digest, "p_size": size, "p_now": now, "p_hold": now + PIN_HOLD}
    if steal_before is not None:
        params["p_steal_before"] = steal_before
    return execute_direct(conn, stmt, params).rowcount == 1


_TOUCH = (
    update(Blob)
    .where(Blob.digest == bindparam("p_digest"), Blob.deleting_at.is_(None))
    .values(last_used_at=bindparam("p_now"))
)


def _touch(conn: Connection, digest: str) -> bool:
    """Mark a live blob row used now; False when there is none, or garbage collection has
    marked it. On PostgreSQL the row stays locked until the transaction ends, so a
    collector's mark waits, then sees the fresh ``last_used_at``."""
    return execute_direct(conn, _TOUCH, {"p_digest": digest, "p_now": time.time()}).rowcount == 1


def _hold_link(conn: Connection, rid: int, digest: str) -> None:
    """Insert or refresh a push's (or mount's) link, dated ``PIN_HOLD`` ahead: the image it
    belongs to has not had its manifest PUT yet, and garbage collection drops links no manifest
    references only once they are older than its grace — with grace 0 it would drop the link
    between the blob's 201 and the manifest's PUT. The manifest PUT dates the links it
    references to now, so a deleted image's links go ``grace`` after its last PUT, as before."""
    stmt = _HOLD_LINK.get(conn.dialect.name)
    if stmt is None:  # built once per dialect: building it cost more than running it
        insert = upsert_insert(conn, RepositoryBlob).values(
            repository_id=bindparam("p_rid"), digest=bindparam("p_digest"), created_at=bindparam("p_at"))
        stmt = _HOLD_LINK[conn.dialect.name] = insert.on_conflict_do_update(
            index_elements=[RepositoryBlob.repository_id, RepositoryBlob.digest],
            set_={"created_at": insert.excluded.created_at})
    execute_direct(conn, stmt, {"p_rid": rid, "p_digest": digest, "p_at": time.time() + PIN_HOLD})


_HOLD_LINK: dict[str, object] = {}


def _link(conn: Connection, name: str, digest: str, size: int, tenants: bool = False) -> None:
    _check_quota(conn, name, digest, size)
    rid = _ensure_repo(conn, name, tenants)
    # only a live row is linked: one garbage collection has marked (or already deleted, its
    # content with it) never is. The push pinned the row before it placed the content.
    if not _touch(conn, digest):
        raise BlobDeleting(detail={"digest": digest})
    _hold_link(conn, rid, digest)


# ---- tenant storage quotas (issue 7) ---------------------------------------------------
#
# A tenant's usage is the size of every distinct blob linked in any of its repositories plus
# every distinct manifest stored there: a blob (or manifest) held by ten repositories of the
# tenant counts once. It is computed by one query when needed, never kept as a counter, so
# nothing (unlink, garbage collection, a deleted repository) has to keep one up to date.
#
# The repositories of tenant ``t`` are the names in [``t/``, ``t0``): '0' is the code point
# after '/', and names compare by code point on both databases (collation C on PostgreSQL), so
# this is an index range scan and needs no LIKE escaping.


def tenant_of(name: str) -> str | None:
    """The tenant owning repository ``name`` (its first component), None for a one-component name."""
    tenant, sep, _ = name.partition("/")
    return tenant if sep else None


def _in_tenant():
    return (Repository.name >= bindparam("p_lo")) & (Repository.name < bindparam("p_hi"))


def _tenant_params(tenant: str) -> dict:
    return {"p_lo": f"{tenant}/", "p_hi": f"{tenant}0", "p_tenant": tenant}


_LINKED_IN_TENANT = (
    select(RepositoryBlob.digest).join(Repository, Repository.id == RepositoryBlob.repository_id).where(_in_tenant())
)
_MANIFESTS_IN_TENANT = (
    select(Manifest.digest, Manifest.size).join(Repository, Repository.id == Manifest.repository_id)
    .where(_in_tenant()).distinct().subquery()
)
_USAGE = select(
    select(func.coalesce(func.sum(Blob.size), 0)).where(Blob.digest.in_(_LINKED_IN_TENANT)).scalar_subquery()
    + select(func.coalesce(func.sum(_MANIFESTS_IN_TENANT.c.size), 0)).scalar_subquery()
)
_BLOB_IN_TENANT = _LINKED_IN_TENANT.where(RepositoryBlob.digest == bindparam("p_digest")).limit(1)
_MANIFEST_IN_TENANT = (
    select(Manifest.digest).join(Repository, Repository.id == Manifest.repository_id)
    .where(_in_tenant(), Manifest.digest == bindparam("p_digest")).limit(1)
)
_QUOTA = select(Tenant.quota_bytes).where(Tenant.name == bindparam("p_tenant"))
# an UPDATE that changes nothing but locks the tenant's row until the transaction ends: on
# PostgreSQL a second push of the tenant waits here, then sees the first one's links; on
# SQLite, as the transaction's first write, it takes the database's write lock (processes
# sharing one file, `--workers`) before the usage is read
_LOCK_TENANT = (
    update(Tenant).where(Tenant.name == bindparam("p_tenant"))
    .values(quota_bytes=Tenant.quota_bytes).returning(Tenant.quota_bytes)
)


def _usage(conn: Connection, tenant: str) -> int:
    return int(conn.execute(_USAGE, _tenant_params(tenant)).scalar() or 0)


def _quota_room(conn: Connection, tenant: str) -> tuple[int, int] | None:
    """(quota, usage) of a tenant with a quota, else None. Reads only (no lock)."""
    quota = execute_direct(conn, _QUOTA, {"p_tenant": tenant}).scalar()
    if quota is None:
        return None
    return int(quota), _usage(conn, tenant)


def _room_for(conn: Connection, name: str, digest: str | None) -> tuple[str, int, int] | None:
    """Catalog.quota_room's answer: (tenant, quota, usage), or None (no quota, or ``digest`` is
    already the tenant's)."""
    tenant = tenant_of(name)
    if tenant is None:
        return None
    room = _quota_room(conn, tenant)
    if room is None:
        return None
    if digest is not None:
        params = {**_tenant_params(tenant), "p_digest": digest}
        if execute_direct(conn, _BLOB_IN_TENANT, params).first() is not None:
            return None
    return (tenant, *room)


def _check_quota(conn: Connection, name: str, digest: str, size: int, *, manifest: bool = False) -> None:
    """Inside the transaction that links ``digest`` (``size`` bytes) into repository ``name``,
    before anything is written: raise QuotaExceeded when the tenant has a quota and the content,
    new to the tenant, would take its usage past it. Content the tenant already holds adds
    nothing and always passes (even over a quota lowered since). Must run first in the
    transaction, so the tenant's row is locked before any other row (one lock order)."""
    tenant = tenant_of(name)
    if tenant is None:
        return
    write_lock(conn)  # SQLite: the reads below belong to this write transaction (several processes)
    params = _tenant_params(tenant)
    if execute_direct(conn, _QUOTA, params).scalar() is None:
        return  # no quota: no lock, no usage query
    params["p_digest"] = digest
    if conn.execute(_MANIFEST_IN_TENANT if manifest else _BLOB_IN_TENANT, params).first() is not None:
        return
    quota = conn.execute(_LOCK_TENANT, params).scalar()
    if quota is None:  # the quota was removed meanwhile
        return
    usage = _usage(conn, tenant)
    if usage + size > quota:
        raise QuotaExceeded(tenant, int(quota), usage, size)


# Values per statement. A manifest under the 4 MiB limit can name ~35,000 digests: one
# statement for all of them would exceed PostgreSQL's 32,767 bind parameters (SQLite's
# 32,766 on older builds). Every list a request controls is cut into batches of this size.
_BATCH = 5000


def _batches(items: list, size: int = _BATCH):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _present(conn: Connection, column, where, digests: list[str]) -> set[str]:
    """Which of ``digests`` ``column`` holds among the rows matching ``where``."""
    have: set[str] = set()
    for batch in _batches(digests):
        have.update(conn.execute(select(column).where(where, column.in_(batch))).scalars())
    return have


def _set_tag(conn: Connection, rid: int, tag: str, manifest_id: int) -> None:
    """Point ``tag`` at the manifest, creating it or moving it, in one statement (concurrent
    pushes of the same tag both succeed; the last to commit wins)."""
    stmt = upsert_insert(conn, Tag).values(repository_id=rid, name=tag, manifest_id=manifest_id, updated_at=time.time())
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[Tag.repository_id, Tag.name],
            set_={"manifest_id": stmt.excluded.manifest_id, "updated_at": stmt.excluded.updated_at},
        )
    )


class Catalog:
    def __init__(self, db: Database, *, tenants: bool = False) -> None:
        """``tenants``: every repository belongs to an existing tenant (its first name
        component); writes that add to a repository check it in their transaction (auth on)."""
        self.db = db
        self.tenants = tenants

    # ---- repositories --------------------------------------------------------
    async def repositories(
        self, n: int | None = None, last: str | None = None, visible: Callable[[str], bool] | None = None
    ) -> list[str]:
        """Repository names in lexical order after ``last``, at most ``n``, filtered by ``visible``."""

        def run(conn: Connection) -> list[str]:
            out: list[str] = []
            after = last
            while n is None or len(out) < n:
                q = select(Repository.name).order_by(Repository.name).limit(1000)
                if after is not None:
                    q = q.where(Repository.name > after)
                names = conn.execute(q).scalars().all()
                if not names:
                    break
                for name in names:
                    if visible is None or visible(name):
                        out.append(name)
                        if n is not None and len(out) >= n:
                            break
                after = names[-1]
            return out

        return await self.db.read(run)

    # ---- blobs ---------------------------------------------------------------
    async def blob_size(self, name: str, digest: str) -> int | None:
        """Size of a blob the repository may serve, or None."""
        params = {"name": name, "digest": digest}
        return await self.db.read(lambda c: execute_direct(c, _BLOB_SIZE, params).scalar())

    # ---- quotas --------------------------------------------------------------
    async def tenant_usage(self, tenant: str) -> int:
        """Bytes of distinct blobs and manifests held by the tenant's repositories."""
        return await self.db.read(_usage, tenant)

    async def quota_room(self, name: str, digest: str | None = None) -> tuple[str, int, int] | None:
        """(tenant, quota, usage) when the tenant owning ``name`` has a quota, for refusing a
        push early; None without a quota, or when ``digest`` is already the tenant's (it adds
        nothing). Advisory: the check that counts runs when the content is linked."""
        if tenant_of(name) is None:
            return None
        return await self.db.read(_room_for, name, digest)

    async def pin_blob(self, digest: str, size: int, steal_before: float | None = None) -> bool:
        """Before placing content: insert or refresh the blob row; False while garbage
        collection is deleting it (see ``_pin``)."""
        return await self.db.write(_pin, digest, size, steal_before)

    async def link_blob(self, name: str, digest: str, size: int, *, finished_upload: str | None = None) -> None:
        """Record that ``name`` may serve the blob ``digest``, whose row a push pinned before
        placing its content; optionally end the upload session that produced it, in the same
        transaction. Raises BlobDeleting when the row is gone or garbage collection marked it."""

        def run(conn: Connection) -> None:
            _link(conn, name, digest, size, self.tenants)
            if finished_upload is not None:
                execute_direct(conn, _DELETE_UPLOAD, {"p_id": finished_upload})

        await self.db.write(run)

    async def mount_blob(self, source: str, name: str, digest: str) -> int | None:
        """Link ``digest`` into ``name`` when ``source`` may serve it and garbage collection has
        not marked it; its size, or None (then the client uploads it)."""

        def run(conn: Connection) -> int | None:
            size = execute_direct(conn, _BLOB_SIZE, {"name": source, "digest": digest}).scalar()
            if size is None:
                return None
            _check_quota(conn, name, digest, size)
            rid = _ensure_repo(conn, name, self.tenants)
            if not _touch(conn, digest):  # marked, or deleted since the size was read
                return None
            _hold_link(conn, rid, digest)
            return size

        return await self.db.write(run)

    async def unlink_blob(self, name: str, digest: str) -> None:
        """Remove a blob from a repository; refused while a manifest there references it."""

        def run(conn: Connection) -> None:
            rid = _existing_repo(conn, name)
            linked = conn.execute(
                select(RepositoryBlob.digest).where(RepositoryBlob.repository_id == rid, RepositoryBlob.digest == digest)
            ).scalar()
            if linked is None:
                raise BlobUnknown(detail={"digest": digest})
            user = conn.execute(
                select(Manifest.digest)
                .join(ManifestReference, ManifestReference.manifest_id == Manifest.id)
                .where(
                    Manifest.repository_id == rid,
                    ManifestReference.digest == digest,
                    ManifestReference.kind == "blob",
                )
                .limit(1)
            ).scalar()
            if user is not None:
                raise BlobInUse(
                    f"blob is referenced by manifest {user}; delete that manifest first",
                    {"digest": digest, "manifest": user},
                )
            conn.execute(
                delete(RepositoryBlob).where(RepositoryBlob.repository_id == rid, RepositoryBlob.digest == digest)
            )

        await self.db.write(run)

    async def unlink_unreferenced(self, before: float) -> int:
        """Drop repository→blob links no manifest of that repository references, made before
        ``before`` (epoch seconds): what deleted or never-completed images leave behind.
        Younger links are kept: a push links its blobs before it puts the manifest."""
        referenced = (
            select(ManifestReference.digest)
            .join(Manifest, Manifest.id == ManifestReference.manifest_id)
            .where(
                Manifest.repository_id == RepositoryBlob.repository_id,
                ManifestReference.digest == RepositoryBlob.digest,
                ManifestReference.kind == "blob",
            )
        )
        stmt = delete(RepositoryBlob).where(RepositoryBlob.created_at < before, ~exists(referenced))
        return await self.db.write(lambda c: c.execute(stmt).rowcount or 0)

    async def mark_unused_blobs(self, used_before: float, mark: float, stale_before: float, limit: int = 500) -> list[tuple[str, int]]:
        """Garbage collection, step 1 of 3: mark (``deleting_at = mark``) up to ``limit`` blob
        rows no repository links and nothing used since ``used_before``, and marks older than
        ``stale_before`` (a collector that died midway); return their (digest, size). One
        conditional UPDATE: a concurrent pin or link either precedes it (the row is fresh or
        linked, so it is skipped) or fails on the mark."""
        def eligible(blob):
            return (
                ~exists().where(RepositoryBlob.digest == blob.digest),
                blob.last_used_at < used_before,
                blob.deleting_at.is_(None) | (blob.deleting_at < stale_before),
            )

        inner = Blob.__table__.alias("candidate")
        candidates = select(inner.c.digest).where(*eligible(inner.c)).limit(limit)
        stmt = (
            update(Blob)
            .where(Blob.digest.in_(candidates), *eligible(Blob))
            .values(deleting_at=mark)
            .returning(Blob.digest, Blob.size)
        )
        return await self.db.write(lambda c: [(d, n) for d, n in c.execute(stmt).all()])

    async def mark_orphans(self, digests: list[str], mark: float) -> list[str]:
        """Content with no blob row (a crash between placing and linking, or a lost row): insert
        rows already marked, so that a push of the same digest waits for the collector rather
        than linking content about to go. The digests marked (those still without a row)."""

        def run(conn: Connection) -> list[str]:
            out = []
            for digest in digests:
                stmt = upsert_insert(conn, Blob).values(
                    digest=digest, size=0, created_at=mark, last_used_at=0, deleting_at=mark
                )
                if conn.execute(stmt.on_conflict_do_nothing()).rowcount:
                    out.append(digest)
            return out

        return await self.db.write(run)

    async def forget_blobs(self, digests: list[str], mark: float) -> int:
        """Step 3: drop the rows this collector marked (``deleting_at = mark``) once their content is gone."""
        if not digests:
            return 0
        stmt = delete(Blob).where(Blob.digest.in_(digests), Blob.deleting_at == mark)
        return await self.db.write(lambda c: c.execute(stmt).rowcount or 0)

    async def known_blobs(self) -> set[str]:
        return await self.db.read(lambda c: set(c.execute(select(Blob.digest)).scalars().all()))

    # ---- manifests -----------------------------------------------------------
    async def put_manifest(
        self, name: str, digest: str, parsed: ParsedManifest, content: bytes, tag: str | None
    ) -> None:
        """Store a manifest (and move ``tag`` to it) after checking what it references.

        Raises ManifestBlobUnknown, listing what is missing, when a referenced blob
        or child manifest is not in the repository. Nothing is written then.
        """

        def run(conn: Connection) -> None:
            _check_quota(conn, name, digest, len(content), manifest=True)
            rid = _ensure_repo(conn, name, self.tenants)
            missing: list[str] = []
            if parsed.blobs:
                # an UPDATE, not a SELECT: it locks the links until this transaction ends and makes
                # them young, so garbage collection's removal of unreferenced links (a DELETE on
                # `created_at < cutoff`) either happened before (the link is missing here) or
                # re-checks the row after this commit and keeps it (PostgreSQL, READ COMMITTED);
                # batched like _present (PostgreSQL binds at most 32,767 parameters)
                have = set()
                now = time.time()
                for batch in _batches(parsed.blobs):
                    have.update(
                        conn.execute(
                            update(RepositoryBlob)
                            .where(RepositoryBlob.repository_id == rid, RepositoryBlob.digest.in_(batch))
                            .values(created_at=now)
                            .returning(RepositoryBlob.digest)
                        ).scalars()
                    )
                missing += [d for d in parsed.blobs if d not in have]
            if parsed.manifests:
                # lock the children (FOR KEY SHARE; SQLite: the write lock taken above): a
                # concurrent delete of one of them locks it FOR UPDATE before it looks for
                # parents, so it either went first (missing here) or waits for this index and
                # then finds it and refuses (issue 7: never an index whose child is gone)
                have = set()
                for batch in _batches(parsed.manifests):
                    have.update(conn.execute(
                        select(Manifest.digest)
                        .where(Manifest.repository_id == rid, Manifest.digest.in_(batch))
                        .with_for_update(read=True, key_share=True)
                    ).scalars())
                missing += [d for d in parsed.manifests if d not in have]
            if missing:
                # raising rolls the transaction back: not even the repository row stays
                raise ManifestBlobUnknown(
                    f"manifest references {len(missing)} unknown blob(s) or manifest(s): {', '.join(missing[:5])}",
                    {"missing": missing},
                )
            created = _insert_ignore(
                conn,
                Manifest,
                repository_id=rid,
                digest=digest,
                media_type=parsed.media_type,
                size=len(content),
                content=content,
                artifact_type=parsed.artifact_type,
                annotations=json.dumps(parsed.annotations) if parsed.annotations else None,
                subject=parsed.subject.digest if parsed.subject else None,
                created_at=time.time(),
            )
            # locked FOR KEY SHARE: garbage collection deletes an untagged manifest only after
            # locking it FOR UPDATE and re-checking its tags, so it never drops the row this
            # PUT is tagging (or listing); if it went just before, insert it again
            mid = conn.execute(_MANIFEST_ID_LOCKED, {"rid": rid, "digest": digest}).scalar()
            if mid is None:
                created = _insert_ignore(
                    conn, Manifest, repository_id=rid, digest=digest, media_type=parsed.media_type,
                    size=len(content), content=content, artifact_type=parsed.artifact_type,
                    annotations=json.dumps(parsed.annotations) if parsed.annotations else None,
                    subject=parsed.subject.digest if parsed.subject else None, created_at=time.time(),
                )
                mid = conn.execute(_MANIFEST_ID_LOCKED, {"rid": rid, "digest": digest}).scalar()
            if created:
                refs = [{"manifest_id": mid, "digest": d, "kind": "blob"} for d in parsed.blobs]
                refs += [{"manifest_id": mid, "digest": d, "kind": "manifest"} for d in parsed.manifests]
                for batch in _batches(refs):
                    conn.execute(ManifestReference.__table__.insert(), batch)
            if tag is not None:
                _set_tag(conn, rid, tag, mid)

        await self.db.write(run)

    async def get_manifest(self, name: str, reference: str) -> ManifestRecord:
        """A manifest by tag or digest; NameUnknown / ManifestUnknown otherwise."""
        q = _MANIFEST_BY_DIGEST if digests.looks_like_digest(reference) else _MANIFEST_BY_TAG

        def run(conn: Connection) -> ManifestRecord:
            row = conn.execute(q, {"name": name, "reference": reference}).first()
            if row is not None:
                return ManifestRecord(row[0], row[1], row[2])
            if _repo_id(conn, name) is None:  # only on a miss: say which of the two is unknown
                raise _unknown_repository(name)
            raise ManifestUnknown(f"manifest {reference!r} unknown in {name!r}", {"name": name, "reference": reference})

        return await self.db.read(run)

    async def delete_manifest(self, name: str, digest: str) -> None:
        """Delete a manifest and every tag pointing at it.

        Refused (ManifestInUse) while an image index in the same repository lists it.
        """

        def run(conn: Connection) -> None:
            write_lock(conn)  # the parent check below must still hold when the row goes
            rid = _existing_repo(conn, name)
            # lock the row first, then look for parents: an index PUT listing it holds it FOR KEY
            # SHARE until it commits, so the look below (a fresh snapshot) sees that index
            mid = conn.execute(
                select(Manifest.id).where(Manifest.repository_id == rid, Manifest.digest == digest).with_for_update()
            ).scalar()
            if mid is None:
                raise ManifestUnknown(detail={"name": name, "digest": digest})
            parent = conn.execute(
                select(Manifest.digest)
                .join(ManifestReference, ManifestReference.manifest_id == Manifest.id)
                .where(
                    Manifest.repository_id == rid,
                    ManifestReference.digest == digest,
                    ManifestReference.kind == "manifest",
                )
                .limit(1)
            ).scalar()
            if parent is not None:
                raise ManifestInUse(
                    f"manifest is listed by image index {parent}; delete the index first",
                    {"digest": digest, "index": parent},
                )
            conn.execute(delete(Tag).where(Tag.manifest_id == mid))
            conn.execute(delete(ManifestReference).where(ManifestReference.manifest_id == mid))
            conn.execute(delete(Manifest).where(Manifest.id == mid))

        await self.db.write(run)

    async def delete_untagged_manifests(self, before: float, limit: int = 1000) -> int:
        """Garbage collection (``gc.untagged_manifests_after``): delete manifests created before
        ``before`` that no tag points to, no index of their repository lists and that have no
        ``subject`` (referrers stay with their subject). Each goes in its own transaction that
        locks the row FOR UPDATE first and re-checks all of that (a concurrent PUT tagging or
        listing it holds it FOR KEY SHARE), so a manifest being tagged or listed stays."""
        parent = ManifestReference.__table__.alias("parent_ref")
        parent_m = Manifest.__table__.alias("parent_m")

        def unused(m):
            return (
                m.created_at < before,
                m.subject.is_(None),
                ~exists().where(Tag.manifest_id == m.id),
                ~exists().where(
                    parent.c.digest == m.digest, parent.c.kind == "manifest", parent.c.manifest_id == parent_m.c.id,
                    parent_m.c.repository_id == m.repository_id,
                ),
            )

        candidates = await self.db.read(
            lambda c: c.execute(select(Manifest.id).where(*unused(Manifest)).limit(limit)).scalars().all()
        )
        removed = 0
        for mid in candidates:
            def run(conn: Connection, mid=mid) -> int:
                write_lock(conn)
                if conn.execute(select(Manifest.id).where(Manifest.id == mid).with_for_update()).scalar() is None:
                    return 0
                if conn.execute(select(Manifest.id).where(Manifest.id == mid, *unused(Manifest))).scalar() is None:
                    return 0  # tagged or listed meanwhile
                conn.execute(delete(ManifestReference).where(ManifestReference.manifest_id == mid))
                return conn.execute(delete(Manifest).where(Manifest.id == mid)).rowcount or 0

            removed += await self.db.write(run)
        return removed

    async def delete_tag(self, name: str, tag: str) -> None:
        def run(conn: Connection) -> None:
            rid = _existing_repo(conn, name)
            if not conn.execute(delete(Tag).where(Tag.repository_id == rid, Tag.name == tag)).rowcount:
                raise ManifestUnknown(f"tag {tag!r} unknown in {name!r}", {"name": name, "tag": tag})

        await self.db.write(run)

    async def tags(self, name: str, n: int | None = None, last: str | None = None) -> list[str]:
        def run(conn: Connection) -> list[str]:
            rid = _existing_repo(conn, name)
            q = select(Tag.name).where(Tag.repository_id == rid).order_by(Tag.name)
            if last is not None:
                q = q.where(Tag.name > last)
            if n is not None:
                q = q.limit(n)
            return list(conn.execute(q).scalars().all())

        return await self.db.read(run)

    async def referrers(self, name: str, subject: str, artifact_type: str | None = None) -> list[dict]:
        """Descriptors of the manifests in ``name`` whose subject is ``subject``."""
        q = (
            select(Manifest.media_type, Manifest.digest, Manifest.size, Manifest.artifact_type, Manifest.annotations)
            .join(Repository, Repository.id == Manifest.repository_id)
            .where(Repository.name == name, Manifest.subject == subject)
            .order_by(Manifest.created_at, Manifest.id)
        )
        if artifact_type is not None:
            q = q.where(Manifest.artifact_type == artifact_type)
        rows = await self.db.read(lambda c: c.execute(q).all())
        out = []
        for media_type, digest, size, at, annotations in rows:
            d = {"mediaType": media_type, "digest": digest, "size": size}
            if at:
                d["artifactType"] = at
            if annotations:
                d["annotations"] = json.loads(annotations)
            out.append(d)
        return out

    # ---- upload sessions -----------------------------------------------------
    async def create_upload(
        self, upload_id: str, name: str, hash_state: bytes | None, driver_state: dict, *,
        principal: str | None = None, max_open: int | None = None, expiry: float = 24 * 3600,
    ) -> None:
        """Record a new session. With ``principal`` and ``max_open``, refused (TooManyUploads,
        nothing written) when that principal already has ``max_open`` sessions written to within
        ``expiry`` seconds — every replica's, counted here in the database."""
        now = time.time()
        params = {"p_id": upload_id, "p_name": name, "p_now": now, "p_hash_state": hash_state,
                  "p_driver_state": json.dumps(driver_state), "p_principal": principal,
                  "p_since": now - expiry}

        def run(conn: Connection) -> None:
            if self.tenants:  # no session for a tenant being deleted (its sessions go with it)
                write_lock(conn)
                _check_tenant(conn, name)
            if principal is not None and max_open:
                if conn.dialect.name == "postgresql":
                    # concurrent starts of one principal take turns (READ COMMITTED would let two
                    # count the same rows); on SQLite the INSERT below takes the write lock first
                    key = zlib.crc32(principal.encode()) | (0x55 << 32)
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
            execute_direct(conn, _CREATE_UPLOAD, params)
            if principal is not None and max_open:
                count, oldest = conn.execute(_OPEN_UPLOADS, params).one()
                if count > max_open:  # this one included: undo it (the transaction rolls back)
                    raise TooManyUploads(principal, max_open, (oldest or now) + expiry - now)

        await self.db.write(run)

    async def get_upload(self, upload_id: str, name: str) -> UploadRecord:
        """The session ``upload_id`` of repository ``name``; UploadUnknown otherwise."""
        row = await self.db.read(_upload_row, upload_id)
        if row is None or row.repository != name:
            raise UploadUnknown(detail={"upload": upload_id})
        return _upload_record(row)

    async def claim_upload(
        self, upload_id: str, name: str, token: str, expires_at: float, start: int | None = None,
        *, holder: str | None = None, quota: bool = False, digest: str | None = None,
        pin: tuple[int, float | None] | None = None,
    ) -> UploadRecord:
        """Take the session's lease (compare-and-set): nobody else holds an unexpired one (or,
        with ``holder``, that token holds it: a request known to be dead) and, when ``start``
        is given, the committed offset is ``start``. Raises UploadUnknown, or UploadBusy /
        UploadOutOfOrder (with the committed offset) when the lease is refused. With ``quota``,
        the record's ``room`` is ``quota_room(name, digest)``, read in the same round trip.

        ``pin`` = (size, steal_before): the caller holds the whole blob ``digest`` (``size``
        bytes, verified as the content of a session at offset 0); when the session is at offset
        0 and the tenant's quota has room for it, the blob's row is pinned (``pin_blob``) in this
        same transaction, and the record says ``pinned``: the push saves a round trip. Otherwise
        nothing is pinned and the caller goes the usual way."""
        now = time.time()
        params = {"p_id": upload_id, "p_name": name, "p_now": now, "p_token": token, "p_expires_at": expires_at}
        if start is not None:
            params["p_start"] = start
        if holder is None:
            stmt = _CLAIM if start is None else _CLAIM_AT
        else:
            stmt = _TAKE_OVER if start is None else _TAKE_OVER_AT
            params["p_holder"] = holder

        def run(conn: Connection) -> UploadRecord:
            claimed = execute_direct(conn, stmt, params).rowcount == 1
            row = _upload_row(conn, upload_id)
            if row is None or row.repository != name:
                raise UploadUnknown(detail={"upload": upload_id})
            if not claimed:
                if row.lease_token is not None and (row.lease_expires_at or 0) >= now:
                    raise UploadBusy(row.offset, row.lease_token)
                raise UploadOutOfOrder(row.offset)
            record = _upload_record(row)
            if quota:
                record = dataclasses.replace(record, room=_room_for(conn, name, digest))
            if pin is not None and record.offset == 0:
                size, steal_before = pin
                room = record.room
                if (room is None or room[2] + size <= room[1]) and _pin(conn, digest, size, steal_before):
                    record = dataclasses.replace(record, pinned=True)
            return record

        return await self.db.write(run)

    async def renew_upload_lease(self, upload_id: str, token: str, expires_at: float) -> bool:
        """Extend a held lease (a long body is streaming); False when it is no longer held."""
        params = {"p_id": upload_id, "p_token": token, "p_expires_at": expires_at, "p_now": time.time()}
        return await self.db.write(lambda c: execute_direct(c, _RENEW, params).rowcount == 1)

    async def save_upload(
        self, upload_id: str, token: str, offset: int, hash_state: bytes | None, driver_state: dict
    ) -> bool:
        """Record a successful append and release the lease, if the lease is still held."""
        params = {"p_id": upload_id, "p_token": token, "p_offset": offset, "p_hash_state": hash_state,
                  "p_driver_state": json.dumps(driver_state), "p_now": time.time()}
        return await self.db.write(lambda c: execute_direct(c, _SAVE, params).rowcount == 1)

    async def release_upload(self, upload_id: str, token: str) -> None:
        """Give the lease back, changing nothing else (a failed append)."""
        params = {"p_id": upload_id, "p_token": token}
        await self.db.write(lambda c: execute_direct(c, _RELEASE, params))

    async def delete_upload(self, upload_id: str) -> None:
        await self.db.write(lambda c: execute_direct(c, _DELETE_UPLOAD, {"p_id": upload_id}))

    async def stale_uploads(self, older_than: float) -> list[tuple[str, dict]]:
        """(id, driver state) of sessions idle since before ``older_than`` and not being written."""
        now = time.time()
        q = select(Upload.id, Upload.driver_state).where(
            Upload.updated_at < older_than,
            Upload.lease_token.is_(None) | Upload.lease_expires_at.is_(None) | (Upload.lease_expires_at < now),
        )
        rows = await self.db.read(lambda c: c.execute(q).all())
        return [(i, json.loads(state) if state else {}) for i, state in rows]

    async def upload_ids(self) -> set[str]:
        return await self.db.read(lambda c: set(c.execute(select(Upload.id)).scalars().all()))


def _upload_record(row) -> UploadRecord:
    return UploadRecord(
        row.id, row.repository, row.offset, row.hash_state,
        json.loads(row.driver_state) if row.driver_state else {}, row.started_at, row.updated_at,
    )


__all__ = ["Catalog", "ManifestRecord", "UploadRecord"]
