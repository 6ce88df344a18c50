"""create_app(config) -> aiohttp Application: services, middlewares, routes, background work."""
from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from storage import leases
from storage.gc import GCReport, collect, sweep_uploads

from . import bootstrap, httplog, limits, logs, middleware, tracing
from .auth.guard import open_guard
from .config import Config
from .routes import add_routes
from .services import SERVICES, Services

log = logging.getLogger("berth")

UPLOAD_SWEEP_INTERVAL = 600  # seconds between sweeps of expired upload sessions


async def sweep_once(svc: Services) -> int:
    """One sweep of expired upload sessions and orphan upload bytes (every replica runs it;
    it is idempotent)."""
    removed = await sweep_uploads(svc.catalog, svc.driver, expiry=svc.config.upload_expiry)
    if removed:
        from . import metrics  # noqa: PLC0415

        metrics.GC_OBJECTS_FREED.labels("uploads").inc(removed)
    return removed


async def _sweep_uploads(svc: Services) -> None:
    while True:
        await asyncio.sleep(UPLOAD_SWEEP_INTERVAL)
        try:  # one sweeper at a time across replicas (the lease `berth gc` takes too)
            await leases.hold(svc.db, leases.GC_LEASE, lambda: sweep_once(svc))
        except Exception:  # keep sweeping; a failed sweep is logged, not fatal
            log.exception("upload sweep failed")


async def run_gc_once(svc: Services) -> GCReport:
    """One garbage collection with the configured grace (``gc.*``): what the server's loop runs
    every ``gc.interval`` seconds. Safe while serving and from several processes at once; a
    database lease (one collector across replicas) wraps this one call."""
    gc = svc.config.gc
    return await collect(svc.catalog, svc.driver, grace=gc.grace, upload_expiry=svc.config.upload_expiry,
                         untagged_after=gc.untagged_manifests_after)


async def _collect_garbage(svc: Services) -> None:
    while True:
        await asyncio.sleep(svc.config.gc.interval)
        try:  # one collector at a time across replicas, workers and `berth gc` (storage.leases)
            held, report = await leases.hold(svc.db, leases.GC_LEASE, lambda: run_gc_once(svc))
            if not held:
                continue
            from . import metrics  # noqa: PLC0415

            metrics.gc_finished(report)
            log.info("gc: removed %d manifests, %d links, %d blobs (%d bytes), %d uploads", report.manifests_removed,
                     report.links_removed, report.blobs_removed, report.bytes_freed, report.uploads_removed)
        except Exception:  # keep collecting; a failed collection is logged, not fatal
            log.exception("garbage collection failed")


def create_app(config: Config) -> web.Application:
    svc = bootstrap.build(config)
    httplog.install()  # a request the HTTP parser refuses is a WARNING line, not an ERROR traceback

    middlewares = [middleware.front(config.limits.max_header_bytes)]  # request id, errors, header size
    if config.auth.enabled:
        from .auth.setup import auth_middleware  # noqa: PLC0415 - auth is optional at import time

        middlewares.append(auth_middleware(svc))
    else:
        middlewares.append(open_guard)
    limiters = limits.Limiters(config.limits)  # this process's buckets (docs/operations.md)
    if limiters.principals is not None or limiters.tenants is not None:
        middlewares.append(limits.rate_limit(limiters))

    traced = tracing.configure(config)  # off (nothing imported, nothing wrapped) without tracing.otlp_endpoint
    if traced:
        middlewares.insert(0, tracing.middleware())  # the request span, around everything (docs/operations.md)
        tracing.instrument(svc)  # database, content-driver and auth spans

    app = web.Application(middlewares=middlewares, client_max_size=config.max_manifest_size,
                          handler_args=limits.handler_args(config.limits))
    app[SERVICES] = svc
    app[limits.LIMITERS] = limiters
    app[logs.ACCESS_ENABLED] = config.access_log
    add_routes(app)
    if config.auth.enabled:
        from .auth.setup import add_auth_routes  # noqa: PLC0415

        add_auth_routes(app)
    app.on_response_prepare.append(middleware.add_api_version)
    app.on_response_prepare.append(logs.echo_request_id)

    async def lifecycle(app: web.Application):
        await bootstrap.start(svc)  # schema, then driver.check()
        if config.auth.enabled:
            from .auth.setup import start_auth  # noqa: PLC0415

            await start_auth(svc)
        sweeper = asyncio.create_task(_sweep_uploads(svc))
        collector = asyncio.create_task(_collect_garbage(svc)) if config.gc.interval > 0 else None
        yield
        for task in (sweeper, collector):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await bootstrap.stop(svc)
        if traced:
            await asyncio.get_running_loop().run_in_executor(None, tracing.shutdown)  # flush the last spans

    app.cleanup_ctx.append(lifecycle)
    return app
