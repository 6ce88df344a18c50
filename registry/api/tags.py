"""GET /v2/<name>/tags/list?n=&last=."""
from __future__ import annotations

from aiohttp import web

from .common import next_link, page_params, repository, services

MAX_PAGE = 10000


async def list_tags(request: web.Request) -> web.Response:
    name = repository(request)
    n, last = page_params(request, None, MAX_PAGE)
    # ask for one more than the page to know whether a next page exists
    tags = await services(request).tags.list(name, None if n is None else n + 1, last)
    headers = {}
    if n is not None and len(tags) > n:
        tags = tags[:n]
        if n:
            headers["Link"] = next_link(f"/v2/{name}/tags/list", n, tags[-1])
    return web.json_response({"name": name, "tags": tags}, headers=headers)
