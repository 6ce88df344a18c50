"""GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>."""
from __future__ import annotations

from aiohttp import web

from storage import digest as digests
from storage import manifests

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
    record = await services(request).catalog.get_manifest(name, reference)
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
    if not body:
        raise APIError("MANIFEST_INVALID", "empty manifest")
    parsed = manifests.parse(body, request.headers.get("Content-Type"))
    algorithm = reference.split(":", 1)[0] if by_digest else "sha256"
    digest = digests.of_bytes(body, algorithm)
    if by_digest and digest != reference:
        raise APIError(
            "DIGEST_INVALID", "manifest digest does not match the reference", {"reference": reference, "actual": digest}
        )
    await svc.catalog.put_manifest(name, digest, parsed, body, None if by_digest else reference)
    headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
    if parsed.subject is not None:
        headers["OCI-Subject"] = parsed.subject.digest
    return web.Response(status=201, headers=headers)


async def delete_manifest(request: web.Request) -> web.Response:
    """By tag: remove the tag only. By digest: the manifest and every tag on it."""
    name = repository(request)
    reference, by_digest = names.reference(request.match_info["reference"])
    catalog = services(request).catalog
    if by_digest:
        await catalog.delete_manifest(name, reference)
    else:
        await catalog.delete_tag(name, reference)
    return web.Response(status=202)
