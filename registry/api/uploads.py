"""Blob upload sessions: POST/PATCH/PUT/GET/DELETE /v2/<name>/blobs/uploads/…

HTTP only: headers in, headers out. ``registry.service.uploads`` holds the sessions.
"""
from __future__ import annotations

import contextlib
import re

from aiohttp import web

from storage.errors import UploadOutOfOrder

from .. import names
from ..auth.guard import ACCESS_KEY
from ..errors import APIError
from ..limits import principal_of
from ..service.uploads import BUFFER
from .common import repository, services

_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?$")
_UPLOAD_ID = re.compile(r"^[a-f0-9]{32}\Z")


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


def _body(request: web.Request) -> bytes | None:
    """The whole body when it has already arrived (a small chunk or blob usually comes in the
    packets of its headers): the service then skips streaming it."""
    content = request.content
    if content.is_eof() and content.exception() is None:
        return content.read_nowait()
    return None


def _session(request: web.Request) -> tuple[str, str]:
    name = repository(request)
    upload_id = request.match_info["upload_id"]
    if not _UPLOAD_ID.match(upload_id):  # Berth's ids are uuid4().hex: anything else names nothing
        raise APIError("BLOB_UPLOAD_UNKNOWN", detail={"upload": upload_id})
    return name, upload_id


@contextlib.contextmanager
def _where(name: str, upload_id: str):
    """An out-of-order (or concurrent) chunk: 416 that says where the upload stands."""
    try:
        yield
    except UploadOutOfOrder as e:
        e.headers = _upload_headers(name, upload_id, e.offset)
        raise


async def start_upload(request: web.Request) -> web.Response:
    """POST: cross-repository mount, monolithic upload (``?digest=``) or a new session."""
    name = repository(request)
    uploads = services(request).uploads
    query = request.query
    if "mount" in query:
        digest = names.digest(query["mount"])
        source = query.get("from", "")
        if (
            names.is_name(source)
            and request[ACCESS_KEY].allows(source, "pull")
            and await uploads.mount(name, digest, source)
        ):
            return _blob_created(name, digest)
        # not mountable (unknown, or the caller may not read `from`): a normal upload session
    elif "digest" in query:
        digest = names.digest(query["digest"])
        _, length = _chunk_bounds(request)
        await uploads.put(name, digest, request.content.iter_chunked(BUFFER), length)
        return _blob_created(name, digest)
    status = await uploads.start(name, principal_of(request))
    return web.Response(status=202, headers=_upload_headers(name, status.upload_id, status.offset))


async def patch_upload(request: web.Request) -> web.Response:
    """PATCH: append a chunk (streamed). A chunk that does not start at the current end → 416."""
    name, upload_id = _session(request)
    start, length = _chunk_bounds(request)
    body = _body(request)
    with _where(name, upload_id):
        status = await services(request).uploads.append(
            name, upload_id, None if body is not None else request.content.iter_chunked(BUFFER), start, length,
            body=body,
        )
    return web.Response(status=202, headers=_upload_headers(name, upload_id, status.offset))


async def finish_upload(request: web.Request) -> web.Response:
    """PUT ?digest=: optional last chunk, then verify and commit."""
    name, upload_id = _session(request)
    raw = request.query.get("digest")
    if not raw:
        raise APIError("DIGEST_INVALID", "the digest query parameter is required", {"upload": upload_id})
    digest = names.digest(raw)
    chunks = body = start = length = None
    if request.body_exists:
        start, length = _chunk_bounds(request)
        body = _body(request)
        if body is None:
            chunks = request.content.iter_chunked(BUFFER)
    with _where(name, upload_id):
        await services(request).uploads.finish(name, upload_id, digest, chunks, start, length, body=body)
    return _blob_created(name, digest)


async def upload_status(request: web.Request) -> web.Response:
    """GET: where the upload stands (204 + Range), as the database records it."""
    name, upload_id = _session(request)
    status = await services(request).uploads.status(name, upload_id)
    return web.Response(status=204, headers=_upload_headers(name, upload_id, status.offset))


async def cancel_upload(request: web.Request) -> web.Response:
    """DELETE: abandon the session and its bytes."""
    name, upload_id = _session(request)
    await services(request).uploads.cancel(name, upload_id)
    return web.Response(status=204)
