"""GET/HEAD/DELETE /v2/<name>/blobs/<digest>."""
from __future__ import annotations

from aiohttp import web

from .. import names
from ..errors import APIError
from . import ranges
from .common import repository, services


async def get_blob(request: web.Request) -> web.StreamResponse:
    """Stream a blob from disk (sendfile). HEAD shares this handler and sends the same headers.

    ``Range`` (GET only) is decided by ``ranges.byte_range`` (RFC 9110): one satisfiable
    range gives 206, an unsatisfiable one 416 with ``Content-Range: bytes */<size>``, and
    anything else (other units, invalid or several ranges) the whole blob with 200."""
    name = repository(request)
    digest = names.digest(request.match_info["digest"])
    svc = services(request)
    size = await svc.catalog.blob_size(name, digest)
    if size is None:
        raise APIError("BLOB_UNKNOWN", f"blob {digest} unknown in {name!r}", {"digest": digest})
    path = svc.blobs.path(digest)
    if not path.is_file():
        raise APIError("BLOB_UNKNOWN", f"blob {digest} is missing from storage", {"digest": digest})
    header = request.headers.get("Range") if request.method == "GET" else None
    try:
        rng = ranges.byte_range(header, size)
    except ranges.RangeNotSatisfiable:
        raise APIError("SIZE_INVALID", f"range {header!r} not satisfiable: the blob has {size} bytes",
                       {"digest": digest, "range": header, "size": size}, status=416,
                       headers={"Content-Range": f"bytes */{size}"}) from None
    return _BlobFile(path, digest, rng)


class _BlobFile(web.FileResponse):
    """sendfile of one blob. FileResponse sees only the range get_blob decided, and the ETag
    is the digest (the same wherever the blob is stored), not the file's mtime and size."""

    def __init__(self, path, digest: str, rng: tuple[int, int] | None) -> None:
        super().__init__(path, headers={"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest,
                                        "Cache-Control": "max-age=31536000"})
        self._digest = digest
        self._range = rng

    async def prepare(self, request: web.BaseRequest):
        # FileResponse acts on Range, If-*, Accept-Encoding by itself: it sees none of the
        # client's headers (copying them could fail on bytes that are not UTF-8), only the
        # range decided in get_blob
        headers = {} if self._range is None else {"Range": f"bytes={self._range[0]}-{self._range[1]}"}
        return await super().prepare(request.clone(headers=headers))

    # FileResponse sets these from the file's stat: the digest is the ETag, no Last-Modified
    etag = property(web.FileResponse.etag.fget, lambda self, _: self.headers.__setitem__("ETag", f'"{self._digest}"'))
    last_modified = property(web.FileResponse.last_modified.fget, lambda self, _: None)


async def delete_blob(request: web.Request) -> web.Response:
    """Unlink a blob from the repository (the bytes go at the next garbage collection)."""
    name = repository(request)
    digest = names.digest(request.match_info["digest"])
    await services(request).catalog.unlink_blob(name, digest)
    return web.Response(status=202, headers={"Docker-Content-Digest": digest})
