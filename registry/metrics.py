"""Prometheus metrics: every metric Berth exports, declared once (docs/operations.md "Metrics").

Other modules import the metric they feed and call it; nothing else to set up::

    from registry import metrics
    metrics.gc_finished(report)                       # a GCReport: runs, objects and bytes freed
    metrics.RATE_LIMITED.labels(limit="pushes_per_tenant").inc()

Multi-process mode (``berth serve --workers N``): prometheus-client keeps each process's
values in files under ``PROMETHEUS_MULTIPROC_DIR``, which must be set in the environment
*before* a worker imports prometheus_client; ``registry.multiproc.prepare()`` prepares the
directory for a supervisor. ``/metrics`` then aggregates every worker's files, so any worker answers
for all of them.

The request path feeds its metrics from the access logger (``registry.logs``), after the
response is written, with pre-resolved label children (one dict lookup, no ``.labels()``).
"""
from __future__ import annotations

import functools
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

try:  # the *_created series double the exposition and no dashboard here uses them
    from prometheus_client import disable_created_metrics

    disable_created_metrics()
except ImportError:  # pragma: no cover - prometheus-client < 0.18
    pass

from . import multiproc

MULTIPROC_ENV = multiproc.ENV
# the classic text format every Prometheus (and every other scraper) reads; Berth's names are ASCII
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# request latencies: a manifest GET takes ~0.2 ms, a large blob minutes
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
OPERATION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30)

# ---- HTTP --------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "berth_http_requests_total", "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"])
HTTP_DURATION = Histogram(
    "berth_http_request_duration_seconds", "Time from the request's headers to the response's last byte",
    ["route", "method"], buckets=LATENCY_BUCKETS)
HTTP_RECEIVED = Counter(
    "berth_http_received_bytes_total", "Request body bytes read, by route template", ["route", "method"])
HTTP_SENT = Counter(
    "berth_http_sent_bytes_total", "Response bytes written (headers and body), by route template", ["route", "method"])

# ---- auth ----------------------------------------------------------------------------------------
TOKENS_ISSUED = Counter("berth_tokens_issued_total", "Registry tokens issued by the realm, by kind", ["kind"])
TOKENS_REFUSED = Counter("berth_tokens_refused_total", "Token requests refused by the realm, by reason", ["reason"])
LOGINS_REFUSED = Counter(
    "berth_logins_refused_total", "Password logins refused (realm, /v2/ Basic, admin API), by reason", ["reason"])
RATE_LIMITED = Counter(
    "berth_rate_limited_total", "Requests refused by a rate limit (429), by which limit", ["limit"])

# ---- garbage collection ------------------------------------------------------------------------
GC_RUNS = Counter("berth_gc_runs_total", "Garbage collections finished in this process")
GC_OBJECTS_FREED = Counter("berth_gc_objects_freed_total", "Objects garbage collection removed, by kind", ["kind"])
GC_BYTES_FREED = Counter("berth_gc_bytes_freed_total", "Blob bytes garbage collection removed")

# ---- database and content driver ---------------------------------------------------------------
DB_DURATION = Histogram(
    "berth_db_operation_duration_seconds", "Metadata database operations (one read or one write transaction)",
    ["kind"], buckets=OPERATION_BUCKETS)
STORAGE_DURATION = Histogram(
    "berth_storage_operation_duration_seconds",
    "Content-driver calls, by driver and operation (streams: until the first chunk)",
    ["driver", "operation"], buckets=OPERATION_BUCKETS)
STORAGE_ERRORS = Counter(
    "berth_storage_operation_errors_total", "Content-driver calls that raised, by driver and operation",
    ["driver", "operation"])

# gauges computed from the database when /metrics is scraped (see ScrapeCollector)
USAGE_TTL = 60.0  # seconds the per-tenant usage and the upload count are cached

# ---- helpers others call -------------------------------------------------------------------------


def gc_finished(report: Any) -> None:
    """Count one finished collection from a ``storage.gc`` report (any object with the attributes)."""
    GC_RUNS.inc()
    for kind, attr in (("blobs", "blobs_removed"), ("links", "links_removed"), ("uploads", "uploads_removed")):
        n = getattr(report, attr, 0) or 0
        if n:
            GC_OBJECTS_FREED.labels(kind=kind).inc(n)
    freed = getattr(report, "bytes_freed", 0) or 0
    if freed:
        GC_BYTES_FREED.inc(freed)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


# for a supervisor (registry.multiproc imports nothing heavy; these names are kept for callers here)
multiprocess_env = multiproc.prepare
remove_multiprocess_dir = multiproc.cleanup
worker_exited = multiproc.worker_exited


# ---- exposition ----------------------------------------------------------------------------------


class ScrapeCollector:
    """Gauges read from the database at scrape time: ``berth_storage_used_bytes{tenant}`` and
    ``berth_uploads_in_progress``. Values are refreshed by ``refresh()`` (async, before the
    exposition) at most every ``USAGE_TTL`` seconds; ``collect()`` only reads the cache."""

    def __init__(self, read: Callable[[], Any], ttl: float = USAGE_TTL) -> None:
        self._read = read  # async () -> (dict tenant -> bytes, open upload sessions)
        self._ttl = ttl
        self._at = float("-inf")
        self._usage: dict[str, int] = {}
        self._uploads: int | None = None

    async def refresh(self) -> None:
        now = time.monotonic()
        if now - self._at < self._ttl:
            return
        self._at = now  # also on failure: a broken database is not asked again at every scrape
        self._usage, self._uploads = await self._read()

    def collect(self) -> Iterable[Any]:
        usage = GaugeMetricFamily("berth_storage_used_bytes",
                                  "Bytes of distinct blobs linked in each tenant's repositories", labels=["tenant"])
        for tenant, size in sorted(self._usage.items()):
            usage.add_metric([tenant], size)
        yield usage
        if self._uploads is not None:
            yield GaugeMetricFamily("berth_uploads_in_progress", "Upload sessions open in the database",
                                    value=self._uploads)


def exposition(extra: ScrapeCollector | None = None) -> tuple[bytes, str]:
    """The text exposition (blocking in multi-process mode: it reads every worker's files; call
    it in a thread). Returns (body, content type)."""
    from prometheus_client import REGISTRY  # noqa: PLC0415

    path = multiprocess_dir()
    if path:
        from prometheus_client import multiprocess  # noqa: PLC0415

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    if extra is not None:
        own = CollectorRegistry()
        own.register(extra)
        body += generate_latest(own)
    return body, CONTENT_TYPE


# ---- timing of database and driver calls ------------------------------------------------------------


def time_database(db: Any) -> Any:
    """Time every ``read``/``write`` of a ``storage.db.Database`` (``berth_db_operation_duration_seconds``),
    by wrapping the instance's methods. Idempotent; returns ``db``."""
    if not getattr(db, "_berth_timed", False):
        for kind in ("read", "write"):
            setattr(db, kind, _timed_db(getattr(db, kind), DB_DURATION.labels(kind)))
        db._berth_timed = True
    return db


def timed_driver(driver: Any) -> Any:
    """``driver`` wrapped so each call is timed (``berth_storage_operation_*``); no driver changes."""
    return driver if isinstance(driver, TimedDriver) else TimedDriver(driver)


def _timed_db(fn, hist):
    @functools.wraps(fn)
    async def timed(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return await fn(*args)
        finally:
            hist.observe(time.perf_counter() - start)

    return timed


class TimedDriver:
    """A content driver that times each call of the driver it wraps (``berth_storage_operation_*``)."""

    _ASYNC = ("check", "stat", "redirect_url", "delete", "start_upload", "append", "commit", "abort")
    _STREAMS = ("read", "read_upload")  # timed until the first chunk
    _LISTINGS = ("list_digests", "list_uploads")  # timed whole

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", type(inner).__name__)
        for op in self._ASYNC:
            setattr(self, op, self._wrap_async(op))
        for op in self._STREAMS + self._LISTINGS:
            setattr(self, op, self._wrap_stream(op, first_only=op in self._STREAMS))

    def __getattr__(self, name: str) -> Any:  # local_path, close and whatever else a driver has
        return getattr(self.inner, name)

    def _series(self, op: str):
        return STORAGE_DURATION.labels(self.name, op), STORAGE_ERRORS.labels(self.name, op)

    def _wrap_async(self, op: str):
        fn = getattr(self.inner, op)
        hist, errors = self._series(op)

        @functools.wraps(fn)
        async def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            except Exception:
                errors.inc()
                raise
            finally:
                hist.observe(time.perf_counter() - start)

        return call

    def _wrap_stream(self, op: str, first_only: bool):
        fn = getattr(self.inner, op)
        hist, errors = self._series(op)

        @functools.wraps(fn)
        async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            start = time.perf_counter()
            timing = True
            it = fn(*args, **kwargs)
            try:
                async for item in it:
                    if timing and first_only:
                        hist.observe(time.perf_counter() - start)
                        timing = False
                    yield item
            except Exception:
                errors.inc()
                raise
            finally:
                if timing:
                    hist.observe(time.perf_counter() - start)
                aclose = getattr(it, "aclose", None)
                if aclose is not None:
                    await aclose()

        return stream
