"""The blob service: read a repository's blob, delete its link, and place verified content
(pin → commit → link), which every way of pushing a blob ends with.

The pin protocol (garbage collection, issue 9): a push inserts or refreshes the blob's row
(``last_used_at`` = now) *before* it places the content. Garbage collection only deletes the
content of rows it has first marked (``deleting_at``), and only rows no repository links that
were not used for its grace period; a pin of a marked row fails, so the push waits for the
collector to finish (content gone, row gone), then pins a fresh row and places the content it
still holds in its upload. Every linked blob has its content, always.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from storage.catalog import Catalog
from storage.content import ContentDriver, UploadState
from storage.errors import BlobDeleting, BlobUnknown, ContentMissing, UploadUnknown

log = logging.getLogger("berth.blobs")

PIN_WAIT = 120.0  # seconds a push waits for a garbage collection that is deleting the same blob
MARK_STALE = 15 * 60  # a collector's mark older than this is from a collector that died midway


async def pin_backoff(attempt: int) -> None:
    """Pause between two pins refused because a collector is deleting the blob (tests hook it)."""
    await asyncio.sleep(min(0.05 * (attempt + 1), 1.0))


@dataclass(frozen=True)
class BlobContent:
    """How to answer a GET of a blob: one of ``redirect_url``, ``local_path`` or ``read``."""
    digest: str
    size: int
    redirect_url: str | None
    local_path: Path | None
    driver: ContentDriver

    def read(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self.driver.read(self.digest, start, end)


class Blobs:
    def __init__(self, catalog: Catalog, driver: ContentDriver) -> None:
        self.catalog = catalog
        self.driver = driver

    async def size(self, name: str, digest: str) -> int | None:
        """Size of a blob ``name`` may serve, or None."""
        return await self.catalog.blob_size(name, digest)

    async def open(self, name: str, digest: str, *, head: bool = False) -> BlobContent:
        """What a GET/HEAD of ``digest`` in ``name`` serves; BlobUnknown / ContentMissing otherwise.

        ``head``: only the headers will be sent, so the answer comes from the database alone (one
        query, no file or object touched): a linked blob has its content (the pin protocol above;
        ``berth fsck`` checks it), and a GET still finds out if it does not."""
        size = await self.catalog.blob_size(name, digest)
        if size is None:
            raise BlobUnknown(f"blob {digest} unknown in {name!r}", {"digest": digest})
        url = await self.driver.redirect_url(digest) if self.driver.redirects else None
        path = None if url is not None or head else self.driver.local_path(digest)
        if path is not None and await self.driver.stat(digest) is None:
            raise ContentMissing(f"blob {digest} is missing from storage", {"digest": digest})
        return BlobContent(digest, size, url, path, self.driver)

    async def unlink(self, name: str, digest: str) -> None:
        """Remove the blob from the repository (its content goes at a later garbage collection)."""
        await self.catalog.unlink_blob(name, digest)

    async def place(
        self, name: str, digest: str, size: int, upload_id: str, state: UploadState, *, session: bool,
        pinned: bool = False, data: bytes | None = None,
    ) -> None:
        """Place a verified upload as the content of ``digest`` and link it to ``name``: pin the
        row (unless the caller already did, ``pinned``: in the transaction that claimed the
        session), ``driver.commit`` exactly ``size`` bytes (``data``: the whole upload, held in
        memory and not written yet), then link (ending the upload session's row in the same
        transaction when ``session``)."""
        if not pinned:
            await self.pin(digest, size)
        try:
            await self.driver.commit(upload_id, state, size, digest, data=data)
        except UploadUnknown:
            # the upload is gone, but a PUT of this same session may have committed it and died
            # (SIGKILL) before the link: its row still says "complete", and the content under the
            # digest is whole and verified (only a verified commit places it). Link that, so the
            # client's retry of the PUT succeeds instead of 404 on a session it cannot finish.
            if not session or await self.driver.stat(digest) != size:
                raise
            log.info("upload %s was committed by a request that died before its link; linking %s", upload_id, digest)
        await self.catalog.link_blob(name, digest, size, finished_upload=upload_id if session else None)

    async def pin(self, digest: str, size: int) -> None:
        deadline = time.monotonic() + PIN_WAIT
        attempt = 0
        while not await self.catalog.pin_blob(digest, size, steal_before=time.time() - MARK_STALE):
            if time.monotonic() > deadline:
                raise BlobDeleting(f"blob {digest} is being removed by garbage collection; push it again",
                                   {"digest": digest})
            if attempt == 0:
                log.info("push of %s waits for garbage collection to finish deleting it", digest)
            await pin_backoff(attempt)
            attempt += 1
