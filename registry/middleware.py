"""Middlewares shared by every endpoint: OCI error bodies and response headers."""
from __future__ import annotations

import asyncio
import logging
import re

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from storage.errors import StorageError

from . import logs
from .errors import APIError, error_response, from_storage

log = logging.getLogger("berth")

# a "." or ".." path segment, literal or percent-encoded, anywhere in the raw path
_DOT_SEGMENT = re.compile(r"(?:^|/)(?:\.|%2e){1,2}(?:/|$|\?)", re.IGNORECASE)


def front(max_header_bytes: int):
    """The outermost middleware, one layer for what every request needs first (each aiohttp
    middleware layer costs a few microseconds a request): its id (``logs.request_id_of``), the
    header-size limit, and :func:`errors` around everything after it."""
    from .limits import check_headers  # noqa: PLC0415 - limits imports errors from here

    @web.middleware
    async def front(request: web.Request, handler):
        token = logs.current_request_id.set(logs.request_id_of(request))
        try:
            return await _answer_errors(request, handler, max_header_bytes, check_headers)
        finally:
            logs.current_request_id.reset(token)

    return front


@web.middleware
async def errors(request: web.Request, handler):
    """Answer every failure with the distribution-spec error body; never a traceback."""
    return await _answer_errors(request, handler, 0, None)


async def _answer_errors(request: web.Request, handler, header_limit: int, check_headers) -> web.StreamResponse:
    try:
        if check_headers is not None:
            check_headers(request, header_limit)
        if request.path.startswith("/v2/") and _DOT_SEGMENT.search(request.raw_path.split("?", 1)[0]):
            raise APIError("NAME_INVALID", "path segments '.' and '..' are not allowed")
        if any("\x00" in k or "\x00" in v for k, v in request.query.items()) or (
                not request.path.startswith("/v2/") and "\x00" in request.path):
            # no identifier, name, tag, digest or filter of Berth holds NUL, and PostgreSQL refuses it
            # in text: refused here, before it reaches a query (names under /v2/ fail their grammar)
            raise APIError("INVALID_REQUEST", "NUL characters are not allowed in the path or query")
        return await handler(request)
    except APIError as e:
        return error_response(e)
    except StorageError as e:
        return error_response(from_storage(e))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = {404: "NOT_FOUND", 405: "UNSUPPORTED", 413: "SIZE_INVALID"}.get(e.status, "UNKNOWN")
        headers = {k: v for k, v in e.headers.items() if k.lower() in ("allow", "www-authenticate", "retry-after")}
        return error_response(APIError(code, e.reason, status=e.status, headers=headers))
    except HttpProcessingError as e:  # the body's framing broke (bad chunk size, …): the client's fault
        return error_response(APIError("SIZE_INVALID", f"malformed request body: {' '.join(str(e.message).split())[:200]}",
                                       status=400))
    except ConnectionResetError:
        # the client went away (mid-body, mid-download): one line, not a traceback; the answer
        # is written only if the connection still takes it (aiohttp ignores a failed write)
        log.info("client closed the connection during %s %s", request.method, request.path)
        return error_response(APIError("SIZE_INVALID", "the connection was lost before the request ended", status=400))
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(APIError("UNKNOWN", "internal error; see the server log"))


async def add_api_version(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Docker-Distribution-API-Version"] = "registry/2.0"
