"""The upload service: blob upload sessions any replica can continue.

Everything about a session lives in its database row (``storage.models.Upload``): the
committed offset, the SHA-256 state at that offset (``storage.content.hashing``), the
content driver's state, and a lease. A PATCH or PUT:

1. claims the lease with one compare-and-set UPDATE (no unexpired lease held by another
   request; and ``offset = start`` when Content-Range gives a start). The loser of two
   concurrent requests, or a chunk that does not start at the offset, gets
   ``UploadOutOfOrder`` (416 with the committed offset) before a byte is read;
2. streams the body through the hash into ``driver.append`` at the committed offset,
   renewing the lease while a long body streams (``LEASE`` seconds, renewed every
   ``RENEW``; the writer stops if it cannot renew in time);
3. records the new offset, hash state and driver state and releases the lease in one UPDATE
   conditioned on still holding it. On any failure the row stays as it was: bytes written
   past the offset are ignored (and overwritten) by the next append.

PUT ?digest= then verifies the digest from the hash state at the database's offset (or
re-hashes the upload through ``driver.read_upload`` when there is no state: a sha512
digest, or no libcrypto), and ``Blobs.place`` commits exactly that many bytes
(``driver.commit(size=offset)`` refuses fewer): what is placed is what was hashed.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import time
import uuid
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from storage import digest as digests
from storage.catalog import Catalog
from storage.content import ContentDriver
from storage.content.hashing import ResumableSHA256, resumable_sha256
from storage.errors import BlobDeleting, BlobTooLarge, DigestInvalid, QuotaExceeded, SizeInvalid, UploadBusy

from .blobs import MARK_STALE, Blobs

log = logging.getLogger("berth.uploads")

BUFFER = 1 << 20  # bytes gathered before one hash hop to the thread pool and one driver write
LEASE = 30.0  # seconds a claimed session stays leased without renewal
RENEW = 10.0  # seconds between renewals while a body streams
MARGIN = 5.0  # stop writing this long before the lease would lapse unrenewed
INLINE_HASH = 64 * 1024  # smaller buffers are hashed on the event loop (~0.1 ms), larger in a thread


@dataclass(frozen=True)
class Room:
    """What a tenant with a quota may still add, read when a push starts (advisory: the check
    that counts runs in the transaction that links the blob, storage.catalog._check_quota)."""
    tenant: str
    quota: int
    usage: int

    def check(self, size: int) -> None:
        """Refuse before storing: ``size`` bytes new to the tenant would pass its quota."""
        if self.usage + size > self.quota:
            raise QuotaExceeded(self.tenant, self.quota, self.usage, size)


@dataclass(frozen=True)
class UploadStatus:
    upload_id: str
    offset: int


def _host_key() -> str | None:
    """8 hex characters naming this host's PID namespace (host name, boot id, namespace inode),
    or None where it cannot be told (then leases of dead processes simply expire)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{zlib.crc32(f'{socket.gethostname()}|{boot}|{pidns}'.encode()):08x}"


_HOST = _host_key()


def new_token() -> str:
    """A lease token (32 characters): the holder's PID namespace and PID, then random bytes."""
    if _HOST is None:
        return uuid.uuid4().hex
    return f"{_HOST}{os.getpid() & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"


def holder_is_dead(token: str | None) -> bool:
    """True only when ``token`` was issued by another process of this PID namespace that no
    longer exists; a live process, another host or an unknown token is never dead."""
    if _HOST is None or not token or len(token) != 32 or token[:8] != _HOST:
        return False
    try:
        pid = int(token[8:16], 16)
    except ValueError:
        return False
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. EPERM: it exists
        return False
    return False


class _Lease:
    """A held upload lease, renewed in the background while the body streams."""

    def __init__(self, catalog: Catalog, upload_id: str, token: str, offset: int, claimed_at: float) -> None:
        self.catalog = catalog
        self.upload_id = upload_id
        self.token = token
        self.offset = offset
        self.deadline = claimed_at + LEASE  # time.monotonic() after which the lease may be another's
        self.lost = False
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._renew())

    @property
    def renewing(self) -> bool:
        return self._task is not None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(RENEW)
            sent = time.monotonic()
            try:
                held = await self.catalog.renew_upload_lease(self.upload_id, self.token, time.time() + LEASE)
            except Exception:  # the database hiccuped: try again; check() stops the writer in time
                log.warning("could not renew the lease of upload %s", self.upload_id, exc_info=True)
                continue
            if not held:
                self.lost = True
                return
            self.deadline = sent + LEASE

    def check(self) -> None:
        """Raise before writing when the lease is (or may be) no longer ours."""
        if self.lost or time.monotonic() > self.deadline - MARGIN:
            self.lost = True
            raise UploadBusy(self.offset)


class Uploads:
    def __init__(self, catalog: Catalog, driver: ContentDriver, blobs: Blobs, max_blob_size: int | None,
                 *, max_sessions: int | None = None, session_expiry: float = 24 * 3600) -> None:
        self.catalog = catalog
        self.driver = driver
        self.blobs = blobs
        self.max_blob_size = max_blob_size
        self.max_sessions = max_sessions or None  # open sessions per principal (0/None: no limit)
        self.session_expiry = session_expiry

    # ---- starting ----------------------------------------------------------------------
    async def start(self, name: str, principal: str | None = None) -> UploadStatus:
        """A new session; TooManyUploads when ``principal`` already has ``max_sessions`` open."""
        upload_id = uuid.uuid4().hex
        state = await self.driver.start_upload(upload_id)
        hasher = resumable_sha256()
        try:
            await self.catalog.create_upload(
                upload_id, name, hasher.state() if hasher else None, state,
                principal=principal, max_open=self.max_sessions, expiry=self.session_expiry,
            )
        except BaseException:
            await asyncio.shield(self.driver.abort(upload_id, state))
            raise
        return UploadStatus(upload_id, 0)

    async def mount(self, name: str, digest: str, source: str) -> bool:
        """Cross-repository mount: link ``digest`` from ``source`` (which the caller may pull).
        False when it cannot be mounted (unknown there, missing content, being garbage
        collected): the client then uploads it."""
        if await self.catalog.blob_size(source, digest) is None or await self.driver.stat(digest) is None:
            return False
        return await self.catalog.mount_blob(source, name, digest) is not None

    async def put(self, name: str, digest: str, chunks: AsyncIterable[bytes], length: int | None) -> None:
        """Monolithic upload (POST ?digest=): stream, verify, place, link. No session row."""
        algorithm, _ = digests.parse(digest)
        self._check_length(0, length)
        room = await self._room(name, digest)
        if room is not None and length is not None:
            room.check(length)  # announced: refused before a byte is stored
        upload_id = uuid.uuid4().hex
        state = await self.driver.start_upload(upload_id)
        placed = False
        try:
            hasher = digests.new_hasher(algorithm)
            written, state = await self.driver.append(
                upload_id, state, 0, self._metered(chunks, hasher, 0, length, None, room)
            )
            _verify(digest, f"{algorithm}:{hasher.hexdigest()}")
            await self.blobs.place(name, digest, written, upload_id, state, session=False)
            placed = True
        finally:
            if not placed:
                await asyncio.shield(self.driver.abort(upload_id, state))

    # ---- a session -----------------------------------------------------------------------
    async def status(self, name: str, upload_id: str) -> UploadStatus:
        record = await self.catalog.get_upload(upload_id, name)
        return UploadStatus(upload_id, record.offset)

    async def append(
        self, name: str, upload_id: str, chunks: AsyncIterable[bytes] | None, start: int | None, length: int | None,
        *, body: bytes | None = None,
    ) -> UploadStatus:
        """PATCH: one chunk at the committed offset (``body``: the chunk, already received whole)."""
        if body is not None:
            chunks = _once(body)
        self._check_length(start or 0, length)
        lease, record = await self._claim(name, upload_id, start, quota=True)
        room = Room(*record.room) if record.room is not None else None
        try:
            if room is not None and length is not None:
                room.check(record.offset + length)
            offset, _hasher, _state = await self._write(lease, record, chunks, length, save=True, room=room,
                                                        renew=body is None)
        except QuotaExceeded:
            await self._discard(upload_id, record.driver_state)  # nothing of the push stays behind
            raise
        except BaseException:
            await asyncio.shield(self.catalog.release_upload(upload_id, lease.token))
            raise
        return UploadStatus(upload_id, offset)

    async def finish(
        self,
        name: str,
        upload_id: str,
        digest: str,
        chunks: AsyncIterable[bytes] | None,
        start: int | None,
        length: int | None,
        *,
        body: bytes | None = None,
    ) -> None:
        """PUT ?digest=: an optional last chunk, then verify what the database says was
        received and place exactly that. A wrong digest (or an upload holding fewer bytes
        than recorded) deletes the session and keeps nothing.

        ``body``: the last chunk, already received whole (instead of ``chunks``). When it is
        the whole blob (the session is at offset 0 and it has the digest asked for) the claim
        pins the blob's row in its own transaction and the body is written and placed in one
        step (``Blobs.place(pinned=True, data=…)``): two round trips fewer, and no lease
        renewal (nothing streams while the lease is held)."""
        algorithm, _ = digests.parse(digest)
        if body is not None:
            chunks = _once(body)
        if chunks is not None:
            self._check_length(start or 0, length)
        pin = None
        if (
            body is not None and algorithm == "sha256" and not start
            and (length is None or length == len(body))
            and (self.max_blob_size is None or len(body) <= self.max_blob_size)
            and digests.of_bytes(body, "sha256") == digest
        ):
            pin = (len(body), time.time() - MARK_STALE)
        lease, record = await self._claim(name, upload_id, start if chunks is not None else None,
                                          quota=True, digest=digest, pin=pin)
        if record.pinned:
            await self._place_whole(name, upload_id, digest, body, lease, record)
            return
        room = Room(*record.room) if record.room is not None else None
        if body is None or record.offset > 0:
            # held through the last chunk, the re-hash (if any) and the commit (all small when the
            # whole upload is a body held in memory: then it is not renewed)
            lease.start()
        done = False
        try:
            offset, hasher, state = record.offset, _resume(record), record.driver_state
            try:
                if room is not None:
                    room.check(record.offset + (length or 0))
                if chunks is not None:
                    # not recorded: the commit below follows at once; should it fail, the session
                    # stays at its recorded offset and these bytes are overwritten by the next append
                    offset, hasher, state = await self._write(lease, record, chunks, length, save=False, room=room,
                                                              renew=body is None)
            except QuotaExceeded:
                await self._discard(upload_id, state)  # nothing of the push stays behind
                done = True
                raise
            try:
                if algorithm == "sha256" and hasher is not None:
                    actual = f"sha256:{hasher.hexdigest()}"
                else:  # no running state for this algorithm: read the committed bytes back
                    actual = await self._rehash(upload_id, state, offset, algorithm)
                _verify(digest, actual)
                lease.check()
                await self.blobs.place(name, digest, offset, upload_id, state, session=True)
            except (DigestInvalid, SizeInvalid, BlobDeleting, QuotaExceeded):
                # nothing is kept (refused by the quota at the link: the placed content is
                # linked nowhere, and garbage collection removes it after its grace period)
                await self._discard(upload_id, state)
                done = True
                raise
            done = True
        finally:
            await lease.stop()
            if not done:
                await asyncio.shield(self.catalog.release_upload(upload_id, lease.token))

    async def _place_whole(self, name: str, upload_id: str, digest: str, body: bytes, lease: _Lease, record) -> None:
        """``finish`` of a session at offset 0 whose PUT carried the whole blob, verified, and whose
        claim pinned the blob's row: write and place it in one step, then link."""
        done = False
        try:
            try:
                lease.check()
                await self.blobs.place(name, digest, len(body), upload_id, record.driver_state,
                                       session=True, pinned=True, data=body)
            except (SizeInvalid, BlobDeleting, QuotaExceeded):
                await self._discard(upload_id, record.driver_state)  # as finish: nothing is kept
                done = True
                raise
            done = True
        finally:
            if not done:
                await asyncio.shield(self.catalog.release_upload(upload_id, lease.token))

    async def cancel(self, name: str, upload_id: str) -> None:
        record = await self.catalog.get_upload(upload_id, name)
        await self._discard(upload_id, record.driver_state)

    # ---- internals -------------------------------------------------------------------------
    def _check_length(self, start: int, length: int | None) -> None:
        """Refuse before reading a byte when the announced size passes max_blob_size."""
        if self.max_blob_size is not None and length is not None and start + length > self.max_blob_size:
            raise BlobTooLarge(self.max_blob_size)

    async def _room(self, name: str, digest: str | None = None) -> Room | None:
        r = await self.catalog.quota_room(name, digest)
        return Room(*r) if r is not None else None

    async def _claim(self, name: str, upload_id: str, start: int | None, *, quota: bool = False,
                     digest: str | None = None, pin: tuple[int, float] | None = None) -> tuple[_Lease, object]:
        """Take the session's lease; with ``quota`` the record also carries the tenant's room;
        with ``pin`` the claim may pin ``digest`` too (``Catalog.claim_upload``)."""
        token = new_token()
        claimed_at = time.monotonic()
        q = {"quota": quota, "digest": digest, "pin": pin}
        try:
            record = await self.catalog.claim_upload(upload_id, name, token, time.time() + LEASE, start, **q)
        except UploadBusy as busy:
            if not holder_is_dead(busy.holder):
                raise
            # a process of this host died holding it (killed mid-PATCH): no need to wait out its lease
            log.info("upload %s: taking over the lease of a dead process", upload_id)
            claimed_at = time.monotonic()
            record = await self.catalog.claim_upload(
                upload_id, name, token, time.time() + LEASE, start, holder=busy.holder, **q
            )
        return _Lease(self.catalog, upload_id, token, record.offset, claimed_at), record

    async def _write(self, lease: _Lease, record, chunks, length, *, save: bool, room: Room | None = None,
                     renew: bool = True):
        """Append under the lease; when ``save``, record the result and release the lease.
        (offset, hasher, driver state). ``renew`` false: the body is in memory already, nothing
        streams, and the lease is not renewed while it is written."""
        hasher = _resume(record)
        if self.max_blob_size is not None and length is not None and record.offset + length > self.max_blob_size:
            raise BlobTooLarge(self.max_blob_size)
        renewing = lease.renewing
        if renew:
            lease.start()
        try:
            written, state = await self.driver.append(
                record.id, record.driver_state, record.offset,
                self._metered(chunks, hasher, record.offset, length, lease, room),
            )
        finally:
            if not renewing:  # the caller's, when it started it
                await lease.stop()
        lease.check()
        offset = record.offset + written
        if save and not await self.catalog.save_upload(
            record.id, lease.token, offset, hasher.state() if hasher else None, state
        ):  # the lease lapsed (or the session was deleted) meanwhile: these bytes do not count
            raise UploadBusy(record.offset)
        return offset, hasher, state

    async def _metered(
        self, chunks: AsyncIterable[bytes], hasher, offset: int, length: int | None, lease: _Lease | None,
        room: Room | None = None,
    ) -> AsyncIterator[bytes]:
        """The body in ~BUFFER pieces, hashed in the thread pool, checked against the announced
        length, max_blob_size and the tenant's quota (``room``) as it arrives (raising stops the
        driver's append)."""
        loop = asyncio.get_running_loop()
        limit = self.max_blob_size
        total = 0
        pending: list[bytes] = []
        pending_size = 0
        hashing: asyncio.Future | None = None  # the previous buffer's hash, overlapping its write

        async def emit() -> bytes:
            nonlocal hashing
            buf = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            if lease is not None:
                lease.check()
            if hashing is not None:
                await hashing
                hashing = None
            if hasher is not None:
                if len(buf) <= INLINE_HASH:
                    hasher.update(buf)  # cheaper than a thread hop
                else:
                    hashing = loop.run_in_executor(None, hasher.update, buf)
            return buf

        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                total += len(chunk)
                if limit is not None and offset + total > limit:
                    raise BlobTooLarge(limit)
                if room is not None:
                    room.check(offset + total)
                if length is not None and total > length:
                    raise SizeInvalid(f"received more than the {length} bytes announced")
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= BUFFER:
                    pending_size = 0
                    yield await emit()
            if pending:
                yield await emit()
            if length is not None and total != length:
                raise SizeInvalid(f"expected {length} bytes, received {total}")
        finally:
            if hashing is not None:  # the hasher is done with before anyone reads or saves it
                await asyncio.shield(hashing)

    async def _rehash(self, upload_id: str, state, size: int, algorithm: str) -> str:
        loop = asyncio.get_running_loop()
        h = hashlib.new(algorithm)
        received = 0
        async for chunk in self.driver.read_upload(upload_id, state, size):
            received += len(chunk)
            await loop.run_in_executor(None, h.update, chunk)
        if received != size:
            raise SizeInvalid(f"upload holds {received} bytes, fewer than the {size} recorded", {"upload": upload_id})
        return f"{algorithm}:{h.hexdigest()}"

    async def _discard(self, upload_id: str, state) -> None:
        async def run() -> None:
            try:
                await self.driver.abort(upload_id, state)
            finally:
                await self.catalog.delete_upload(upload_id)

        await asyncio.shield(run())


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _resume(record) -> ResumableSHA256 | None:
    """The SHA-256 at the session's offset: from its state, fresh at offset 0, or None (no
    state recorded, or no libcrypto here): then the commit re-reads the upload."""
    if record.hash_state is not None:
        return resumable_sha256(record.hash_state)
    return resumable_sha256() if record.offset == 0 else None


def _verify(expected: str, actual: str) -> None:
    if actual != expected:
        raise DigestInvalid("provided digest did not match uploaded content", {"expected": expected, "actual": actual})


__all__ = ["Uploads", "UploadStatus", "BUFFER", "LEASE", "RENEW"]
