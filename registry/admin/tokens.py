"""POST /admin/tokens: a signed registry token for a service (admins only, TTL capped)."""
from __future__ import annotations

from aiohttp import web

from .auth import body, context, reply


async def create_token(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    d = await body(request, "subject", "scope", "expires_in")
    return reply(await ops.issue_token(actor, d.get("subject"), d.get("scope"), d.get("expires_in")), 201)
