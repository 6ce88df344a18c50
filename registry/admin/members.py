"""/admin/tenants/{tenant}/members: list, set a role (PUT), remove (DELETE)."""
from __future__ import annotations

from aiohttp import web

from .auth import body, context, reply


async def list_members(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    return reply({"members": await ops.list_members(actor, request.match_info["tenant"])})


async def set_member(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    data = await body(request, "role")
    m = request.match_info
    return reply(await ops.set_member(actor, m["tenant"], m["username"], data.get("role")))


async def remove_member(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    m = request.match_info
    return reply(await ops.remove_member(actor, m["tenant"], m["username"]))
