"""Repository metadata: repositories, blob links, manifests, tags, referrers, uploads.

All queries the distribution API needs, behind one class. Writes on SQLite are
serialised through one asyncio lock per process (SQLite has a single writer;
doing it here avoids SQLITE_BUSY on read→write upgrades). On PostgreSQL the
database's own locking and constraints do the work.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from . import digest as digests
from .db import sessionmaker
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


class Catalog:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine)
        self._serialise_writes = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def _write(self):
        """A write transaction (serialised per process on SQLite)."""
        lock = self._write_lock if self._serialise_writes else contextlib.nullcontext()
        async with lock:
            async with self.sessions() as s, s.begin():
                yield s

    @contextlib.asynccontextmanager
    async def _read(self):
        async with self.sessions() as s:
            yield s

    # ---- repositories --------------------------------------------------------
    @staticmethod
    async def _repo_id(s: AsyncSession, name: str) -> int | None:
        return (await s.execute(select(Repository.id).where(Repository.name == name))).scalar()

    async def _ensure_repo(self, s: AsyncSession, name: str) -> int:
        rid = await self._repo_id(s, name)
        if rid is None:
            # a plain flush, not a SAVEPOINT: with pysqlite's legacy transaction handling
            # a SAVEPOINT opened before any write starts the transaction and its RELEASE
            # commits it, so the repository row survived a later rollback (e.g. a manifest
            # refused with MANIFEST_BLOB_UNKNOWN still created an empty repository).
            repo = Repository(name=name)
            s.add(repo)
            await s.flush()
            rid = repo.id
        return rid

    async def repository_exists(self, name: str) -> bool:
        async with self._read() as s:
            return await self._repo_id(s, name) is not None

    async def repositories(
        self, n: int | None = None, last: str | None = None, visible: Callable[[str], bool] | None = None
    ) -> list[str]:
        """Repository names in lexical order after ``last``, at most ``n``, filtered by ``visible``."""
        out: list[str] = []
        after = last
        batch = 1000
        async with self._read() as s:
            while n is None or len(out) < n:
                q = select(Repository.name).order_by(Repository.name).limit(batch)
                if after is not None:
                    q = q.where(Repository.name > after)
                names = (await s.execute(q)).scalars().all()
                if not names:
                    break
                for name in names:
                    if visible is None or visible(name):
                        out.append(name)
                        if n is not None and len(out) >= n:
                            break
                after = names[-1]
        return out

    # ---- blobs ---------------------------------------------------------------
    async def blob_size(self, name: str, digest: str) -> int | None:
        """Size of a blob the repository may serve, or None."""
        async with self._read() as s:
            q = (
                select(Blob.size)
                .join(RepositoryBlob, RepositoryBlob.digest == Blob.digest)
                .join(Repository, Repository.id == RepositoryBlob.repository_id)
                .where(Repository.name == name, Blob.digest == digest)
            )
            return (await s.execute(q)).scalar()

    async def link_blob(self, name: str, digest: str, size: int) -> None:
        """Record that ``name`` may serve the (stored) blob ``digest``."""
        async with self._write() as s:
            rid = await self._ensure_repo(s, name)
            if (await s.get(Blob, digest)) is None:
                s.add(Blob(digest=digest, size=size))
                await s.flush()
            linked = await s.get(RepositoryBlob, (rid, digest))
            if linked is None:
                s.add(RepositoryBlob(repository_id=rid, digest=digest))

    async def unlink_blob(self, name: str, digest: str) -> None:
        """Remove a blob from a repository; refused while a manifest there references it."""
        async with self._write() as s:
            rid = await self._repo_id(s, name)
            if rid is None:
                raise NameUnknown(f"repository {name!r} not known to registry", {"name": name})
            if (await s.get(RepositoryBlob, (rid, digest))) is None:
                raise BlobUnknown(detail={"digest": digest})
            user = (
                await s.execute(
                    select(Manifest.digest)
                    .join(ManifestReference, ManifestReference.manifest_id == Manifest.id)
                    .where(
                        Manifest.repository_id == rid,
                        ManifestReference.digest == digest,
                        ManifestReference.kind == "blob",
                    )
                    .limit(1)
                )
            ).scalar()
            if user is not None:
                raise BlobInUse(
                    f"blob is referenced by manifest {user}; delete that manifest first",
                    {"digest": digest, "manifest": user},
                )
            await s.execute(
                delete(RepositoryBlob).where(RepositoryBlob.repository_id == rid, RepositoryBlob.digest == digest)
            )

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
        async with self._write() as s:
            res = await s.execute(
                delete(RepositoryBlob)
                .where(RepositoryBlob.created_at < before, ~exists(referenced))
                .execution_options(synchronize_session=False)
            )
            return res.rowcount or 0

    async def unreferenced_blobs(self) -> list[str]:
        """Blobs no repository links (candidates for garbage collection)."""
        async with self._read() as s:
            q = select(Blob.digest).where(~exists().where(RepositoryBlob.digest == Blob.digest))
            return list((await s.execute(q)).scalars().all())

    async def forget_blob(self, digest: str) -> bool:
        """Drop an unlinked blob's row; False when some repository linked it meanwhile."""
        async with self._write() as s:
            if (await s.execute(select(exists().where(RepositoryBlob.digest == digest)))).scalar():
                return False
            await s.execute(delete(Blob).where(Blob.digest == digest))
            return True

    async def known_blobs(self) -> set[str]:
        async with self._read() as s:
            return set((await s.execute(select(Blob.digest))).scalars().all())

    # ---- manifests -----------------------------------------------------------
    async def put_manifest(
        self, name: str, digest: str, parsed: ParsedManifest, content: bytes, tag: str | None
    ) -> None:
        """Store a manifest (and move ``tag`` to it) after checking what it references.

        Raises ManifestBlobUnknown, listing what is missing, when a referenced blob
        or child manifest is not in the repository. Nothing is written then.
        """
        async with self._write() as s:
            rid = await self._ensure_repo(s, name)
            missing: list[str] = []
            if parsed.blobs:
                have = set(
                    (
                        await s.execute(
                            select(RepositoryBlob.digest).where(
                                RepositoryBlob.repository_id == rid, RepositoryBlob.digest.in_(parsed.blobs)
                            )
                        )
                    ).scalars()
                )
                missing += [d for d in parsed.blobs if d not in have]
            if parsed.manifests:
                have = set(
                    (
                        await s.execute(
                            select(Manifest.digest).where(
                                Manifest.repository_id == rid, Manifest.digest.in_(parsed.manifests)
                            )
                        )
                    ).scalars()
                )
                missing += [d for d in parsed.manifests if d not in have]
            if missing:
                raise ManifestBlobUnknown(
                    f"manifest references {len(missing)} unknown blob(s) or manifest(s): {', '.join(missing[:5])}",
                    {"missing": missing},
                )
            mid = (
                await s.execute(select(Manifest.id).where(Manifest.repository_id == rid, Manifest.digest == digest))
            ).scalar()
            if mid is None:
                m = Manifest(
                    repository_id=rid,
                    digest=digest,
                    media_type=parsed.media_type,
                    size=len(content),
                    content=content,
                    artifact_type=parsed.artifact_type,
                    annotations=json.dumps(parsed.annotations) if parsed.annotations else None,
                    subject=parsed.subject.digest if parsed.subject else None,
                )
                s.add(m)
                await s.flush()
                mid = m.id
                refs = [ManifestReference(manifest_id=mid, digest=d, kind="blob") for d in parsed.blobs]
                refs += [ManifestReference(manifest_id=mid, digest=d, kind="manifest") for d in parsed.manifests]
                s.add_all(refs)
            if tag is not None:
                res = await s.execute(
                    update(Tag)
                    .where(Tag.repository_id == rid, Tag.name == tag)
                    .values(manifest_id=mid, updated_at=time.time())
                )
                if res.rowcount == 0:
                    s.add(Tag(repository_id=rid, name=tag, manifest_id=mid))

    async def get_manifest(self, name: str, reference: str) -> ManifestRecord:
        """A manifest by tag or digest; NameUnknown / ManifestUnknown otherwise."""
        async with self._read() as s:
            rid = await self._repo_id(s, name)
            if rid is None:
                raise NameUnknown(f"repository {name!r} not known to registry", {"name": name})
            cols = (Manifest.digest, Manifest.media_type, Manifest.content)
            if digests.looks_like_digest(reference):
                q = select(*cols).where(Manifest.repository_id == rid, Manifest.digest == reference)
            else:
                q = (
                    select(*cols)
                    .join(Tag, Tag.manifest_id == Manifest.id)
                    .where(Tag.repository_id == rid, Tag.name == reference)
                )
            row = (await s.execute(q)).first()
            if row is None:
                raise ManifestUnknown(f"manifest {reference!r} unknown in {name!r}", {"name": name, "reference": reference})
            return ManifestRecord(row[0], row[1], row[2])

    async def delete_manifest(self, name: str, digest: str) -> None:
        """Delete a manifest and every tag pointing at it.

        Refused (ManifestInUse) while an image index in the same repository lists it.
        """
        async with self._write() as s:
            rid = await self._repo_id(s, name)
            if rid is None:
                raise NameUnknown(f"repository {name!r} not known to registry", {"name": name})
            mid = (
                await s.execute(select(Manifest.id).where(Manifest.repository_id == rid, Manifest.digest == digest))
            ).scalar()
            if mid is None:
                raise ManifestUnknown(detail={"name": name, "digest": digest})
            parent = (
                await s.execute(
                    select(Manifest.digest)
                    .join(ManifestReference, ManifestReference.manifest_id == Manifest.id)
                    .where(
                        Manifest.repository_id == rid,
                        ManifestReference.digest == digest,
                        ManifestReference.kind == "manifest",
                    )
                    .limit(1)
                )
            ).scalar()
            if parent is not None:
                raise ManifestInUse(
                    f"manifest is listed by image index {parent}; delete the index first",
                    {"digest": digest, "index": parent},
                )
            await s.execute(delete(Tag).where(Tag.manifest_id == mid))
            await s.execute(delete(ManifestReference).where(ManifestReference.manifest_id == mid))
            await s.execute(delete(Manifest).where(Manifest.id == mid))

    async def delete_tag(self, name: str, tag: str) -> None:
        async with self._write() as s:
            rid = await self._repo_id(s, name)
            if rid is None:
                raise NameUnknown(f"repository {name!r} not known to registry", {"name": name})
            res = await s.execute(delete(Tag).where(Tag.repository_id == rid, Tag.name == tag))
            if res.rowcount == 0:
                raise ManifestUnknown(f"tag {tag!r} unknown in {name!r}", {"name": name, "tag": tag})

    async def tags(self, name: str, n: int | None = None, last: str | None = None) -> list[str]:
        async with self._read() as s:
            rid = await self._repo_id(s, name)
            if rid is None:
                raise NameUnknown(f"repository {name!r} not known to registry", {"name": name})
            q = select(Tag.name).where(Tag.repository_id == rid).order_by(Tag.name)
            if last is not None:
                q = q.where(Tag.name > last)
            if n is not None:
                q = q.limit(n)
            return list((await s.execute(q)).scalars().all())

    async def referrers(self, name: str, subject: str, artifact_type: str | None = None) -> list[dict]:
        """Descriptors of the manifests in ``name`` whose subject is ``subject``."""
        async with self._read() as s:
            q = (
                select(Manifest.media_type, Manifest.digest, Manifest.size, Manifest.artifact_type, Manifest.annotations)
                .join(Repository, Repository.id == Manifest.repository_id)
                .where(Repository.name == name, Manifest.subject == subject)
                .order_by(Manifest.created_at, Manifest.id)
            )
            if artifact_type is not None:
                q = q.where(Manifest.artifact_type == artifact_type)
            out = []
            for media_type, digest, size, at, annotations in (await s.execute(q)).all():
                d = {"mediaType": media_type, "digest": digest, "size": size}
                if at:
                    d["artifactType"] = at
                if annotations:
                    d["annotations"] = json.loads(annotations)
                out.append(d)
            return out

    # ---- upload sessions -----------------------------------------------------
    async def create_upload(self, upload_id: str, name: str) -> None:
        async with self._write() as s:
            s.add(Upload(id=upload_id, repository=name))

    async def upload_repository(self, upload_id: str) -> str | None:
        async with self._read() as s:
            return (await s.execute(select(Upload.repository).where(Upload.id == upload_id))).scalar()

    async def touch_upload(self, upload_id: str) -> None:
        async with self._write() as s:
            await s.execute(update(Upload).where(Upload.id == upload_id).values(updated_at=time.time()))

    async def delete_upload(self, upload_id: str) -> None:
        async with self._write() as s:
            await s.execute(delete(Upload).where(Upload.id == upload_id))

    async def stale_uploads(self, older_than: float) -> list[str]:
        async with self._read() as s:
            q = select(Upload.id).where(Upload.updated_at < older_than)
            return list((await s.execute(q)).scalars().all())

    async def upload_ids(self) -> set[str]:
        async with self._read() as s:
            return set((await s.execute(select(Upload.id))).scalars().all())


__all__ = ["Catalog", "ManifestRecord"]
