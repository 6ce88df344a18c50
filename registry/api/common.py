"""Small request helpers shared by the API handlers."""
from __future__ import annotations

from aiohttp import web

from .. import names
from ..errors import APIError
from ..services import SERVICES, Services


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def repository(request: web.Request) -> str:
    return names.repository(request.match_info["name"])


def page_params(request: web.Request, default_n: int | None, max_n: int) -> tuple[int | None, str | None]:
    """``n`` and ``last`` of a paginated listing (tags, catalog)."""
    raw = request.query.get("n")
    n = default_n
    if raw is not None and raw != "":
        try:
            n = int(raw)
        except ValueError:
            raise APIError("PAGINATION_NUMBER_INVALID", f"n must be a number, got {raw!r}", {"n": raw}) from None
        if n < 0:
            raise APIError("PAGINATION_NUMBER_INVALID", "n must not be negative", {"n": raw})
        n = min(n, max_n)
    last = request.query.get("last") or None
    return n, last


def next_link(path: str, n: int, last: str) -> str:
    from urllib.parse import urlencode

    return f'<{path}?{urlencode({"n": n, "last": last})}>; rel="next"'
