"""Garbage collection: expired upload sessions, unreferenced blob links, unlinked blobs.

Mark and sweep in three steps, each safe while the registry serves:
1. upload sessions idle for ``upload_expiry`` are removed;
2. a repository's link to a blob is dropped when no manifest of that repository
   references the blob and the link is older than ``grace`` (a push links its blobs
   before it puts the manifest, so young links are kept);
3. a blob file is removed when no repository links it *and* it has not been written
   or re-committed for ``grace`` seconds (committing an already-stored blob refreshes
   its mtime), so a push that is about to link a blob never loses it.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from .blobs import BlobStore
from .catalog import Catalog
from .errors import UploadUnknown

log = logging.getLogger("berth.gc")


@dataclass
class GCReport:
    uploads_removed: int = 0
    links_removed: int = 0
    blobs_removed: int = 0
    bytes_freed: int = 0


async def purge_uploads(catalog: Catalog, blobs: BlobStore, older_than: float) -> int:
    """Drop upload sessions idle since before ``older_than`` (epoch seconds), and orphan files."""
    removed = 0
    for upload_id in await catalog.stale_uploads(older_than):
        try:
            blobs.cancel(upload_id)
        except UploadUnknown:
            pass
        await catalog.delete_upload(upload_id)
        removed += 1
    known = await catalog.upload_ids()
    for upload_id in blobs.upload_ids():
        path = blobs.layout.uploads / upload_id
        try:
            idle = path.stat().st_mtime < older_than
        except FileNotFoundError:  # committed or cancelled meanwhile
            continue
        if upload_id not in known and idle:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


async def collect(catalog: Catalog, blobs: BlobStore, *, grace: float = 3600, upload_expiry: float = 86400) -> GCReport:
    report = GCReport()
    now = time.time()
    report.uploads_removed = await purge_uploads(catalog, blobs, now - upload_expiry)
    cutoff = now - grace
    # links no manifest needs any more (deleted images, abandoned pushes)
    report.links_removed = await catalog.unlink_unreferenced(cutoff)
    # blobs with a row but no repository link
    candidates = set(await catalog.unreferenced_blobs())
    # files on disk with no row at all (e.g. a crash between commit and link)
    known = await catalog.known_blobs()
    candidates |= {d for d in blobs.stored_digests() if d not in known}
    for digest in sorted(candidates):
        path = blobs.path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            await catalog.forget_blob(digest)
            continue
        if st.st_mtime >= cutoff:
            continue
        if not await catalog.forget_blob(digest):
            continue  # linked again meanwhile
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        report.blobs_removed += 1
        report.bytes_freed += st.st_size
    log.info("gc: %s", report)
    return report
