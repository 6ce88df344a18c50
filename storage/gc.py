"""Garbage collection: expired upload sessions, unreferenced blob links, unused blobs.

Works on any content driver (``list_digests``, ``list_uploads``, ``delete``, ``abort``) and
keeps every delay in the database, never in file times. Each step is safe while the
registry serves, from any number of processes:

1. ``sweep_uploads``: sessions idle for ``upload_expiry`` (and not being written) are aborted;
   upload bytes no session row knows, idle as long, are removed;
2. a repository's link to a blob is dropped when no manifest of that repository references
   it and it is older than ``grace`` (a push links its blobs before it puts the manifest,
   and a manifest PUT refreshes the links it checks, in the same transaction);
3. blobs: rows no repository links and unused (pinned, linked or mounted) for ``grace``
   are *marked* deleting in one conditional UPDATE; their content is deleted through the
   driver; then the rows. Content without any row (listed before the rows are read) is
   marked the same way first (a row inserted already marked). A push pins the row before
   placing content and a pin, link or mount refuses a marked row, so no push can link
   content a collector is about to delete: it waits for the collector, then places its own.

Two collectors at once are safe (each deletes only the rows it marked); ``scale`` runs one
at a time under a database lease anyway. A collector that dies midway leaves marked rows;
the next one (or a push, after ``MARK_STALE``) takes them over.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .catalog import Catalog
from .content import ContentDriver

log = logging.getLogger("berth.gc")

MARK_STALE = 15 * 60  # seconds after which a mark is a dead collector's (registry.service.blobs agrees)
BATCH = 500  # blob rows marked, deleted and forgotten per round


@dataclass
class GCReport:
    uploads_removed: int = 0
    links_removed: int = 0
    blobs_removed: int = 0
    bytes_freed: int = 0


async def sweep_uploads(catalog: Catalog, driver: ContentDriver, *, expiry: float) -> int:
    """Abort sessions idle for ``expiry`` seconds, and upload bytes no session row knows that
    were not written for as long; the number removed."""
    older_than = time.time() - expiry
    removed = 0
    for upload_id, state in await catalog.stale_uploads(older_than):
        await driver.abort(upload_id, state)
        await catalog.delete_upload(upload_id)
        removed += 1
    listed = [(upload_id, at) async for upload_id, at in driver.list_uploads()]
    known = await catalog.upload_ids()  # read after listing: a session created meanwhile is fresh anyway
    for upload_id, written_at in listed:
        if upload_id not in known and written_at < older_than:
            await driver.abort(upload_id, None)
            removed += 1
    return removed


async def collect(catalog: Catalog, driver: ContentDriver, *, grace: float = 3600, upload_expiry: float = 86400) -> GCReport:
    """One whole garbage collection (``berth gc``)."""
    report = GCReport()
    report.uploads_removed = await sweep_uploads(catalog, driver, expiry=upload_expiry)
    now = time.time()
    mark = now  # this collector's mark: it deletes only rows carrying it
    # links no manifest needs any more (deleted images, abandoned pushes)
    report.links_removed = await catalog.unlink_unreferenced(now - grace)
    # content with no row at all: listed *before* the rows are read, so a blob committed in
    # between has its (pinned) row and is not taken for an orphan
    stored = [d async for d in driver.list_digests()]
    known = await catalog.known_blobs()
    orphans = await catalog.mark_orphans([d for d in stored if d not in known], mark)
    await _delete(catalog, driver, [(d, None) for d in orphans], mark, report)
    while True:
        marked = await catalog.mark_unused_blobs(now - grace, mark, time.time() - MARK_STALE, BATCH)
        if not marked:
            break
        await _delete(catalog, driver, marked, mark, report)
        if len(marked) < BATCH:
            break
    log.info("gc: %s", report)
    return report


async def _delete(catalog: Catalog, driver: ContentDriver, marked: list[tuple[str, int | None]], mark: float,
                  report: GCReport) -> None:
    """Delete the content of marked rows, then the rows."""
    for digest, size in marked:
        if size is None:
            size = await driver.stat(digest) or 0
        if await driver.delete(digest):
            report.blobs_removed += 1
            report.bytes_freed += size
    await catalog.forget_blobs([d for d, _ in marked], mark)
