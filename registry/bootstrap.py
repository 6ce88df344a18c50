"""Build a Berth process's parts once, for the app and the CLI: config → database → content
driver → services (``build``); ``start`` creates the schema and probes the driver,
``stop`` releases both."""
from __future__ import annotations

from storage import db
from storage.catalog import Catalog
from storage.content import open_driver
from storage.paths import Layout

from . import metrics
from .config import Config
from .service import Blobs, Manifests, Repositories, Tags, Uploads
from .services import Services


def build(config: Config) -> Services:
    layout = Layout(config.data_dir)
    layout.create()  # the SQLite database and the signing keys live here whatever the driver
    database = metrics.time_database(db.Database(config.database_url or db.default_url(layout)))
    driver = metrics.timed_driver(open_driver(config.storage, config.data_dir))
    catalog = Catalog(database, tenants=config.auth.enabled)  # with auth on, a repository needs its tenant
    blobs = Blobs(catalog, driver)
    return Services(
        config=config,
        layout=layout,
        db=database,
        catalog=catalog,
        driver=driver,
        blobs=blobs,
        uploads=Uploads(catalog, driver, blobs, config.max_blob_size,
                        max_sessions=config.limits.max_upload_sessions_per_principal,
                        session_expiry=config.upload_expiry),
        manifests=Manifests(catalog),
        tags=Tags(catalog),
        repositories=Repositories(catalog),
    )


async def start(svc: Services) -> None:
    """Migrate the schema (``database.auto_migrate``; else refuse an old one) and check the content store can be used
    (``storage.errors.DriverUnavailable`` otherwise)."""
    await svc.db.create_schema(auto_migrate=svc.config.database.auto_migrate)
    await svc.driver.check()


async def stop(svc: Services) -> None:
    try:
        await svc.driver.close()
    finally:
        await svc.db.dispose()
