"""create_app(config) -> aiohttp Application: services, middlewares, routes, background work."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import web

from storage import db, leases
from storage.blobs import BlobStore
from storage.catalog import Catalog
from storage.gc import purge_uploads
from storage.paths import Layout

from . import middleware
from .auth.guard import open_guard
from .config import Config
from .routes import add_routes
from .services import SERVICES, Services

log = logging.getLogger("berth")

UPLOAD_SWEEP_INTERVAL = 600  # seconds between sweeps of expired upload sessions


async def _sweep_uploads(svc: Services) -> None:
    while True:
        await asyncio.sleep(UPLOAD_SWEEP_INTERVAL)
        try:  # one sweeper at a time across replicas (the lease `berth gc` takes too)
            await leases.hold(svc.db, leases.GC_LEASE,
                              lambda: purge_uploads(svc.catalog, svc.blobs, time.time() - svc.config.upload_expiry))
        except Exception:  # keep sweeping; a failed sweep is logged, not fatal
            log.exception("upload sweep failed")


def create_app(config: Config) -> web.Application:
    layout = Layout(config.data_dir)
    layout.create()
    database = db.Database(config.database_url or db.default_url(layout))
    svc = Services(config=config, layout=layout, db=database, blobs=BlobStore(layout), catalog=Catalog(database))

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
        await database.create_schema()
        if config.auth.enabled:
            from .auth.setup import start_auth  # noqa: PLC0415

            await start_auth(svc)
        sweeper = asyncio.create_task(_sweep_uploads(svc))
        yield
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await database.dispose()

    app.cleanup_ctx.append(lifecycle)
    return app
