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
    """Idempotent: add the filter to the ``aiohttp.server`` logger."""
    logger = logging.getLogger("aiohttp.server")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
