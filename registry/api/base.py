"""GET /v2/ — the API version check."""
from aiohttp import web

_EMPTY = b"{}"  # what web.json_response({}) writes, without encoding it on every probe


async def version_check(request: web.Request) -> web.Response:
    return web.Response(body=_EMPTY, content_type="application/json", charset="utf-8")
