"""GET /v2/_catalog?n=&last= — only the repositories the caller may pull."""
from __future__ import annotations

from aiohttp import web

from ..auth.guard import ACCESS_KEY
from .common import next_link, page_params, services

DEFAULT_PAGE = 1000
MAX_PAGE = 10000


async def list_repositories(request: web.Request) -> web.Response:
    n, last = page_params(request, DEFAULT_PAGE, MAX_PAGE)
    access = request[ACCESS_KEY]
    names = await services(request).repositories.list(n + 1, last, lambda r: access.allows(r, "pull"))
    headers = {}
    if len(names) > n:
        names = names[:n]
        if n:
            headers["Link"] = next_link("/v2/_catalog", n, names[-1])
    return web.json_response({"repositories": names}, headers=headers)
