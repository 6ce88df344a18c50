"""/admin/tenants: create (admins), list (owners see theirs), show (with usage_bytes), change the public
flag (owners too) or the quota (admins), delete."""
from __future__ import annotations

from aiohttp import web

from .auth import body, context, query_bool, reply


async def create_tenant(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    data = await body(request, "name", "public", "quota_bytes")
    return reply(await ops.create_tenant(actor, data.get("name"), data.get("public", False), data.get("quota_bytes")), 201)


async def list_tenants(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    return reply({"tenants": await ops.list_tenants(actor)})


async def get_tenant(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    return reply(await ops.get_tenant(actor, request.match_info["tenant"]))


async def update_tenant(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    data = await body(request, "public", "quota_bytes")
    return reply(await ops.update_tenant(actor, request.match_info["tenant"], data))


async def delete_tenant(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    force = query_bool(request, "force")
    return reply(await ops.delete_tenant(actor, request.match_info["tenant"], force=force))
