"""create_app(config) -> aiohttp Application: services, middlewares, routes, background work."""
from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from storage.gc import sweep_uploads

from . import bootstrap, httplog, middleware
from .auth.guard import open_guard
from .config import Config
from .routes import add_routes
from .services import SERVICES, Services

log = logging.getLogger("berth")

UPLOAD_SWEEP_INTERVAL = 600  # seconds between sweeps of expired upload sessions


async def sweep_once(svc: Services) -> int:
    """One sweep of expired upload sessions and orphan upload bytes (every replica runs it;
    it is idempotent)."""
    return await sweep_uploads(svc.catalog, svc.driver, expiry=svc.config.upload_expiry)


async def _sweep_uploads(svc: Services) -> None:
    while True:
        await asyncio.sleep(UPLOAD_SWEEP_INTERVAL)
        try:
            await sweep_once(svc)
        except Exception:  # keep sweeping; a failed sweep is logged, not fatal
            log.exception("upload sweep failed")


def create_app(config: Config) -> web.Application:
    svc = bootstrap.build(config)
    httplog.install()  # a request the HTTP parser refuses is a WARNING line, not an ERROR traceback

    middlewares = [middleware.errors]
    if config.auth.enabled:
        from .auth.setup import auth_middleware  # noqa: PLC0415 - auth is optional at import time

        middlewares.append(auth_middleware(svc))
    else:
        middlewares.append(open_guard)

    app = web.Application(middlewares=middlewares, client_max_size=config.max_manifest_size)
    app[SERVICES] = svc
    add_routes(app)
    if config.auth.enabled:
        from .auth.setup import add_auth_routes  # noqa: PLC0415

        add_auth_routes(app)
    app.on_response_prepare.append(middleware.add_api_version)

    async def lifecycle(app: web.Application):
        await bootstrap.start(svc)  # schema, then driver.check()
        if config.auth.enabled:
            from .auth.setup import start_auth  # noqa: PLC0415

            await start_auth(svc)
        sweeper = asyncio.create_task(_sweep_uploads(svc))
        yield
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await bootstrap.stop(svc)

    app.cleanup_ctx.append(lifecycle)
    return app
