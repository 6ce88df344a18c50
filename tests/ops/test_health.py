"""/healthz and /readyz: no authentication, no configuration in the answers, 503 with reasons."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from registry import health
from registry.config import Config
from registry.services import SERVICES
from storage.errors import DriverUnavailable

SECRET_URL = "s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket.internal.example:9000/berth"


@pytest.fixture
def auth_config(tmp_path, database_url) -> Config:
    cfg = Config(data_dir=tmp_path / "data", database_url=database_url)
    cfg.auth.admin_password = "Adm1n-health-pw"
    return cfg


async def test_healthz_and_readyz_answer_without_credentials(serve, auth_config):
    client = await serve(auth_config)  # auth on: /v2/ would say 401
    assert (await client.get("/v2/")).status == 401
    r = await client.get("/healthz")
    assert r.status == 200 and await r.json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status == 200, await r.text()
    assert await r.json() == {"status": "ready", "checks": {"database": "ok", "storage": "ok", "schema": "ok"}}
    assert r.headers["Cache-Control"] == "no-store"


async def test_readyz_503_when_the_content_store_fails_without_leaking_it(client, monkeypatch, caplog):
    svc = client.server.app[SERVICES]

    async def broken() -> None:
        raise DriverUnavailable(f"cannot reach {SECRET_URL}: connection refused")

    monkeypatch.setattr(svc.driver, "check", broken)
    r = await client.get("/readyz")
    assert r.status == 503
    body = await r.json()
    assert body["status"] == "unready"
    assert body["checks"]["database"] == "ok" and body["checks"]["schema"] == "ok"
    assert body["checks"]["storage"].startswith("failed (DriverUnavailable")
    raw = await r.text()
    for leak in ("AKIA", "wJalr", "bucket.internal", "9000", str(svc.config.data_dir)):
        assert leak not in raw


async def test_readyz_503_when_the_database_fails(client, monkeypatch):
    svc = client.server.app[SERVICES]

    async def down(fn, *args):
        raise ConnectionRefusedError(f"could not connect to {SECRET_URL}")

    monkeypatch.setattr(svc.db, "read", down)
    r = await client.get("/readyz")
    assert r.status == 503
    body = await r.json()
    assert body["checks"]["database"] == "failed (ConnectionRefusedError; see the server log)"
    assert body["checks"]["storage"] == "ok"
    assert "AKIA" not in await r.text()


async def test_readyz_names_what_the_schema_lacks(client):
    svc = client.server.app[SERVICES]
    await svc.db.write(lambda conn: conn.execute(text("ALTER TABLE uploads DROP COLUMN lease_expires_at")))
    r = await client.get("/readyz")
    assert r.status == 503
    assert (await r.json())["checks"]["schema"] == "missing uploads.lease_expires_at"


async def test_readyz_probes_the_store_once_per_interval(client, monkeypatch):
    """A kubelet probe storm reaches the content store (and the database) once per READY_TTL."""
    monkeypatch.setattr(health, "READY_TTL", 3600.0)
    svc = client.server.app[SERVICES]
    calls = []
    real = svc.driver.check

    async def counting() -> None:
        calls.append(1)
        await real()

    monkeypatch.setattr(svc.driver, "check", counting)
    for _ in range(5):
        assert (await client.get("/readyz")).status == 200
    assert len(calls) == 1
