"""GET/HEAD/DELETE /v2/<name>/blobs/<digest>."""
from __future__ import annotations

from aiohttp import web

from .. import names
from .common import repository, services
from .ranges import RangeNotSatisfiable, byte_range


async def get_blob(request: web.Request) -> web.StreamResponse:
    """A blob's content: 307 to the driver's URL, sendfile of its local file, or streamed
    from the driver; ``Range`` gives 206. HEAD shares this handler."""
    name = repository(request)
    digest = names.digest(request.match_info["digest"])
    blob = await services(request).blobs.open(name, digest)
    headers = {
        "Content-Type": "application/octet-stream",
        "Docker-Content-Digest": digest,
        "Cache-Control": "max-age=31536000",
    }
    if blob.redirect_url is not None:
        return web.Response(status=307, headers={"Location": blob.redirect_url, "Docker-Content-Digest": digest})
    if blob.local_path is not None:
        return web.FileResponse(blob.local_path, headers=headers)
    return await _stream(request, blob, headers)


async def _stream(request: web.Request, blob, headers: dict[str, str]) -> web.StreamResponse:
    """Serve from ``driver.read`` with the headers and Range handling FileResponse gives."""
    size = blob.size
    try:
        wanted = byte_range(request.headers.get("Range"), size)
    except RangeNotSatisfiable:
        return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    status, start, end = (200, 0, size) if wanted is None else (206, wanted[0], wanted[1] + 1)
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Accept-Ranges"] = "bytes"
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
