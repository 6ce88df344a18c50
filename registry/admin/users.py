"""/admin/users: create, list, show, change a password, delete (admins only)."""
from __future__ import annotations

from aiohttp import web

from .auth import body, context, reply


async def create_user(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    data = await body(request, "username", "password", "admin")
    return reply(await ops.create_user(actor, data.get("username"), data.get("password"), data.get("admin", False)), 201)


async def list_users(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    return reply({"users": await ops.list_users(actor)})


async def get_user(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    return reply(await ops.get_user(actor, request.match_info["username"]))


async def set_password(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    data = await body(request, "password")
    return reply(await ops.set_password(actor, request.match_info["username"], data.get("password")))


async def delete_user(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    return reply(await ops.delete_user(actor, request.match_info["username"]))
