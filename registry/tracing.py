"""Optional OpenTelemetry tracing: spans over OTLP/HTTP when ``tracing.otlp_endpoint`` is set.

Off by default, and then free: nothing here imports ``opentelemetry``, no middleware is added
and no call is wrapped, so a request runs exactly the code it runs without this module (the
only cost is one ``if`` in ``registry.app.create_app``, at start-up). On:

* ``configure(config)`` (``create_app``, once per process: every ``--workers`` worker has its own
  exporter) sets up a TracerProvider of this module's own (the global one is left alone) with a
  ``BatchSpanProcessor`` exporting to ``<otlp_endpoint>/v1/traces`` from a thread, sampled by
  ``ParentBased(TraceIdRatioBased(sample_ratio))``. ``shutdown()`` (the app's cleanup, and at
  exit) flushes what is queued.
* ``middleware()``: the outermost middleware, one SERVER span per request named
  ``METHOD /route/{template}``, a child of the caller's W3C ``traceparent`` when one is sent.
* ``instrument(svc)``: child spans, by wrapping the instances' methods, for every database
  operation (``Database.read``/``write``: named after the operation function's ``__qualname__``),
  every content-driver call (``storage.<operation>``) and the auth service's token checks and
  logins (``auth.*``). They are made only inside a recording span: background work (garbage
  collection, the upload sweep) and unsampled requests make none.

No span carries a header, a credential, a token or a query string: the attributes are listed
in docs/operations.md "Tracing". ``check(config)`` tells, without importing anything, whether
the packages are installed (``berth serve`` exits 2 with one line if not).
"""
from __future__ import annotations

import atexit
import functools
import importlib.util
import logging
from typing import Any
from urllib.parse import urlsplit

from .config import ConfigError

log = logging.getLogger("berth.tracing")

# the modules an endpoint needs: pip install 'berth[tracing]'
REQUIRED_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")
EXPORT_TIMEOUT = 10.0  # seconds one export POST may take (in the exporter's thread, never a request's)
SHUTDOWN_FLUSH_MS = 5000  # at exit: how long queued spans may take to leave

_atexit_registered = False
_provider: Any = None  # this process's TracerProvider while tracing is on
_tracer: Any = None

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})


def enabled() -> bool:
    return _tracer is not None


def traces_url(endpoint: str) -> str:
    """``http://collector:4318`` → ``http://collector:4318/v1/traces`` (a URL already ending so is kept)."""
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def _missing_module() -> str | None:
    for name in REQUIRED_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):
            return name
    return None


def check(config: Any) -> None:
    """Raise :class:`ConfigError` (one line) when ``tracing.otlp_endpoint`` is set and the
    OpenTelemetry packages are not installed. Imports nothing with tracing off; with it on,
    looks the modules up without loading them (a ``--workers`` supervisor stays small)."""
    if not config.tracing.otlp_endpoint:
        return
    missing = _missing_module()
    if missing is not None:
        raise ConfigError(f"tracing.otlp_endpoint is set but the OpenTelemetry packages are not installed "
                          f"(no module {missing}): pip install 'berth[tracing]', or unset tracing.otlp_endpoint "
                          "(BERTH_TRACING_OTLP_ENDPOINT)")


def configure(config: Any) -> bool:
    """Set up this process's tracing from ``config.tracing``; True when it is on. Replaces an
    earlier configuration (flushing it). Raises ConfigError when the packages are missing."""
    shutdown()
    settings = config.tracing
    if not settings.otlp_endpoint:
        return False
    check(config)
    global _provider, _tracer, _atexit_registered
    import os  # noqa: PLC0415
    import socket  # noqa: PLC0415

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased  # noqa: PLC0415

    resource = Resource.create({"service.name": settings.service_name, "host.name": socket.gethostname(),
                                "process.pid": os.getpid()})
    provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
                              shutdown_on_exit=False)  # shutdown() below, bounded, at exit instead
    url = traces_url(settings.otlp_endpoint)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url, timeout=EXPORT_TIMEOUT)))
    _provider, _tracer = provider, provider.get_tracer("berth")
    if not _atexit_registered:
        atexit.register(shutdown)
        _atexit_registered = True
    where = urlsplit(url)
    log.info("tracing: spans to %s://%s%s (service.name %s, sample ratio %g)", where.scheme,
             where.hostname, f":{where.port}" if where.port else "", settings.service_name, settings.sample_ratio)
    return True


def flush(timeout_millis: int = SHUTDOWN_FLUSH_MS) -> bool:
    """Export every span ended so far (tests; ``shutdown`` does it at exit)."""
    return _provider.force_flush(timeout_millis) if _provider is not None else True


def shutdown() -> None:
    """Export the queued spans and stop the exporter, waiting at most ``SHUTDOWN_FLUSH_MS`` (the
    app's cleanup, and at exit): an unreachable collector, whose exports retry for up to
    ``EXPORT_TIMEOUT``, does not hold up a stopping process."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is None:
        return
    import threading  # noqa: PLC0415

    def run() -> None:
        try:
            provider.shutdown()  # the batch processor exports everything queued, then stops
        except Exception:  # noqa: BLE001 - a failed export must not fail the shutdown
            log.warning("tracing: the last spans could not be exported", exc_info=True)

    stopper = threading.Thread(target=run, name="berth-tracing-shutdown", daemon=True)
    stopper.start()
    stopper.join(SHUTDOWN_FLUSH_MS / 1000)
    if stopper.is_alive():
        log.warning("tracing: the collector took more than %g s; spans not yet exported are dropped",
                    SHUTDOWN_FLUSH_MS / 1000)


# ---- the request span ----------------------------------------------------------------------------


def middleware():
    """The aiohttp middleware of the request span (``create_app`` puts it first, outside
    ``registry.middleware.front``, so it sees every answer, errors included)."""
    from aiohttp import web  # noqa: PLC0415
    from opentelemetry.trace import SpanKind, StatusCode  # noqa: PLC0415
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator  # noqa: PLC0415

    from . import logs  # noqa: PLC0415

    tracer = _tracer
    extract = TraceContextTextMapPropagator().extract
    server = SpanKind.SERVER

    @web.middleware
    async def trace_request(request: web.Request, handler):
        match = request.match_info
        resource = match.route.resource
        route = resource.canonical if resource is not None else None
        method = request.method if request.method in _METHODS else "_OTHER"
        attrs: dict[str, Any] = {"http.request.method": method, "url.path": request.path,
                                 "url.scheme": request.scheme, "berth.request_id": logs.request_id_of(request)}
        if method == "_OTHER":
            attrs["http.request.method_original"] = request.method[:32]
        if route is not None:
            attrs["http.route"] = route
        repository = match.get("name")
        if repository:
            attrs["berth.repository"] = repository
        tenant = match.get("tenant") or (repository.partition("/")[0] if repository else None)
        if tenant:
            attrs["berth.tenant"] = tenant
        if request.remote:
            attrs["network.peer.address"] = request.remote
        parent = extract(request.headers) if "traceparent" in request.headers else None
        with tracer.start_as_current_span(f"{method} {route}" if route is not None else method, context=parent,
                                          kind=server, attributes=attrs, record_exception=False,
                                          set_status_on_exception=False) as span:
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as e:  # a redirect raised past the error middleware
                status = e.status
                raise
            except BaseException as e:  # cancelled (the client went away), or a bug
                span.set_attribute("error.type", type(e).__name__)
                raise
            finally:
                span.set_attribute("http.response.status_code", status)
                principal = request.get(logs.PRINCIPAL)
                if principal:
                    span.set_attribute("berth.principal", principal)
                if status >= 500:
                    span.set_attribute("error.type", str(status))
                    span.set_status(StatusCode.ERROR)

    return trace_request


# ---- child spans: database, content driver, auth --------------------------------------------------


def _child_wrapper(fn, name_of, attributes: dict[str, Any], on_result=None):
    """``fn`` (async) run inside a child span of the current span; just ``fn`` when no span records."""
    from opentelemetry import trace  # noqa: PLC0415

    tracer = _tracer
    current = trace.get_current_span

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        if not current().is_recording():
            return await fn(*args, **kwargs)
        with tracer.start_as_current_span(name_of(args), attributes=attributes, record_exception=False,
                                          set_status_on_exception=False) as span:
            try:
                result = await fn(*args, **kwargs)
            except BaseException as e:
                span.set_attribute("error.type", type(e).__name__)
                raise
            if on_result is not None:
                on_result(span, result)
            return result

    return call


def _operation_name(args: tuple) -> str:
    """The operation function's ``__qualname__``; for an adapter that runs its argument
    (``storage.principals._in_session``: marked ``runs_argument``), the argument's."""
    fn = args[0] if args else None
    if getattr(fn, "runs_argument", False) and len(args) > 1:
        fn = args[1]
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def trace_database(db: Any) -> Any:
    """One span per ``db.read``/``db.write``, named after the operation function's ``__qualname__``
    (``Catalog.get_manifest.<locals>.run``). Idempotent; returns ``db``."""
    if not getattr(db, "_berth_traced", False):
        system = db.dialect
        for kind in ("read", "write"):
            setattr(db, kind, _child_wrapper(getattr(db, kind), _operation_name,
                                             {"db.system.name": system, "berth.db.operation": kind}))
        db._berth_traced = True
    return db


def trace_driver(driver: Any) -> Any:
    """One span per content-driver call (``storage.stat``, ``storage.read``…) of a
    ``registry.metrics.TimedDriver``: its per-operation wrappers are wrapped once more. Streams
    (``read``, ``read_upload``, the listings) are spanned until the last chunk or the close."""
    if getattr(driver, "_berth_traced", False):
        return driver
    name = getattr(driver, "name", type(driver).__name__)
    for op in getattr(driver, "_ASYNC", ()):
        attrs = {"berth.storage.driver": name, "berth.storage.operation": op}
        setattr(driver, op, _child_wrapper(getattr(driver, op), lambda _a, n=f"storage.{op}": n, attrs))
    for op in (*getattr(driver, "_STREAMS", ()), *getattr(driver, "_LISTINGS", ())):
        setattr(driver, op, _stream_wrapper(getattr(driver, op), f"storage.{op}",
                                            {"berth.storage.driver": name, "berth.storage.operation": op}))
    driver._berth_traced = True
    return driver


def _stream_wrapper(fn, name: str, attributes: dict[str, Any]):
    """An async generator's span: not made current (a generator suspends between chunks; its
    consumer's context must stay the consumer's), ended when the stream ends or is closed."""
    from opentelemetry import trace  # noqa: PLC0415

    tracer = _tracer
    current = trace.get_current_span

    @functools.wraps(fn)
    async def stream(*args: Any, **kwargs: Any):
        it = fn(*args, **kwargs)
        if not current().is_recording():
            try:
                async for item in it:
                    yield item
            finally:
                await it.aclose()
            return
        span = tracer.start_span(name, attributes=attributes, record_exception=False, set_status_on_exception=False)
        chunks = size = 0
        try:
            async for item in it:
                chunks += 1
                size += len(item) if isinstance(item, (bytes, bytearray, memoryview)) else 0
                yield item
        except BaseException as e:
            span.set_attribute("error.type", type(e).__name__)
            raise
        finally:
            await it.aclose()
            span.set_attribute("berth.storage.chunks", chunks)
            if size:
                span.set_attribute("berth.storage.bytes", size)
            span.end()

    return stream


def _identity_result(span, result) -> None:
    identity = result[0] if isinstance(result, tuple) else result
    if identity is None:
        span.set_attribute("berth.auth.outcome", "refused")
    else:
        span.set_attribute("berth.auth.outcome", "ok")
        span.set_attribute("berth.auth.principal_kind", getattr(identity, "kind", "?"))


def trace_auth(auth: Any) -> Any:
    """Spans for the auth service's checks: ``auth.verify_token`` (a Bearer token on /v2/ and the
    admin API), ``auth.login`` (every password login: Basic, the realm, the admin API),
    ``auth.verify_refresh_token`` and ``auth.grant`` (the realm). No argument is recorded."""
    if auth is None or getattr(auth, "_berth_traced", False):
        return auth
    for method, name, on_result in (("identity_from_token", "auth.verify_token", _identity_result),
                                    ("login", "auth.login", _identity_result),
                                    ("identity_from_refresh_token", "auth.verify_refresh_token", _identity_result),
                                    ("grant", "auth.grant", None)):
        setattr(auth, method, _child_wrapper(getattr(auth, method), lambda _a, n=name: n, {}, on_result))
    auth._berth_traced = True
    return auth


def instrument(svc: Any) -> None:
    """Child spans for this process's services (``create_app``, after the auth service exists)."""
    trace_database(svc.db)
    trace_driver(svc.driver)
    trace_auth(svc.auth)
