"""GET/HEAD/DELETE /v2/<name>/blobs/<digest>."""
from __future__ import annotations

from aiohttp import web

from .. import names
from ..errors import APIError
from .common import repository, services
from .ranges import RangeNotSatisfiable, byte_range


async def get_blob(request: web.Request) -> web.StreamResponse:
    """A blob's content: 307 to the driver's URL, sendfile of its local file, or streamed
    from the driver. HEAD shares this handler and sends the same headers.

    ``Range`` (GET only) is decided by ``ranges.byte_range`` (RFC 9110): one satisfiable
    range gives 206, an unsatisfiable one 416 with ``Content-Range: bytes */<size>``, and
    anything else (other units, invalid or several ranges) the whole blob with 200."""
    name = repository(request)
    digest = names.digest(request.match_info["digest"])
    blob = await services(request).blobs.open(name, digest, head=request.method == "HEAD")
    size = blob.size
    header = request.headers.get("Range") if request.method == "GET" else None
    try:
        rng = byte_range(header, size)
    except RangeNotSatisfiable:
        raise APIError("SIZE_INVALID", f"range {header!r} not satisfiable: the blob has {size} bytes",
                       {"digest": digest, "range": header, "size": size}, status=416,
                       headers={"Content-Range": f"bytes */{size}"}) from None
    if blob.redirect_url is not None:
        return web.Response(status=307, headers={"Location": blob.redirect_url, "Docker-Content-Digest": digest})
    if blob.local_path is not None:
        return _BlobFile(blob.local_path, digest, rng)
    return await _stream(request, blob, digest, rng)


def _headers(digest: str) -> dict[str, str]:
    return {
        "Content-Type": "application/octet-stream",
        "Docker-Content-Digest": digest,
        "Cache-Control": "max-age=31536000",
    }


class _BlobFile(web.FileResponse):
    """sendfile of one blob. FileResponse sees only the range get_blob decided, and the ETag
    is the digest (the same wherever the blob is stored), not the file's mtime and size."""

    def __init__(self, path, digest: str, rng: tuple[int, int] | None) -> None:
        super().__init__(path, headers=_headers(digest))
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


async def _stream(request: web.Request, blob, digest: str, rng: tuple[int, int] | None) -> web.StreamResponse:
    """Serve from ``driver.read`` with the same headers and Range answers as ``_BlobFile``."""
    size = blob.size
    headers = {**_headers(digest), "ETag": f'"{digest}"', "Accept-Ranges": "bytes"}
    status, start, end = (200, 0, size) if rng is None else (206, rng[0], rng[1] + 1)
    if rng is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = end - start
    if request.method == "HEAD" or end == start:
        await response.prepare(request)
        await response.write_eof()
        return response
    chunks = blob.read(start, end)
    try:
        try:
            first = await chunks.__anext__()  # ContentMissing surfaces here, before any header is sent
        except StopAsyncIteration:
            first = b""
        await response.prepare(request)
        await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
    finally:
        await chunks.aclose()  # the driver's file or connection, also when the client went away
    await response.write_eof()
    return response


async def delete_blob(request: web.Request) -> web.Response:
    """Unlink a blob from the repository (the bytes go at the next garbage collection)."""
    name = repository(request)
    digest = names.digest(request.match_info["digest"])
    await services(request).blobs.unlink(name, digest)
    return web.Response(status=202, headers={"Docker-Content-Digest": digest})
