"""GET /v2/<name>/referrers/<digest>?artifactType= — the manifests whose subject is <digest>."""
from __future__ import annotations

import json

from aiohttp import web

from storage.manifests import OCI_INDEX

from .. import names
from .common import repository, services


async def list_referrers(request: web.Request) -> web.Response:
    name = repository(request)
    digest = names.digest(request.match_info["digest"])
    artifact_type = request.query.get("artifactType") or None
    descriptors = await services(request).manifests.referrers(name, digest, artifact_type)
    headers = {"Content-Type": OCI_INDEX}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    return web.Response(body=json.dumps(body).encode(), headers=headers)
