"""The /v2/ guard: which scope a request needs, and whether the caller has it."""
from __future__ import annotations

from aiohttp import web

from . import FULL_ACCESS, Access

ACCESS_KEY: web.RequestKey[Access] = web.RequestKey("access", Access)


def required_scope(request: web.Request) -> tuple[str, str, str] | None:
    """(type, name, action) the request needs, or None for the /v2/ base and non-API paths."""
    if not request.path.startswith("/v2/"):
        return None
    name = request.match_info.get("name")
    if name is None:
        if request.path.rstrip("/") == "/v2/_catalog":
            return ("registry", "catalog", "*")
        return None
    method = request.method
    if method in ("GET", "HEAD"):
        action = "pull"
    elif method == "DELETE" and "/blobs/uploads/" not in request.path:
        action = "delete"
    else:
        action = "push"
    return ("repository", name, action)


@web.middleware
async def open_guard(request: web.Request, handler):
    """Auth disabled: every request may do everything."""
    request[ACCESS_KEY] = FULL_ACCESS
    return await handler(request)
