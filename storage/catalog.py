"""Repository metadata: repositories, blob links, manifests, tags, referrers, uploads.

Every query the distribution API needs, behind one class. Each public method runs
one synchronous SQLAlchemy Core function in one database round trip through
:class:`storage.db.Database` (a single transaction for writes).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, delete, exists, select, update
from sqlalchemy.exc import IntegrityError

from . import digest as digests
from .db import Database, upsert_insert
from .errors import (
    BlobInUse,
    BlobUnknown,
    ManifestBlobUnknown,
    ManifestInUse,
    ManifestUnknown,
    NameUnknown,
)
from .manifests import ParsedManifest
from .models import Blob, Manifest, ManifestReference, Repository, RepositoryBlob, Tag, Upload


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
_UPLOAD_REPOSITORY = select(Upload.repository).where(Upload.id == bindparam("id"))


def _repo_id(conn: Connection, name: str) -> int | None:
    return conn.execute(_REPO_ID, {"name": name}).scalar()


def _ensure_repo(conn: Connection, name: str) -> int:
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


def _link(conn: Connection, name: str, digest: str, size: int) -> None:
    rid = _ensure_repo(conn, name)
    # insert the blob row, or lock the existing one until this transaction ends (a no-op
    # DO UPDATE): a concurrent garbage collection cannot delete it between here and the
    # link below (on PostgreSQL that would fail the push on the foreign key; it waits
    # instead, then finds the link and keeps the blob). SQLite serialises writers anyway.
    stmt = upsert_insert(conn, Blob).values(digest=digest, size=size, created_at=time.time())
    conn.execute(stmt.on_conflict_do_update(index_elements=[Blob.digest], set_={"size": Blob.size}))
    _insert_ignore(conn, RepositoryBlob, repository_id=rid, digest=digest, created_at=time.time())


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
    def __init__(self, db: Database) -> None:
        self.db = db

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
        return await self.db.read(lambda c: c.execute(_BLOB_SIZE, params).scalar())

    async def link_blob(self, name: str, digest: str, size: int, *, finished_upload: str | None = None) -> None:
        """Record that ``name`` may serve the (stored) blob ``digest``; optionally end the
        upload session that produced it, in the same transaction."""

        def run(conn: Connection) -> None:
            _link(conn, name, digest, size)
            if finished_upload is not None:
                conn.execute(delete(Upload).where(Upload.id == finished_upload))

        await self.db.write(run)

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

    async def unreferenced_blobs(self) -> list[str]:
        """Blobs no repository links (candidates for garbage collection)."""
        q = select(Blob.digest).where(~exists().where(RepositoryBlob.digest == Blob.digest))
        return await self.db.read(lambda c: list(c.execute(q).scalars().all()))

    async def forget_blob(self, digest: str) -> bool:
        """Drop an unlinked blob's row; False when some repository linked it meanwhile."""

        def run(conn: Connection) -> bool:
            if conn.execute(select(exists().where(RepositoryBlob.digest == digest))).scalar():
                return False
            conn.execute(delete(Blob).where(Blob.digest == digest))
            return True

        try:
            return await self.db.write(run)
        except IntegrityError:  # PostgreSQL: a push linked it after the check above
            return False

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
            rid = _ensure_repo(conn, name)
            missing: list[str] = []
            if parsed.blobs:
                have = _present(conn, RepositoryBlob.digest, RepositoryBlob.repository_id == rid, parsed.blobs)
                missing += [d for d in parsed.blobs if d not in have]
            if parsed.manifests:
                have = _present(conn, Manifest.digest, Manifest.repository_id == rid, parsed.manifests)
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
            mid = conn.execute(
                select(Manifest.id).where(Manifest.repository_id == rid, Manifest.digest == digest)
            ).scalar()
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
            rid = _existing_repo(conn, name)
            mid = conn.execute(
                select(Manifest.id).where(Manifest.repository_id == rid, Manifest.digest == digest)
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
    async def create_upload(self, upload_id: str, name: str) -> None:
        now = time.time()
        stmt = Upload.__table__.insert().values(id=upload_id, repository=name, started_at=now, updated_at=now)
        await self.db.write(lambda c: c.execute(stmt))

    async def upload_repository(self, upload_id: str) -> str | None:
        return await self.db.read(lambda c: c.execute(_UPLOAD_REPOSITORY, {"id": upload_id}).scalar())

    async def touch_upload(self, upload_id: str) -> None:
        stmt = update(Upload).where(Upload.id == upload_id).values(updated_at=time.time())
        await self.db.write(lambda c: c.execute(stmt))

    async def delete_upload(self, upload_id: str) -> None:
        stmt = delete(Upload).where(Upload.id == upload_id)
        await self.db.write(lambda c: c.execute(stmt))

    async def stale_uploads(self, older_than: float) -> list[str]:
        q = select(Upload.id).where(Upload.updated_at < older_than)
        return await self.db.read(lambda c: list(c.execute(q).scalars().all()))

    async def upload_ids(self) -> set[str]:
        return await self.db.read(lambda c: set(c.execute(select(Upload.id)).scalars().all()))


__all__ = ["Catalog", "ManifestRecord"]
