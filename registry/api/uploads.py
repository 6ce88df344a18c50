"""Blob upload sessions: POST/PATCH/PUT/GET/DELETE /v2/<name>/blobs/uploads/…"""
from __future__ import annotations

import re

from aiohttp import web

from storage import errors as storage_errors
from storage.blobs import BUFFER

from .. import names
from ..auth.guard import ACCESS_KEY
from ..errors import APIError
from .common import repository, services

_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?$")


def _upload_headers(name: str, upload_id: str, offset: int) -> dict[str, str]:
    return {
        "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
        "Range": f"0-{max(offset - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
    }


def _blob_created(name: str, digest: str) -> web.Response:
    return web.Response(
        status=201,
        headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest},
    )


def _chunk_bounds(request: web.Request) -> tuple[int | None, int | None]:
    """(start, length) of the body from Content-Range and Content-Length."""
    start = length = None
    raw = request.headers.get("Content-Range")
    if raw:
        m = _CONTENT_RANGE.match(raw.strip())
        if not m:
            raise APIError("BLOB_UPLOAD_INVALID", f"malformed Content-Range {raw!r}", status=416)
        start, end = int(m.group(1)), int(m.group(2))
        if end < start:
            raise APIError("BLOB_UPLOAD_INVALID", f"Content-Range {raw!r} ends before it starts", status=416)
        length = end - start + 1
    cl = request.content_length
    if cl is not None:
        if length is not None and cl != length:
            raise APIError(
                "BLOB_UPLOAD_INVALID",
                f"Content-Length {cl} does not match Content-Range {raw!r}",
                status=416,
            )
        length = cl
    return start, length


async def _session(request: web.Request) -> tuple[str, str]:
    name = repository(request)
    upload_id = request.match_info["upload_id"]
    svc = services(request)
    if await svc.catalog.upload_repository(upload_id) != name:
        raise APIError("BLOB_UPLOAD_UNKNOWN", detail={"upload": upload_id})
    return name, upload_id


async def start_upload(request: web.Request) -> web.Response:
    """POST: cross-repository mount, monolithic upload (``?digest=``) or a new session."""
    name = repository(request)
    svc = services(request)
    query = request.query
    if "mount" in query:
        digest = names.digest(query["mount"])
        source = query.get("from", "")
        if (
            names.is_name(source)
            and request[ACCESS_KEY].allows(source, "pull")
            and (size := await svc.catalog.blob_size(source, digest)) is not None
            and svc.blobs.size(digest) is not None
        ):
            await svc.catalog.link_blob(name, digest, size)
            return _blob_created(name, digest)
        # not mountable (unknown, or the caller may not read `from`): a normal upload session
    elif "digest" in query:
        digest = names.digest(query["digest"])
        _, length = _chunk_bounds(request)
        size = await svc.blobs.put(request.content.iter_chunked(BUFFER), digest, length)
        await svc.catalog.link_blob(name, digest, size)
        return _blob_created(name, digest)
    upload_id = svc.blobs.start()
    await svc.catalog.create_upload(upload_id, name)
    return web.Response(status=202, headers=_upload_headers(name, upload_id, 0))


async def patch_upload(request: web.Request) -> web.Response:
    """PATCH: append a chunk (streamed). A chunk that does not start at the current end → 416."""
    name, upload_id = await _session(request)
    start, length = _chunk_bounds(request)
    svc = services(request)
    offset = await svc.blobs.append(upload_id, request.content.iter_chunked(BUFFER), start=start, length=length)
    await svc.catalog.touch_upload(upload_id)  # expiry is about idle sessions (see storage.gc)
    return web.Response(status=202, headers=_upload_headers(name, upload_id, offset))


async def finish_upload(request: web.Request) -> web.Response:
    """PUT ?digest=: optional last chunk, then verify and commit."""
    name, upload_id = await _session(request)
    raw = request.query.get("digest")
    if not raw:
        raise APIError("DIGEST_INVALID", "the digest query parameter is required", {"upload": upload_id})
    digest = names.digest(raw)
    svc = services(request)
    if request.body_exists:
        start, length = _chunk_bounds(request)
        await svc.blobs.append(upload_id, request.content.iter_chunked(BUFFER), start=start, length=length)
    try:
        size = await svc.blobs.commit(upload_id, digest)
    except storage_errors.DigestInvalid:
        await svc.catalog.delete_upload(upload_id)  # the bytes are gone too: nothing is kept
        raise
    await svc.catalog.link_blob(name, digest, size, finished_upload=upload_id)
    return _blob_created(name, digest)


async def upload_status(request: web.Request) -> web.Response:
    """GET: where the upload stands (204 + Range)."""
    name, upload_id = await _session(request)
    offset = services(request).blobs.offset(upload_id)
    return web.Response(status=204, headers=_upload_headers(name, upload_id, offset))


async def cancel_upload(request: web.Request) -> web.Response:
    """DELETE: abandon the session and its bytes."""
    _, upload_id = await _session(request)
    svc = services(request)
    try:
        svc.blobs.cancel(upload_id)
    finally:
        await svc.catalog.delete_upload(upload_id)
    return web.Response(status=204)
