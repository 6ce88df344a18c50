"""Malformed HTTP from clients is the client's problem, not a server error.

aiohttp's HTTP parser answers a request it cannot parse by itself (``400 Bad Request``,
``text/plain``, connection closed: a bad request line, a control character in a header,
a header line over 8190 bytes, a bad chunk size, a ``Content-Length`` that is not a
number) and logs it on ``aiohttp.server`` at ERROR *with a traceback*. Those are not
server failures: this filter turns such a record into one WARNING line without the
traceback. Any other record (a real unhandled exception) keeps its traceback.
"""
from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError


class ClientErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 400) < 500:
            what = " ".join(str(exc.message).split())[:300]
            record.msg = f"{record.getMessage()}: malformed HTTP request answered {exc.code or 400} by the parser ({what})"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_FILTER = ClientErrorFilter()


def install() -> None:
    """Idempotent: the log filter on ``aiohttp.server``, and the broken-body fix below."""
    logger = logging.getLogger("aiohttp.server")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    _close_broken_body()
    _request_without_target()


def _request_without_target() -> None:
    """aiohttp's C parser leaves a request's URL unset (None) when it saw no request target
    (``_on_status_complete`` returns early on an empty buffer); building the request then raised
    AttributeError in the connection's task: no answer, a dropped connection and an asyncio
    traceback (found once in 10,711 cases by ``make fuzz N=10000``). Such a request is given
    the target ``/``, which no route of Berth serves: it is answered ``404 NOT_FOUND``."""
    import yarl  # noqa: PLC0415
    from aiohttp import web_app  # noqa: PLC0415

    app_cls = web_app.Application
    if getattr(app_cls._make_request, "_berth", False):
        return
    original = app_cls._make_request

    def _make_request(self, message, *args, **kwargs):
        if getattr(message, "url", True) is None:
            message = message._replace(url=yarl.URL("/"), path="/")
        return original(self, message, *args, **kwargs)

    _make_request._berth = True
    app_cls._make_request = _make_request


def _close_broken_body() -> None:
    """aiohttp's C HTTP parser, on a framing error *inside* a body (a bad chunk size after the
    handler started reading), drops the body without ending it and queues the error as if it
    were the next request: the handler waits for the rest of a body that never comes, and the
    client for an answer (found by tests/fuzz). The pure-Python parser ends the body with the
    error instead; this does the same for the C parser: the handler's read raises the parser's
    error, which the error middleware answers ``400 SIZE_INVALID``."""
    from aiohttp import web_protocol  # noqa: PLC0415

    handler = web_protocol.RequestHandler
    if getattr(handler.data_received, "_berth", False) or not hasattr(web_protocol, "_ErrInfo"):
        return
    original = handler.data_received

    def data_received(self, data: bytes) -> None:
        queued = len(getattr(self, "_messages", ()))
        original(self, data)
        request = getattr(self, "_current_request", None)
        messages = getattr(self, "_messages", ())
        if request is None or len(messages) <= queued:
            return
        info = messages[-1][0]
        if isinstance(info, web_protocol._ErrInfo) and info.exc is not None and not request.content.is_eof():
            request.content.set_exception(info.exc)

    data_received._berth = True
    handler.data_received = data_received
