"""Content-addressed blob store with streaming, resumable upload sessions.

An upload streams into ``uploads/<id>`` while a sha256 is computed on the fly;
the running hash is kept in memory per session (re-computed from the file when
the process restarted or the client asks for another algorithm). Committing
verifies the digest, fsyncs, and renames the file to ``blobs/<alg>/<hh>/<hex>``:
a reader never sees a partial blob, and a wrong digest keeps nothing.

Blocking file work runs in the default thread pool, one hop per ~1 MiB buffer
(write + hash together), so the event loop never waits on the disk and memory
stays flat whatever the blob size. hashlib releases the GIL on large buffers.
"""
from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from pathlib import Path

from . import digest as digests
from .errors import DigestInvalid, SizeInvalid, UploadOutOfOrder, UploadUnknown
from .paths import Layout

BUFFER = 1 << 20  # bytes gathered before one write+hash hop to the thread pool


@dataclass
class _Session:
    hasher: object | None  # hashlib sha256 object matching `offset`, or None when unknown
    offset: int
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _hash_file(path: Path, algorithm: str) -> tuple[object, int]:
    h = digests.new_hasher(algorithm)
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(BUFFER):
            h.update(chunk)
            size += len(chunk)
    return h, size


class BlobStore:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._sessions: dict[str, _Session] = {}

    # ---- reading -------------------------------------------------------------
    def path(self, digest: str) -> Path:
        return self.layout.blob(digest)

    def size(self, digest: str) -> int | None:
        """Size of a stored blob, or None when it is not on disk."""
        try:
            return self.layout.blob(digest).stat().st_size
        except FileNotFoundError:
            return None

    def read(self, digest: str) -> bytes:
        return self.layout.blob(digest).read_bytes()

    # ---- upload sessions -----------------------------------------------------
    def start(self) -> str:
        upload_id = uuid.uuid4().hex
        self.layout.upload(upload_id).touch(exist_ok=False)
        self._sessions[upload_id] = _Session(digests.new_hasher("sha256"), 0)
        return upload_id

    def _session(self, upload_id: str) -> tuple[Path, _Session]:
        try:
            path = self.layout.upload(upload_id)
        except ValueError:
            raise UploadUnknown() from None
        if not path.exists():
            self._sessions.pop(upload_id, None)
            raise UploadUnknown()
        s = self._sessions.get(upload_id)
        if s is None:  # e.g. after a restart: the file is the truth, the hash is rebuilt lazily
            s = self._sessions[upload_id] = _Session(None, path.stat().st_size)
        return path, s

    def offset(self, upload_id: str) -> int:
        return self._session(upload_id)[1].offset

    async def append(
        self,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> int:
        """Append a stream to an upload; return the new offset.

        ``start`` (from Content-Range) must equal the current offset, or
        UploadOutOfOrder is raised before anything is read. ``length`` (from
        Content-Length/Content-Range), when given, must match what arrives. On
        any failure the upload is truncated back to where it was.
        """
        path, s = self._session(upload_id)
        async with s.lock:
            if start is not None and start != s.offset:
                raise UploadOutOfOrder(s.offset)
            begin = s.offset
            loop = asyncio.get_running_loop()
            hasher = s.hasher
            f = await loop.run_in_executor(None, open, path, "r+b")
            try:
                await loop.run_in_executor(None, f.seek, begin)

                def write(buf: bytes) -> None:
                    f.write(buf)
                    if hasher is not None:
                        hasher.update(buf)

                written = 0
                pending: list[bytes] = []
                pending_size = 0
                async for chunk in chunks:
                    if not chunk:
                        continue
                    pending.append(chunk)
                    pending_size += len(chunk)
                    if pending_size >= BUFFER:
                        buf = b"".join(pending)
                        pending, pending_size = [], 0
                        await loop.run_in_executor(None, write, buf)
                        written += len(buf)
                if pending:
                    buf = b"".join(pending)
                    await loop.run_in_executor(None, write, buf)
                    written += len(buf)
                if length is not None and written != length:
                    raise SizeInvalid(f"expected {length} bytes, received {written}")
                await loop.run_in_executor(None, f.flush)
            except BaseException:
                # lose nothing, keep nothing half-written: back to the last good offset
                await loop.run_in_executor(None, _truncate, f, begin)
                s.hasher = None  # the running hash saw bytes that are gone; rebuild lazily
                raise
            finally:
                await loop.run_in_executor(None, f.close)
            s.offset = begin + written
            return s.offset

    async def commit(self, upload_id: str, digest: str) -> int:
        """Verify and move a finished upload into the store; return its size.

        A digest mismatch deletes the upload and raises DigestInvalid.
        """
        algorithm, _ = digests.parse(digest)
        path, s = self._session(upload_id)
        async with s.lock:
            loop = asyncio.get_running_loop()
            hasher = s.hasher if algorithm == "sha256" else None
            if hasher is None:
                hasher, size = await loop.run_in_executor(None, _hash_file, path, algorithm)
            else:
                size = s.offset
            actual = f"{algorithm}:{hasher.hexdigest()}"
            if actual != digest:
                self._discard(upload_id, path)
                raise DigestInvalid(
                    "provided digest did not match uploaded content",
                    {"expected": digest, "actual": actual},
                )
            await loop.run_in_executor(None, self._place, path, self.layout.blob(digest))
            self._sessions.pop(upload_id, None)
            return size

    def _place(self, src: Path, dst: Path) -> None:
        fd = os.open(src, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if dst.exists():  # deduplicated: identical content is already stored
            src.unlink()
            os.utime(dst)  # fresh mtime: garbage collection's grace period protects it again
            return
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        _fsync_dir(dst.parent)

    def cancel(self, upload_id: str) -> None:
        path, _ = self._session(upload_id)
        self._discard(upload_id, path)

    def _discard(self, upload_id: str, path: Path) -> None:
        self._sessions.pop(upload_id, None)
        path.unlink(missing_ok=True)

    async def put(self, chunks: AsyncIterable[bytes], digest: str, length: int | None = None) -> int:
        """Monolithic upload: stream, verify and commit in one go."""
        digests.parse(digest)
        upload_id = self.start()
        try:
            await self.append(upload_id, chunks, length=length)
            return await self.commit(upload_id, digest)
        except BaseException:
            try:
                self.cancel(upload_id)
            except UploadUnknown:
                pass
            raise

    async def put_bytes(self, data: bytes, digest: str) -> int:
        async def one():
            yield data
        return await self.put(one(), digest, len(data))

    # ---- deletion ------------------------------------------------------------
    def delete(self, digest: str) -> bool:
        try:
            self.layout.blob(digest).unlink()
            return True
        except FileNotFoundError:
            return False

    def stored_digests(self):
        """Every digest with a file on disk (for garbage collection)."""
        for alg_dir in self.layout.blobs.iterdir() if self.layout.blobs.exists() else ():
            for sub in alg_dir.iterdir():
                for f in sub.iterdir():
                    yield f"{alg_dir.name}:{f.name}"

    def upload_ids(self) -> list[str]:
        return [p.name for p in self.layout.uploads.iterdir()] if self.layout.uploads.exists() else []


def _truncate(f, size: int) -> None:
    f.flush()
    f.truncate(size)
