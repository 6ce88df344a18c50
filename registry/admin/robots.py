"""/admin/tenants/{tenant}/robots: create (secret shown once), list, show, delete, rotate."""
from __future__ import annotations

from aiohttp import web

from .auth import body, context, reply


async def create_robot(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    d = await body(request, "name", "actions", "repositories", "expires_in", "description")
    robot = await ops.create_robot(actor, request.match_info["tenant"], d.get("name"), d.get("actions"),
                                   d.get("repositories"), d.get("expires_in"), d.get("description"))
    return reply(robot, 201)


async def list_robots(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    return reply({"robots": await ops.list_robots(actor, request.match_info["tenant"])})


async def get_robot(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    m = request.match_info
    return reply(await ops.get_robot(actor, m["tenant"], m["robot"]))


async def delete_robot(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    m = request.match_info
    return reply(await ops.delete_robot(actor, m["tenant"], m["robot"]))


async def rotate_robot(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    m = request.match_info
    return reply(await ops.rotate_robot(actor, m["tenant"], m["robot"]))
