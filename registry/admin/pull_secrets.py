"""POST /admin/tenants/{tenant}/pull-secrets: a pull-only robot packed into a ready-to-apply
``kubernetes.io/dockerconfigjson`` Secret (JSON, or YAML with ``Accept: application/yaml``).

The body is the Secret itself so that ``curl … | kubectl apply -f -`` works; the robot's
username is repeated in the ``Berth-Robot`` header and in the Secret's annotations.
"""
from __future__ import annotations

import json

import yaml
from aiohttp import web

from .auth import body, context

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def wants_yaml(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "").lower()
    return any(t in accept for t in YAML_TYPES)


async def create_pull_secret(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    d = await body(request, "namespace", "name", "server", "robot", "expires_in")
    server = d.get("server") or request.host
    made = await ops.create_pull_secret(actor, request.match_info["tenant"], d.get("namespace"), server,
                                        d.get("name"), d.get("robot"), d.get("expires_in"))
    headers = {"Cache-Control": "no-store", "Berth-Robot": made["robot"]["username"]}
    if wants_yaml(request):
        text = yaml.safe_dump(made["secret"], sort_keys=False, default_flow_style=False)
        return web.Response(status=201, text=text, content_type="application/yaml", headers=headers)
    return web.Response(status=201, text=json.dumps(made["secret"], indent=2) + "\n",
                        content_type="application/json", headers=headers)
