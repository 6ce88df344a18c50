"""The one route table. Every endpoint's handler is one hop from here.

Repository names contain slashes, so ``{name}`` matches greedily up to the
resource's fixed suffix; the handler validates it against the spec's grammar
(anything else → NAME_INVALID, never a bare 404).
"""
from __future__ import annotations

from aiohttp import web

from .api import base, blobs, catalog, manifests, referrers, tags, uploads

NAME = r"{name:.+}"
DIGEST = r"{digest:[^/]+}"


def add_distribution_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v2/", base.version_check)
    r.add_get("/v2/_catalog", catalog.list_repositories)
    r.add_get(f"/v2/{NAME}/tags/list", tags.list_tags)
    r.add_get(f"/v2/{NAME}/referrers/{DIGEST}", referrers.list_referrers)

    r.add_get(f"/v2/{NAME}/manifests/{{reference:[^/]+}}", manifests.get_manifest)  # + HEAD
    r.add_put(f"/v2/{NAME}/manifests/{{reference:[^/]+}}", manifests.put_manifest)
    r.add_delete(f"/v2/{NAME}/manifests/{{reference:[^/]+}}", manifests.delete_manifest)

    r.add_post(f"/v2/{NAME}/blobs/uploads/", uploads.start_upload)
    upload = f"/v2/{NAME}/blobs/uploads/{{upload_id:[^/]+}}"
    r.add_patch(upload, uploads.patch_upload)
    r.add_put(upload, uploads.finish_upload)
    r.add_get(upload, uploads.upload_status)
    r.add_delete(upload, uploads.cancel_upload)

    r.add_get(f"/v2/{NAME}/blobs/{DIGEST}", blobs.get_blob)  # + HEAD
    r.add_delete(f"/v2/{NAME}/blobs/{DIGEST}", blobs.delete_blob)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def add_routes(app: web.Application) -> None:
    add_distribution_routes(app)
    app.router.add_get("/healthz", healthz)
