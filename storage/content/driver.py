"""The content-driver interface: blob bytes by digest, and upload sessions.

A driver speaks bytes only: it knows nothing of repositories, tenants, HTTP or the
metadata database. Which repository may serve a blob, an upload's offset and its hash
state live in the database (``storage.catalog`` / the upload service); the driver keeps
the bytes and returns a small JSON-serialisable *upload state* that the caller stores in
the database after every successful append, so that any replica can continue any upload.

Two drivers implement it: ``filesystem`` (``storage.content.filesystem``: files under the
data directory, ``local_path`` for sendfile) and ``s3`` (``storage.content.s3``: any
S3-compatible store, uploads as multipart uploads, optional presigned redirects).

Rules every driver follows (the contract tests in tests/content check them):

* Content is placed under a digest only by ``commit``, and only whole: a reader never
  sees a partial blob. ``commit`` is idempotent and safe when several processes commit
  the same digest at once: all succeed, one object remains.
* The caller verifies digests (``storage.content.hashing``); ``commit`` verifies the
  *size*: it places exactly the first ``size`` bytes of the upload, and raises
  ``SizeInvalid`` when the upload holds fewer.
* While ``append`` runs, the caller holds an exclusive lease on the upload (a
  compare-and-set in the database), so a driver never sees two appends of one upload at
  once. Bytes an interrupted append left beyond ``offset`` are ignored or discarded by the
  next ``append``/``commit``.
* Nothing blocks the event loop: file and network I/O runs in threads or in an async client.
* Memory stays bounded whatever the blob size (S3: at most a part or two per upload).
"""
from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

UploadState = dict[str, Any]  # JSON-serialisable, opaque to everyone but the driver


@runtime_checkable
class ContentDriver(Protocol):
    name: str  # "filesystem" | "s3"
    redirects: bool  # redirect_url may answer a URL (else it is never asked: no call on the hot path)

    # ---- lifecycle -------------------------------------------------------------------
    async def check(self) -> None:
        """Start-up probe: the store is reachable, the bucket/directory exists, the credentials
        can write, read and delete a small object. Raise ``storage.errors.DriverUnavailable``
        with a message an operator can act on."""

    async def close(self) -> None:
        """Release clients, sessions and threads."""

    # ---- blobs, by digest --------------------------------------------------------------
    async def stat(self, digest: str) -> int | None:
        """The size of the stored content of ``digest``, or None when there is none."""

    def local_path(self, digest: str) -> Path | None:
        """A local file holding the content (for sendfile), or None when the driver has no
        local files. The file may vanish at any time (garbage collection): open it, then serve."""

    async def redirect_url(self, digest: str, expires_in: int = 300) -> str | None:
        """A short-lived URL a client may GET the content from directly, or None when the
        driver does not redirect (filesystem; s3 with redirect off)."""

    def read(self, digest: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``start`` to ``end`` (exclusive; None = to the end) of the content.
        Raises ``storage.errors.ContentMissing`` (before the first chunk) when absent."""

    async def delete(self, digest: str) -> bool:
        """Remove the content of ``digest``; False when there was none."""

    def list_digests(self) -> AsyncIterator[str]:
        """Every digest with stored content (garbage collection, fsck)."""

    # ---- upload sessions ---------------------------------------------------------------
    async def start_upload(self, upload_id: str) -> UploadState:
        """Prepare a new, empty upload; return its initial state."""

    async def append(
        self, upload_id: str, state: UploadState, offset: int, chunks: AsyncIterable[bytes]
    ) -> tuple[int, UploadState]:
        """Write ``chunks`` at ``offset`` (the upload's committed size, as the database knows
        it). Return (bytes written, new state). On an exception the upload is as it was:
        the caller keeps ``state`` and ``offset``."""

    def read_upload(self, upload_id: str, state: UploadState, size: int) -> AsyncIterator[bytes]:
        """Stream the first ``size`` bytes of an upload (re-hashing when no hash state is at
        hand, e.g. a sha512 digest). May be slow (s3 assembles the parts first)."""

    async def commit(self, upload_id: str, state: UploadState, size: int, digest: str,
                     data: bytes | None = None) -> None:
        """Place exactly the first ``size`` bytes of the upload as the content of ``digest``
        (the caller verified the digest), then forget the upload. When content for
        ``digest`` is already stored it is kept and the upload discarded. Raises
        ``storage.errors.SizeInvalid`` when the upload holds fewer than ``size`` bytes.

        ``data``: the whole upload (``size`` bytes, at offset 0), held by the caller and not
        appended: written and placed in one step (a small blob whose body came with its PUT);
        whatever the upload held is discarded."""

    async def abort(self, upload_id: str, state: UploadState | None) -> None:
        """Discard an upload and its bytes (no error when already gone)."""

    def list_uploads(self) -> AsyncIterator[tuple[str, float]]:
        """(upload id, epoch seconds last written) of every upload with bytes in the store,
        so the sweeper can remove what no database row knows."""
