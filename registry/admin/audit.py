"""GET /admin/audit?tenant=&limit=&before=: the audit log, newest first (owners: their tenants)."""
from __future__ import annotations

from aiohttp import web

from .auth import context, query_int, reply


async def list_events(request: web.Request) -> web.Response:
    ops, actor = await context(request)
    limit = query_int(request, "limit", 100)
    before = query_int(request, "before", None)
    events = await ops.audit_events(actor, request.query.get("tenant") or None, limit, before)
    out: dict = {"events": events}
    if events and len(events) == min(limit, 1000):
        out["next"] = f"/admin/audit?{_next_query(request, events[-1]['id'])}"
    return reply(out)


def _next_query(request: web.Request, before: int) -> str:
    from urllib.parse import urlencode  # noqa: PLC0415

    q = {k: v for k, v in request.query.items() if k != "before"}
    q["before"] = str(before)
    return urlencode(q)


async def whoami(request: web.Request) -> web.Response:
    """GET /admin/whoami: the caller as the admin API sees them (handy to check credentials)."""
    _, actor = await context(request)
    return reply({"name": actor.name, "kind": actor.kind, "admin": actor.admin, "owns": sorted(actor.owns)})
