"""Garbage collection: expired upload sessions, unreferenced blob links, unused blobs.

Works on any content driver (``list_digests``, ``list_uploads``, ``delete``, ``abort``) and
keeps every delay in the database, never in file times. Each step is safe while the
registry serves, from any number of processes:

1. ``sweep_uploads``: sessions idle for ``upload_expiry`` (and not being written) are aborted;
   upload bytes no session row knows (a monolithic push killed midway) are removed once idle
   for ``ORPHAN_UPLOAD_IDLE`` (15 min), or ``upload_expiry`` if shorter;
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
from collections.abc import Callable
from dataclasses import dataclass

from .catalog import Catalog
from .content import ContentDriver

log = logging.getLogger("berth.gc")

MARK_STALE = 15 * 60  # seconds after which a mark is a dead collector's (registry.service.blobs agrees)
BATCH = 500  # blob rows marked, deleted and forgotten per round
# Upload bytes no session row knows are a monolithic push's (POST ?digest=: no row, written
# continuously while the body streams) or the leftover of one that died (a SIGKILL): idle this
# long they are the latter, whatever ``upload_expiry`` (which is for resumable sessions).
ORPHAN_UPLOAD_IDLE = 15 * 60


@dataclass
class GCReport:
    uploads_removed: int = 0
    links_removed: int = 0
    blobs_removed: int = 0
    bytes_freed: int = 0
    manifests_removed: int = 0  # untagged manifests past ``untagged_after`` (off unless configured)
    dry_run: bool = False  # counts of what *would* go; nothing was changed


# ``collect``'s progress: (the step under way, the counts so far) after each step and each blob
# deleted (``berth gc`` draws it on a terminal, registry.progress)
Progress = Callable[[str, GCReport], None]


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
    rowless_before = max(older_than, time.time() - ORPHAN_UPLOAD_IDLE)
    for upload_id, written_at in listed:
        if upload_id not in known and written_at < rowless_before:
            await driver.abort(upload_id, None)
            removed += 1
    return removed


async def collect(
    catalog: Catalog,
    driver: ContentDriver,
    *,
    grace: float = 3600,
    upload_expiry: float = 86400,
    untagged_after: float | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> GCReport:
    """One whole garbage collection (``berth gc``; the server's loop, ``registry.app.run_gc_once``).

    ``untagged_after`` (seconds; None = never): also delete manifests no tag points to, no index
    of their repository lists and that are no referrer (no ``subject``), created that long ago;
    their blobs then go as any unreferenced ones. ``dry_run``: change nothing, report what a
    collection now would remove (``blobs_removed``/``bytes_freed`` count what is unused now,
    including blobs only the links and manifests it would drop keep).

    ``progress(step, report)`` is called as the collection goes (see ``Progress``), last with "done"."""
    step = progress or (lambda _step, _report: None)
    if dry_run:
        step("reading the catalog", GCReport(dry_run=True))
        report = await _dry_run(catalog, driver, grace=grace, upload_expiry=upload_expiry, untagged_after=untagged_after)
        step("done", report)
        return report
    report = GCReport()
    step("expired uploads", report)
    report.uploads_removed = await sweep_uploads(catalog, driver, expiry=upload_expiry)
    now = time.time()
    mark = now  # this collector's mark: it deletes only rows carrying it
    if untagged_after is not None:
        step("untagged manifests", report)
        report.manifests_removed = await catalog.delete_untagged_manifests(now - untagged_after)
    # links no manifest needs any more (deleted images, abandoned pushes)
    step("unreferenced links", report)
    report.links_removed = await catalog.unlink_unreferenced(now - grace)
    # content with no row at all: listed *before* the rows are read, so a blob committed in
    # between has its (pinned) row and is not taken for an orphan
    step("listing content", report)
    stored = [d async for d in driver.list_digests()]
    known = await catalog.known_blobs()
    orphans = await catalog.mark_orphans([d for d in stored if d not in known], mark)
    await _delete(catalog, driver, [(d, None) for d in orphans], mark, report, progress)
    while True:
        marked = await catalog.mark_unused_blobs(now - grace, mark, time.time() - MARK_STALE, BATCH)
        if not marked:
            break
        await _delete(catalog, driver, marked, mark, report, progress)
        if len(marked) < BATCH:
            break
    step("done", report)
    log.info("gc: %s", report)
    return report


async def _delete(catalog: Catalog, driver: ContentDriver, marked: list[tuple[str, int | None]], mark: float,
                  report: GCReport, progress: Progress | None = None) -> None:
    """Delete the content of marked rows, then the rows."""
    for digest, size in marked:
        if size is None:
            size = await driver.stat(digest) or 0
        if await driver.delete(digest):
            report.blobs_removed += 1
            report.bytes_freed += size
            if progress is not None:
                progress("unused blobs", report)
    await catalog.forget_blobs([d for d, _ in marked], mark)


async def _dry_run(catalog: Catalog, driver: ContentDriver, *, grace: float, upload_expiry: float,
                   untagged_after: float | None) -> GCReport:
    """What ``collect`` would remove now, computed from one read of the rows and a listing."""
    from sqlalchemy import select  # noqa: PLC0415

    from .models import Blob, Manifest, ManifestReference, RepositoryBlob, Tag  # noqa: PLC0415

    now = time.time()
    report = GCReport(dry_run=True)
    older_than = now - upload_expiry
    stale = await catalog.stale_uploads(older_than)
    known = await catalog.upload_ids()
    listed = [(u, at) async for u, at in driver.list_uploads()]
    report.uploads_removed = len(stale) + sum(1 for u, at in listed if u not in known and at < older_than)

    def load(conn):
        manifests = conn.execute(
            select(Manifest.id, Manifest.repository_id, Manifest.digest, Manifest.created_at, Manifest.subject)
        ).all()
        refs = conn.execute(select(ManifestReference.manifest_id, ManifestReference.digest, ManifestReference.kind)).all()
        tagged = set(conn.execute(select(Tag.manifest_id)).scalars())
        links = conn.execute(select(RepositoryBlob.repository_id, RepositoryBlob.digest, RepositoryBlob.created_at)).all()
        blobs = conn.execute(select(Blob.digest, Blob.size, Blob.last_used_at, Blob.deleting_at)).all()
        return manifests, refs, tagged, links, blobs

    stored = [d async for d in driver.list_digests()]
    manifests, refs, tagged, links, blobs = await catalog.db.read(load)
    repo_of = {m.id: m.repository_id for m in manifests}
    listed = {(repo_of[mid], d) for mid, d, kind in refs if kind == "manifest" and mid in repo_of}
    gone: set[int] = set()
    if untagged_after is not None:
        cutoff = now - untagged_after
        gone = {m.id for m in manifests if m.id not in tagged and m.subject is None and m.created_at < cutoff
                and (m.repository_id, m.digest) not in listed}
    report.manifests_removed = len(gone)
    needed = {(repo_of[mid], d) for mid, d, kind in refs if kind == "blob" and mid in repo_of and mid not in gone}
    kept_links = set()
    for rid, d, created in links:
        if (rid, d) in needed or created >= now - grace:
            kept_links.add(d)
        else:
            report.links_removed += 1
    rows = {d for d, *_ in blobs}
    for d, size, used, deleting in blobs:
        if d not in kept_links and (used < now - grace or deleting is not None):
            report.blobs_removed += 1
            report.bytes_freed += size or await driver.stat(d) or 0
    for d in stored:
        if d not in rows:
            report.blobs_removed += 1
            report.bytes_freed += await driver.stat(d) or 0
    return report
