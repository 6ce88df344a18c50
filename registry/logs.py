"""Logging: one formatter (JSON lines or text), request ids, the access log, redaction.

* ``configure(config)`` sets up the stdlib logging of a ``berth serve`` process: records are
  queued on the event loop's thread and formatted and written in batches by a thread of their
  own (writing to stderr blocks), as JSON lines (``log_format: json``, the default) or text for
  a terminal (``text``). Third-party loggers that print credentials at DEBUG (SQLAlchemy's SQL
  parameters, botocore's signed headers) are held at WARNING whatever ``log_level`` says;
  Alembic's chatter (``Context impl SQLiteImpl.``, ``setup plugin …``, ``Running upgrade …``)
  is DEBUG, and each migration applied is one INFO line of ``berth.migrations``.
* Request ids (``request_id_of``, set by the outermost middleware ``registry.middleware.front``):
  a well-formed ``X-Request-Id`` or a generated one, echoed in the response header and on
  every log line written while the request is handled.
* ``AccessLogger`` (aiohttp's access-log hook, called once the response's last byte is
  written): one line per request on ``berth.access`` and the request metrics
  (``registry.metrics``). ``server_kwargs(config)`` gives what ``web.run_app``/``AppRunner``
  (or a test server) need to use it.
* Every formatted line goes through ``redact``: ``Authorization`` values, bearer/basic
  credentials, JWTs, bcrypt hashes and ``password=``/``secret``/``token`` values are replaced
  by ``[REDACTED]`` — a second line of defence; nothing logs them on purpose.
"""
from __future__ import annotations

import atexit
import contextvars
import itertools
import json
import logging
import logging.handlers
import os
import queue
import re
import sys
import threading
import time
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

ACCESS_LOGGER = "berth.access"
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_OK = re.compile(r"[A-Za-z0-9._-]{1,128}")

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
PRINCIPAL: web.RequestKey[str] = web.RequestKey("principal", str)  # set by whoever authenticated the caller
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("berth_request_id", default=None)

# loggers that print secrets at DEBUG/INFO (SQL parameters, signed request headers): never below WARNING
QUIET_LOGGERS = ("sqlalchemy", "botocore", "aiobotocore", "boto3", "s3transfer", "urllib3", "asyncpg", "aiohttp.access")
# loggers whose INFO lines are DEBUG here: Alembic's at every start-up (storage.migrations logs
# what was actually migrated on berth.migrations)
DEMOTED_LOGGERS = ("alembic",)


_ids: tuple[int, str, itertools.count] | None = None  # (pid, random prefix, counter) of this process


def new_request_id() -> str:
    """24 hex digits: 12 random per process (a forked worker draws its own), then a counter.
    Unique, not secret; os.urandom per request cost a system call on every request."""
    global _ids
    pid = os.getpid()
    if _ids is None or _ids[0] != pid:
        _ids = (pid, os.urandom(6).hex(), itertools.count())
    return f"{_ids[1]}{next(_ids[2]) & 0xFFFFFFFFFFFF:012x}"


def request_id_of(request: web.BaseRequest) -> str:
    """The request's id: a well-formed incoming ``X-Request-Id`` (letters, digits, ``._-``, at most
    128), else a new random one. Stored on the request."""
    try:
        return request[REQUEST_ID]
    except KeyError:  # the first call (request.get() would raise and catch the same, one frame deeper)
        pass
    given = request.headers.get(REQUEST_ID_HEADER)
    rid = given if given is not None and _REQUEST_ID_OK.fullmatch(given) else new_request_id()
    request[REQUEST_ID] = rid
    return rid


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every response, error bodies and sendfile included, names its request."""
    response.headers[REQUEST_ID_HEADER] = request_id_of(request)


# ---- redaction -----------------------------------------------------------------------------------
_R = "[REDACTED]"
_REDACTIONS = [
    # Authorization: Basic xxx / "authorization": "Bearer xxx" / ('Authorization', '...')
    (re.compile(r"""(?i)(authorization['"]?\s*[:=,]\s*['"]?)(?:(?:basic|bearer)\s+)?[^\s'",}\]]+"""), r"\1" + _R),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + _R),
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), _R),  # JWT
    (re.compile(r"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}"), _R),  # bcrypt hash
    (re.compile(r"""(?i)\b((?:password|passwd|secret|secret_key|secret_access_key|access_token|refresh_token|token)"""
                r"""['"]?\s*[:=]\s*['"]?)[^\s'"&,}]+"""), r"\1" + _R),
]


def redact(text: str) -> str:
    for pattern, repl in _REDACTIONS:
        text = pattern.sub(repl, text)
    return text


# ---- formatters ----------------------------------------------------------------------------------


_second: tuple[int, str] = (-1, "")


def _iso(ts: float) -> str:
    global _second
    whole = int(ts)
    if _second[0] != whole:  # one strftime a second, not one a line
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int(ts % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (or the access fields), request_id."""

    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        if access is not None:  # fields the access logger chose: no credential among them, no redaction
            doc: dict[str, Any] = {"time": _iso(record.created), "level": record.levelname, "logger": record.name}
            doc.update(access)
            if record.process and _SHOW_PID:
                doc["pid"] = record.process
            return json.dumps(doc, ensure_ascii=False, default=str)
        else:
            doc = {"time": _iso(record.created), "level": record.levelname, "logger": record.name,
                   "message": record.getMessage()}
            rid = getattr(record, "request_id", None)
            if rid:
                doc["request_id"] = rid
            if record.exc_info:
                doc["exception"] = self.formatException(record.exc_info)
            if record.process and _SHOW_PID:
                doc["pid"] = record.process
        return redact(json.dumps(doc, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        pid = "[%(process)d]" if _SHOW_PID else ""
        super().__init__(f"%(asctime)s %(levelname)s %(name)s{pid}: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        access = getattr(record, "access", None)
        if access is not None:
            a = access
            who = a.get("principal") or "-"
            record.msg, record.args = (
                '%s %s %s %s "%s %s" %s %sB in %sB out %.4fs',
                (a["request_id"], a["client"], who, a.get("repository") or a.get("tenant") or "-",
                 a["method"], a.get("path") or a["route"], a["status"], a["bytes_in"], a["bytes_out"], a["duration"]),
            )
        else:
            rid = getattr(record, "request_id", None)
            if rid:
                record.msg, record.args = f"[{rid}] {record.getMessage()}", None
        return redact(super().format(record))


_SHOW_PID = False


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get()
        return True


class _Demote(logging.Filter):
    """INFO records of ``DEMOTED_LOGGERS`` become DEBUG ones: written only at ``log_level: DEBUG``."""

    def __init__(self, root: logging.Logger) -> None:
        super().__init__()
        self.root = root

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.name.partition(".")[0] in DEMOTED_LOGGERS:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return self.root.isEnabledFor(logging.DEBUG)
        return True


class _QueueHandler(logging.handlers.QueueHandler):
    """Hands records to the writer thread. Only the message's ``%`` formatting happens here (so a
    mutable argument is captured as it is now); JSON, tracebacks and redaction happen there."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        return record


WRITE_INTERVAL = 0.05  # seconds between the writer's batches


class _Writer(threading.Thread):
    """Formats and writes queued records in batches, every ``WRITE_INTERVAL`` seconds (one write
    per batch). Nobody waits on the queue, so a log call on the event loop never wakes a thread
    or hands the GIL over: at thousands of requests a second that costs more than the JSON."""

    def __init__(self, q: queue.SimpleQueue, stream, formatter: logging.Formatter) -> None:
        super().__init__(name="berth-log-writer", daemon=True)
        self.queue, self.stream, self.formatter = q, stream, formatter
        self.wake = threading.Event()
        self.stopping = False

    def run(self) -> None:
        while True:
            self.wake.wait(WRITE_INTERVAL)
            self.wake.clear()
            stopping = self.stopping
            self.drain()
            if stopping:
                return

    def drain(self) -> None:
        lines, markers = [], []
        while True:
            try:
                record = self.queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(record, _Marker):
                markers.append(record)
                continue
            try:
                lines.append(self.formatter.format(record))
            except Exception:  # a record that cannot be formatted is dropped, never the writer
                lines.append(json.dumps({"level": "ERROR", "logger": "berth.logs",
                                         "message": f"a {record.name} record could not be formatted"}))
        if lines:
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
        for m in markers:
            m.done.set()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        self.join(10)


_writer: _Writer | None = None


def configure(config: Any, *, stream=None, show_pid: bool = False) -> None:
    """Set up this process's logging from ``config.log_level`` and ``config.log_format``."""
    global _writer, _SHOW_PID
    _SHOW_PID = show_pid
    fmt = (getattr(config, "log_format", "json") or "json").lower()
    if fmt not in ("json", "text"):
        raise ValueError(f"log_format must be json or text, not {fmt!r}")
    stop()
    q: queue.SimpleQueue = queue.SimpleQueue()
    handler = _QueueHandler(q)
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    handler.addFilter(_Demote(root))
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(str(config.log_level).upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    access = logging.getLogger(ACCESS_LOGGER)
    access.setLevel(logging.INFO)  # the access log follows access_log, not log_level
    _writer = _Writer(q, stream or sys.stderr, JsonFormatter() if fmt == "json" else TextFormatter())
    _writer.start()
    atexit.register(stop)


def flush() -> None:
    """Wait until every record queued so far is written (tests; a clean shutdown uses ``stop``)."""
    writer = _writer
    if writer is not None:
        done = threading.Event()
        writer.queue.put_nowait(_Marker(done))
        writer.wake.set()
        done.wait(10)


class _Marker(logging.LogRecord):
    def __init__(self, done) -> None:
        super().__init__("berth.flush", logging.DEBUG, __file__, 0, "", None, None)
        self.done = done


def stop() -> None:
    """Write what is queued and stop the writer thread (at exit; also before a reconfiguration)."""
    global _writer
    if _writer is not None:
        writer, _writer = _writer, None
        writer.stop()


# ---- the access log and the request metrics -----------------------------------------------------
ACCESS_ENABLED: web.AppKey[bool] = web.AppKey("access_log_enabled", bool)
UNMATCHED = "(unmatched)"  # route label of requests no route matched (404, 405): never the raw path


class AccessLogger(AbstractAccessLogger):
    """Called by aiohttp after the response's last byte: metrics, then the access line (when
    ``access_log`` is on for the app). Must never raise (aiohttp would drop the connection)."""

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        from . import metrics  # noqa: PLC0415

        self._m = metrics
        self._children: dict[tuple, tuple] = {}

    @property
    def enabled(self) -> bool:
        return True

    def _series(self, route: str, method: str, status: int) -> tuple:
        key = (route, method, status)
        s = self._children.get(key)
        if s is None:
            m = self._m
            s = (m.HTTP_REQUESTS.labels(route, method, str(status)), m.HTTP_DURATION.labels(route, method),
                 m.HTTP_RECEIVED.labels(route, method), m.HTTP_SENT.labels(route, method))
            if len(self._children) < 4096:
                self._children[key] = s
        return s

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        try:
            self._log(request, response, time)
        except Exception:  # pragma: no cover - a bug here must not cost the connection
            logging.getLogger("berth").exception("access log failed")

    def _log(self, request: web.BaseRequest, response: web.StreamResponse, duration: float) -> None:
        try:
            match = request.match_info  # asserts there is one: requests aiohttp refused (bad HTTP) have none
        except (AssertionError, AttributeError):
            match = None
        resource = match.route.resource if match is not None else None
        route = resource.canonical if resource is not None else UNMATCHED
        method = request.method
        status = response.status
        bytes_in = request.content.total_bytes
        bytes_out = response.body_length
        count, hist, received, sent = self._series(route, method if route != UNMATCHED else "-", status)
        count.inc()
        hist.observe(duration)
        if bytes_in:
            received.inc(bytes_in)
        if bytes_out:
            sent.inc(bytes_out)
        if match is not None and not match.current_app.get(ACCESS_ENABLED, True):
            return
        params = match if match is not None else {}
        repository = params.get("name")
        tenant = params.get("tenant") or (repository.partition("/")[0] if repository else None)
        record = _AccessRecord()
        record.access = {
            "request_id": request_id_of(request),
            "client": _client(request),
            "principal": request.get(PRINCIPAL),
            "tenant": tenant,
            "repository": repository,
            "method": method,
            "route": route,
            # the path as sent; the query only on the distribution API, whose parameters (digest,
            # mount, from, n, last, artifactType) are no secrets — /auth/token's may be (podman
            # sends its OAuth form there), /admin/'s are paging
            "path": request.raw_path if request.path.startswith("/v2/") else request.raw_path.partition("?")[0],
            "status": status,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "duration": round(duration, 6),
        }
        writer = _writer
        if writer is not None and self.logger is _ACCESS and not _ACCESS.handlers and _ACCESS.propagate:
            writer.queue.put_nowait(record)  # configure()'s writer is the only handler: skip the logging machinery
        else:
            self.logger.handle(record)


_ACCESS = logging.getLogger(ACCESS_LOGGER)


class _AccessRecord(logging.LogRecord):
    """An access line's record, made without ``LogRecord.__init__`` (thread and process names, the
    caller's file and line: a tenth of the cost of a small request); formatters read ``access``."""

    def __init__(self) -> None:  # noqa: D107 - the attributes the formatters and handlers use
        now = time.time()
        self.name, self.msg, self.args, self.levelname, self.levelno = ACCESS_LOGGER, "access", None, "INFO", logging.INFO
        self.created, self.msecs, self.relativeCreated = now, (now % 1) * 1000, 0.0
        self.exc_info = self.exc_text = self.stack_info = None
        self.process, self.processName, self.thread, self.threadName = os.getpid(), None, None, None
        self.pathname = self.filename = self.module = self.funcName = ""
        self.lineno = 0
        self.request_id = None


_client_address = None  # registry.auth.credentials.client_address, looked up once (auth imports this module)


def _client(request: web.BaseRequest) -> str:
    global _client_address
    try:
        if _client_address is None:
            from .auth.credentials import client_address  # noqa: PLC0415

            _client_address = client_address
        return _client_address(request)  # trusted proxies' X-Forwarded-For, as the login limiter sees it
    except Exception:
        return request.remote or "unknown"


def server_kwargs(config: Any) -> dict[str, Any]:
    """Keyword arguments for ``web.run_app``/``web.AppRunner``/a test server: the access logger
    (metrics always; the line when ``access_log`` is on)."""
    return {"access_log": logging.getLogger(ACCESS_LOGGER), "access_log_class": AccessLogger}
