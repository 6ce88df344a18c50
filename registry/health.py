"""``/healthz``, ``/readyz`` and ``/metrics``.

None of them needs authentication and none says anything about the configuration: the
readiness reasons name what failed (``database``, ``storage``, ``schema``) and the exception's
class, never a URL, path, bucket or credential (the full error goes to the server log).
"""
from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from sqlalchemy import func, inspect, select, text

from . import metrics
from .services import SERVICES, Services

log = logging.getLogger("berth.health")

READY_TTL = 5.0  # seconds a readiness result is reused (a probe storm never hammers S3 or the database)
SCHEMA_TTL = 300.0  # seconds a "schema current" result is reused
CHECK_TIMEOUT = 10.0  # seconds each check may take before it counts as failed


# ---- /healthz ------------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and its event loop answers."""
    return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})


# ---- /readyz -------------------------------------------------------------------------------------


def _missing_schema(conn) -> list[str]:
    """Tables and columns the models define that the database lacks."""
    from storage.models import Base  # noqa: PLC0415

    insp = inspect(conn)
    have = set(insp.get_table_names())
    missing = []
    for table in Base.metadata.sorted_tables:
        if table.name not in have:
            missing.append(table.name)
            continue
        cols = {c["name"] for c in insp.get_columns(table.name)}
        missing += [f"{table.name}.{c.name}" for c in table.columns if c.name not in cols]
    return missing


class Readiness:
    """The cached readiness of one process: database, content store, schema."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._result: tuple[float, bool, dict[str, str]] | None = None
        self._schema: tuple[float, str] | None = None
        self._running: asyncio.Future | None = None

    async def check(self) -> tuple[bool, dict[str, str]]:
        now = time.monotonic()
        if self._result is not None and now - self._result[0] < READY_TTL:
            return self._result[1], self._result[2]
        if self._running is None:  # concurrent probes share one round of checks
            self._running = asyncio.ensure_future(self._check())
            self._running.add_done_callback(lambda _: setattr(self, "_running", None))
        return await asyncio.shield(self._running)

    async def _check(self) -> tuple[bool, dict[str, str]]:
        db, schema, storage = await asyncio.gather(
            self._guard("database", self._database()), self._guard("schema", self._schema_check()),
            self._guard("storage", self.svc.driver.check()))
        checks = {"database": db, "storage": storage, "schema": schema}
        ok = all(v == "ok" for v in checks.values())
        self._result = (time.monotonic(), ok, checks)
        return ok, checks

    async def _guard(self, name: str, coro) -> str:
        try:
            result = await asyncio.wait_for(coro, CHECK_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning("readiness: %s did not answer within %s s", name, CHECK_TIMEOUT)
            return f"timed out after {CHECK_TIMEOUT:g} s"
        except Exception as e:
            log.warning("readiness: %s check failed: %s", name, e)
            return f"failed ({type(e).__name__}; see the server log)"
        return "ok" if result is None else result

    async def _database(self) -> None:
        await self.svc.db.read(lambda conn: conn.execute(text("SELECT 1")).scalar_one())

    async def _schema_check(self) -> str | None:
        now = time.monotonic()
        if self._schema is not None and now - self._schema[0] < SCHEMA_TTL:
            return self._schema[1]
        missing = await self.svc.db.read(_missing_schema)
        verdict = "ok" if not missing else "missing " + ", ".join(missing[:10])
        # a failing verdict is re-checked at the next probe (an operator may be migrating now)
        self._schema = (now, verdict) if not missing else None
        return verdict


READINESS = web.AppKey("readiness", Readiness)


async def readyz(request: web.Request) -> web.Response:
    """200 when the database answers, the content store can be written, read and deleted, and the
    schema has every table and column the code needs; else 503 with each check's verdict."""
    ok, checks = await request.app[READINESS].check()
    return web.json_response({"status": "ready" if ok else "unready", "checks": checks},
                             status=200 if ok else 503, headers={"Cache-Control": "no-store"})


# ---- /metrics ------------------------------------------------------------------------------------


def _usage(conn) -> tuple[dict[str, int], int]:
    """(tenant -> bytes of distinct live blobs its repositories link, open upload sessions)."""
    from storage.models import Blob, Repository, RepositoryBlob, Upload  # noqa: PLC0415

    seen: dict[str, set[str]] = {}
    usage: dict[str, int] = {}
    rows = conn.execute(
        select(Repository.name, Blob.digest, Blob.size)
        .join(RepositoryBlob, RepositoryBlob.repository_id == Repository.id)
        .join(Blob, Blob.digest == RepositoryBlob.digest)
        .where(Blob.deleting_at.is_(None)))
    for name, digest, size in rows:
        tenant = name.partition("/")[0]
        digests = seen.setdefault(tenant, set())
        if digest not in digests:
            digests.add(digest)
            usage[tenant] = usage.get(tenant, 0) + size
    uploads = conn.execute(select(func.count()).select_from(Upload)).scalar_one()
    return usage, int(uploads)


SCRAPE = web.AppKey("scrape_collector", metrics.ScrapeCollector)


async def metrics_endpoint(request: web.Request) -> web.Response:
    """The Prometheus text exposition (every worker's values in multi-process mode)."""
    scrape = request.app[SCRAPE]
    try:
        await scrape.refresh()
    except Exception as e:  # the gauges keep their last values; the rest is still worth scraping
        log.warning("metrics: the per-tenant usage could not be read: %s", e)
    body, content_type = await asyncio.get_running_loop().run_in_executor(None, metrics.exposition, scrape)
    resp = web.Response(body=body, headers={"Cache-Control": "no-store"})
    resp.headers["Content-Type"] = content_type
    return resp


def add_routes(app: web.Application) -> None:
    svc = app[SERVICES]
    app[READINESS] = Readiness(svc)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if getattr(svc.config, "metrics_enabled", True):
        app[SCRAPE] = metrics.ScrapeCollector(lambda: svc.db.read(_usage))
        app.router.add_get("/metrics", metrics_endpoint)
