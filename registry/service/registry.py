"""What the HTTP handlers may ask of a registry, as Protocols.

The handlers (``registry.api``) only speak to these. Berth's own implementations are in this
package (``Blobs``, ``Uploads``, ``Manifests``, ``Tags``, ``Repositories``: content driver +
metadata catalog); a pull-through cache would be another implementation of the same
Protocols, and the handlers would not change.
"""
from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from typing import Protocol

from storage.catalog import ManifestRecord

from .blobs import BlobContent
from .manifests import PutResult
from .uploads import UploadStatus


class BlobService(Protocol):
    async def open(self, name: str, digest: str) -> BlobContent: ...
    async def unlink(self, name: str, digest: str) -> None: ...


class UploadService(Protocol):
    async def start(self, name: str, principal: str | None = None) -> UploadStatus: ...
    async def mount(self, name: str, digest: str, source: str) -> bool: ...
    async def put(self, name: str, digest: str, chunks: AsyncIterable[bytes], length: int | None) -> None: ...
    async def status(self, name: str, upload_id: str) -> UploadStatus: ...
    async def append(self, name: str, upload_id: str, chunks: AsyncIterable[bytes], start: int | None,
                     length: int | None) -> UploadStatus: ...
    async def finish(self, name: str, upload_id: str, digest: str, chunks: AsyncIterable[bytes] | None,
                     start: int | None, length: int | None) -> None: ...
    async def cancel(self, name: str, upload_id: str) -> None: ...


class ManifestService(Protocol):
    async def get(self, name: str, reference: str) -> ManifestRecord: ...
    async def put(self, name: str, reference: str, by_digest: bool, body: bytes,
                  content_type: str | None) -> PutResult: ...
    async def delete(self, name: str, reference: str, by_digest: bool) -> None: ...
    async def referrers(self, name: str, subject: str, artifact_type: str | None) -> list[dict]: ...


class TagService(Protocol):
    async def list(self, name: str, n: int | None, last: str | None) -> list[str]: ...


class RepositoryService(Protocol):
    async def list(self, n: int | None, last: str | None, visible: Callable[[str], bool]) -> list[str]: ...
