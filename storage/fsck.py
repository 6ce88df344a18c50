"""``berth fsck``: check the content store against the metadata, on any content driver.

Everything is reached through the driver (``list_digests``, ``stat``, ``read``,
``list_uploads``, ``delete``) and the catalog's database:

* every stored blob is re-hashed and compared with its name, and its size with its row;
* every blob row that a repository links has content;
* every manifest's bytes hash to its digest; every blob it references is linked in its
  repository, every child manifest (index) is present there; every tag points to a manifest;
* upload rows against the driver's uploads.

Findings are **damaged** (the registry would serve wrong or missing bytes, or an image that
cannot be pulled whole: exit status 1) or **orphaned** (leftovers garbage collection removes:
content no row knows, content no repository links, a pinned row whose push never placed
content, upload bytes without a session; informational, exit status 0).

``repair=True`` quarantines damage, and never deletes good data:

* content that does not hash to its digest: its bytes are copied to
  ``<quarantine>/<algorithm>-<hex>`` (a local directory, default ``<data>/quarantine``), then
  deleted from the store, and the blob's row and every repository link to it are deleted in
  one transaction — so the next push of that blob places good content and links it again;
* a linked blob whose content is missing: its links and row are deleted (same reason);
* a row whose size differs from content that hashes right: the row gets the content's size.

Manifests whose references dangle, or whose bytes do not match their digest, are reported,
not changed: nothing better than them exists to put back (re-pushing the missing blob or
child repairs the image). fsck is exact on a quiet store; while the registry serves it
re-checks a finding before reporting it, but a push in flight can still look orphaned.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import Connection, delete, select, update

from . import digest as digests
from .catalog import Catalog
from .content import ContentDriver
from .errors import ContentMissing, StorageError
from .models import Blob, Manifest, ManifestReference, Repository, RepositoryBlob, Tag, Upload

log = logging.getLogger("berth.fsck")


@dataclass
class Finding:
    kind: str  # e.g. "content-corrupt", "content-missing", "orphan-content"
    subject: str  # a digest, "repo@digest", "repo:tag" or an upload id
    message: str
    repaired: str | None = None  # what --repair did


@dataclass
class FsckReport:
    blobs_checked: int = 0
    bytes_checked: int = 0
    manifests_checked: int = 0
    links_checked: int = 0
    uploads_checked: int = 0
    damaged: list[Finding] = field(default_factory=list)
    orphaned: list[Finding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.damaged

    def as_dict(self) -> dict:
        d = asdict(self)
        d["clean"] = self.clean
        return d


Progress = Callable[[int, int, int, int], None]  # (blobs done, blobs total, bytes done, bytes total)


async def _hash(driver: ContentDriver, digest: str, algorithm: str, on_bytes: Callable[[int], None]) -> tuple[str, int]:
    h = hashlib.new(algorithm)
    n = 0
    async for chunk in driver.read(digest):
        h.update(chunk) if len(chunk) < 65536 else await asyncio.to_thread(h.update, chunk)
        n += len(chunk)
        on_bytes(len(chunk))
    return f"{algorithm}:{h.hexdigest()}", n


def _rows(conn: Connection) -> dict:
    return {
        "blobs": {d: (size, deleting) for d, size, deleting in conn.execute(select(Blob.digest, Blob.size, Blob.deleting_at))},
        "links": conn.execute(
            select(Repository.name, RepositoryBlob.digest).join(Repository, Repository.id == RepositoryBlob.repository_id)
        ).all(),
        "uploads": set(conn.execute(select(Upload.id)).scalars()),
        # sessions that recorded bytes (a session's file is created with its first byte)
        "written": set(conn.execute(select(Upload.id).where(Upload.offset > 0)).scalars()),
    }


async def fsck(
    catalog: Catalog,
    driver: ContentDriver,
    *,
    repair: bool = False,
    quarantine: Path | None = None,
    progress: Progress | None = None,
) -> FsckReport:
    report = FsckReport()
    db = catalog.db
    # the rows first, then the store: content a push places meanwhile has its (pinned) row
    rows = await db.read(_rows)
    blob_rows: dict[str, tuple[int, float | None]] = rows["blobs"]
    linked: dict[str, list[str]] = {}
    for repo, digest in rows["links"]:
        linked.setdefault(digest, []).append(repo)
    stored = [d async for d in driver.list_digests()]

    # ---- 1. every stored blob: its name, its hash, its size against its row --------------------
    sizes: dict[str, int | None] = {}
    for d in stored:
        sizes[d] = blob_rows[d][0] if d in blob_rows and blob_rows[d][0] else await driver.stat(d)
    total_bytes = sum(s or 0 for s in sizes.values())
    done_bytes = 0

    def on_bytes(n: int) -> None:
        nonlocal done_bytes
        done_bytes += n
        if progress is not None:
            progress(report.blobs_checked, len(stored), done_bytes, total_bytes)

    present: set[str] = set()
    for d in stored:
        try:
            algorithm, _ = digests.parse(d)
        except StorageError:
            report.orphaned.append(Finding("stray-content", d, "content stored under a name that is no digest"))
            report.blobs_checked += 1
            continue
        try:
            actual, n = await _hash(driver, d, algorithm, on_bytes)
        except ContentMissing:  # deleted meanwhile (garbage collection)
            report.blobs_checked += 1
            continue
        report.blobs_checked += 1
        report.bytes_checked += n
        present.add(d)
        if actual != d:
            f = Finding("content-corrupt", d, f"content hashes to {actual} ({n} bytes)")
            if repair:
                f.repaired = await _quarantine(catalog, driver, d, quarantine)
                present.discard(d)
            report.damaged.append(f)
            continue
        row = blob_rows.get(d)
        if row is None:
            q = select(Blob.digest).where(Blob.digest == d)
            if await db.read(lambda c, q=q: c.execute(q).first()) is None:  # not pinned meanwhile
                report.orphaned.append(Finding("orphan-content", d, f"{n} bytes stored, no blob row (gc removes it)"))
        elif d not in linked:
            report.orphaned.append(Finding("unlinked-blob", d, f"{n} bytes no repository links (gc removes them)"))
        elif row[1] is None and row[0] != n and row[0] != 0:
            f = Finding("size-mismatch", d, f"row says {row[0]} bytes, content has {n}")
            if repair:
                stmt = update(Blob).where(Blob.digest == d).values(size=n)
                await db.write(lambda c: c.execute(stmt))
                f.repaired = f"row size set to {n}"
            report.damaged.append(f)
        if progress is not None:
            progress(report.blobs_checked, len(stored), done_bytes, total_bytes)

    # ---- 2. every blob row: linked rows need content ---------------------------------------
    handled = present | {f.subject for f in report.damaged}
    report.links_checked = len(rows["links"])
    for d, (_size, deleting) in blob_rows.items():
        if d in handled:
            continue
        if await driver.stat(d) is not None:  # placed meanwhile
            continue
        repos = linked.get(d)
        if repos:
            now = await db.read(lambda c: c.execute(select(RepositoryBlob.digest).where(RepositoryBlob.digest == d)).first())
            if now is None:
                continue
            f = Finding("content-missing", d, f"linked in {', '.join(sorted(repos))} but no content is stored")
            if repair:
                f.repaired = await _forget(catalog, d)
            report.damaged.append(f)
        elif deleting is None:
            report.orphaned.append(Finding("row-without-content", d, "a pinned row whose content was never placed (gc removes it)"))

    # ---- 3. manifests, their references, tags --------------------------------------------------
    report.manifests_checked += await _check_manifests(catalog, report)

    # ---- 4. upload sessions against the driver's uploads ---------------------------------------
    in_store = {u async for u, _ in driver.list_uploads()}
    known = rows["uploads"] | await catalog.upload_ids()
    report.uploads_checked = len(known)
    for u in sorted(in_store - known):
        report.orphaned.append(Finding("orphan-upload", u, "upload bytes no session knows (gc removes them after upload_expiry)"))
    if driver.name == "filesystem":  # a session that recorded bytes has its file (s3: parts are assembled later)
        for u in sorted(rows["written"] - in_store):
            report.orphaned.append(Finding("upload-without-bytes", u, "a session whose bytes are gone (it expires)"))
    return report


async def _check_manifests(catalog: Catalog, report: FsckReport) -> int:
    def load(conn: Connection):
        manifests = conn.execute(
            select(Manifest.id, Repository.name, Manifest.digest, Manifest.content, Manifest.repository_id)
            .join(Repository, Repository.id == Manifest.repository_id)
        ).all()
        refs = conn.execute(select(ManifestReference.manifest_id, ManifestReference.digest, ManifestReference.kind)).all()
        links = set(conn.execute(select(RepositoryBlob.repository_id, RepositoryBlob.digest)).all())
        tags = conn.execute(
            select(Repository.name, Tag.name, Tag.manifest_id).join(Repository, Repository.id == Tag.repository_id)
        ).all()
        return manifests, refs, links, tags

    manifests, refs, links, tags = await catalog.db.read(load)
    by_id = {m.id: m for m in manifests}
    present = {(m.repository_id, m.digest) for m in manifests}
    for m in manifests:
        try:
            algorithm, _ = digests.parse(m.digest)
            actual = digests.of_bytes(m.content, algorithm)
        except StorageError:
            actual = None
        if actual != m.digest:
            report.damaged.append(Finding("manifest-corrupt", f"{m.name}@{m.digest}", f"stored bytes hash to {actual}"))
    for mid, d, kind in refs:
        m = by_id.get(mid)
        if m is None:
            continue
        if kind == "blob" and (m.repository_id, d) not in links:
            report.damaged.append(Finding("blob-unlinked", f"{m.name}@{m.digest}", f"references blob {d}, not linked in {m.name}"))
        elif kind == "manifest" and (m.repository_id, d) not in present:
            report.damaged.append(Finding("child-missing", f"{m.name}@{m.digest}", f"lists manifest {d}, not in {m.name}"))
    for repo, tag, mid in tags:
        if mid not in by_id:
            report.damaged.append(Finding("tag-dangling", f"{repo}:{tag}", "points to no manifest"))
    return len(manifests)


async def _forget(catalog: Catalog, digest: str) -> str:
    """Delete a blob's links and row in one transaction (its content is gone or quarantined)."""

    def run(conn: Connection) -> int:
        n = conn.execute(delete(RepositoryBlob).where(RepositoryBlob.digest == digest)).rowcount or 0
        conn.execute(delete(Blob).where(Blob.digest == digest))
        return n

    n = await catalog.db.write(run)
    return f"row and {n} link(s) deleted; pushing the blob again restores it"


async def _quarantine(catalog: Catalog, driver: ContentDriver, digest: str, quarantine: Path | None) -> str:
    """Copy the bytes aside (a local directory), delete them from the store, forget the blob."""
    if quarantine is None:
        raise ValueError("repair needs a quarantine directory")
    quarantine.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = quarantine / digest.replace(":", "-")
    tmp = target.with_name(target.name + ".part")
    with open(tmp, "wb") as f:
        async for chunk in driver.read(digest):
            await asyncio.to_thread(f.write, chunk)
        await asyncio.to_thread(f.flush)
        await asyncio.to_thread(os.fsync, f.fileno())
    os.replace(tmp, target)
    await driver.delete(digest)
    forgot = await _forget(catalog, digest)
    return f"bytes moved to {target}; {forgot}"


__all__ = ["Finding", "FsckReport", "fsck"]
