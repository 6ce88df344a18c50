"""GET/HEAD/DELETE /v2/<name>/blobs/<digest>."""
from __future__ import annotations

from aiohttp import web

from .. import names
from ..errors import APIError
from .common import repository, services


async def get_blob(request: web.Request) -> web.StreamResponse:
    """Stream a blob from disk (sendfile); ``Range`` gives 206. HEAD shares this handler."""
    name = repository(request)
    digest = names.digest(request.match_info["digest"])
    svc = services(request)
    if await svc.catalog.blob_size(name, digest) is None:
        raise APIError("BLOB_UNKNOWN", f"blob {digest} unknown in {name!r}", {"digest": digest})
    path = svc.blobs.path(digest)
    if not path.is_file():
        raise APIError("BLOB_UNKNOWN", f"blob {digest} is missing from storage", {"digest": digest})
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "application/octet-stream",
            "Docker-Content-Digest": digest,
            "Cache-Control": "max-age=31536000",
        },
    )


async def delete_blob(request: web.Request) -> web.Response:
    """Unlink a blob from the repository (the bytes go at the next garbage collection)."""
    name = repository(request)
    digest = names.digest(request.match_info["digest"])
    await services(request).catalog.unlink_blob(name, digest)
    return web.Response(status=202, headers={"Docker-Content-Digest": digest})
