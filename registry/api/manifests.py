"""GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>."""
from __future__ import annotations

from aiohttp import web

from .. import names
from ..errors import APIError
from .common import repository, services


async def get_manifest(request: web.Request) -> web.Response:
    """The manifest's bytes exactly as pushed; HEAD shares this handler (same headers, no body)."""
    name = repository(request)
    raw = request.match_info["reference"]
    if ":" not in raw and not names.is_tag(raw):
        # Neither a digest nor a tag can name no manifest: the spec allows only 404 here
        # (end-3; the conformance suite GETs/HEADs ".INVALID_MANIFEST_NAME" and wants 404).
        raise APIError("MANIFEST_UNKNOWN", f"manifest {raw!r} unknown in {name!r}", {"name": name, "reference": raw})
    reference, _ = names.reference(raw)
    record = await services(request).manifests.get(name, reference)
    return web.Response(
        body=record.content,
        headers={"Content-Type": record.media_type, "Docker-Content-Digest": record.digest, "ETag": f'"{record.digest}"'},
    )


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise APIError("SIZE_INVALID", f"manifest larger than {limit} bytes", {"limit": limit}, status=413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise APIError("SIZE_INVALID", f"manifest larger than {limit} bytes", {"limit": limit}, status=413)
        chunks.append(chunk)
    return b"".join(chunks)


async def put_manifest(request: web.Request) -> web.Response:
    name = repository(request)
    reference, by_digest = names.reference(request.match_info["reference"])
    svc = services(request)
    body = await _read_body(request, svc.config.max_manifest_size)
    result = await svc.manifests.put(name, reference, by_digest, body, request.headers.get("Content-Type"))
    digest = result.digest
    headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
    if result.subject is not None:
        headers["OCI-Subject"] = result.subject
    return web.Response(status=201, headers=headers)


async def delete_manifest(request: web.Request) -> web.Response:
    """By tag: remove the tag only. By digest: the manifest and every tag on it."""
    name = repository(request)
    reference, by_digest = names.reference(request.match_info["reference"])
    await services(request).manifests.delete(name, reference, by_digest)
    return web.Response(status=202)
