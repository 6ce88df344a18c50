"""Schema migrations (storage.migrations, Alembic): a database as released before migrations,
filled, upgraded by `berth db upgrade`, keeps every tenant, user, robot, manifest and tag and is
served; the revisions build exactly the models' schema (this fails when a branch adds a column
without a revision: docs/storage.md, "Adding a column"). SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from registry.app import create_app
from registry.cli import main
from registry.config import Config
from storage import migrations
from storage.db import Database
from storage.models import Base
from storage.paths import Layout

from ..conftest import DATABASE_PARAMS


@pytest.fixture(params=DATABASE_PARAMS)
def empty_url(request, tmp_path):
    """An empty database: SQLite under tmp_path, or a PostgreSQL database without tables."""
    if request.param == "sqlite":
        (tmp_path / "data").mkdir()
        yield f"sqlite:///{tmp_path / 'data' / 'berth.db'}"
        return
    with request.getfixturevalue("postgres_cluster").empty_database() as url:
        yield url


def run(url: str, fn, write: bool = True):
    async def go():
        db = Database(url)
        try:
            return await (db.write(fn) if write else db.read(fn))
        finally:
            await db.dispose()
    return asyncio.run(go())


def upgrade_to(rev: str):
    def fn(conn):
        migrations.upgrade(conn, rev)
    return fn


def differences(conn):
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return compare_metadata(ctx, Base.metadata)


def test_revisions_build_the_models_schema(empty_url):
    """Revision by revision from nothing (not the create_all shortcut of an empty database)."""
    run(empty_url, upgrade_to("0001"))
    run(empty_url, upgrade_to("head"))
    assert run(empty_url, differences, write=False) == []


def test_a_new_database_is_created_at_head(empty_url):
    before, after = run(empty_url, migrations.upgrade)
    assert (before, after) == (None, migrations.head())
    assert run(empty_url, differences, write=False) == []


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


LAYER = b"layer bytes of a released berth" * 10
CONFIG = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(CONFIG), "size": len(CONFIG)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(LAYER), "size": len(LAYER)}],
}).encode()


def fill_release(conn) -> None:
    """Rows as the release before migrations wrote them (its columns only)."""
    x = lambda sql, **kw: conn.execute(text(sql), kw)  # noqa: E731
    x("INSERT INTO tenants (id, name, public, created_at) VALUES (1, 'acme', false, 1.0), (2, 'beta', true, 2.0)")
    x("INSERT INTO users (id, username, password_hash, is_admin, version, created_at) VALUES "
      "(1, 'admin', '$2b$12$x', true, 1, 1.0), (2, 'alice', '$2b$12$y', false, 3, 1.0)")
    x("INSERT INTO memberships (tenant_id, user_id, role) VALUES (1, 2, 'owner')")
    x("INSERT INTO robots (id, tenant_id, name, username, secret_hash, actions, repositories, expires_at, version, "
      "description, created_at) VALUES (1, 1, 'ci', 'acme+ci', '$2b$12$z', 'pull,push', '[\"app*\"]', NULL, 2, "
      "'the CI', 1.0)")
    x("INSERT INTO repositories (id, name, created_at) VALUES (1, 'acme/app', 1.0)")
    for d, data in ((sha(CONFIG), CONFIG), (sha(LAYER), LAYER)):
        x("INSERT INTO blobs (digest, size, created_at) VALUES (:d, :s, 1.0)", d=d, s=len(data))
        x("INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (1, :d, 1.0)", d=d)
    x("INSERT INTO manifests (id, repository_id, digest, media_type, size, content, created_at) VALUES "
      "(1, 1, :d, 'application/vnd.oci.image.manifest.v1+json', :s, :c, 1.0)",
      d=sha(MANIFEST), s=len(MANIFEST), c=MANIFEST)
    x("INSERT INTO manifest_references (manifest_id, digest, kind) VALUES (1, :a, 'blob'), (1, :b, 'blob')",
      a=sha(CONFIG), b=sha(LAYER))
    x("INSERT INTO tags (repository_id, name, manifest_id, updated_at) VALUES (1, 'v1', 1, 1.0)")
    x("INSERT INTO uploads (id, repository, started_at, updated_at) VALUES ('u1', 'acme/app', 1.0, 1.0)")
    x("INSERT INTO audit_events (id, at, actor, action, tenant) VALUES (1, 1.0, 'admin', 'tenant.create', 'acme')")


def snapshot(conn) -> dict:
    q = lambda sql: [tuple(r) for r in conn.execute(text(sql))]  # noqa: E731
    return {
        "tenants": q("SELECT id, name, public FROM tenants ORDER BY id"),
        "users": q("SELECT id, username, password_hash, is_admin, version FROM users ORDER BY id"),
        "memberships": q("SELECT tenant_id, user_id, role FROM memberships"),
        "robots": q("SELECT id, username, secret_hash, actions, repositories, version, description FROM robots"),
        "repositories": q("SELECT id, name FROM repositories"),
        "blobs": q("SELECT digest, size FROM blobs ORDER BY digest"),
        "links": q("SELECT repository_id, digest FROM repository_blobs ORDER BY digest"),
        "manifests": q("SELECT id, digest, size, content FROM manifests"),
        "references": q("SELECT manifest_id, digest, kind FROM manifest_references ORDER BY digest"),
        "tags": q("SELECT repository_id, name, manifest_id FROM tags"),
        "audit": q("SELECT id, actor, action, tenant FROM audit_events"),
    }


@pytest.mark.parametrize("stamped", [True, False], ids=["stamped-0001", "made-by-create_all"])
async def test_upgrade_keeps_everything_and_serves_it(empty_url, tmp_path, monkeypatch, aiohttp_client, capsys,
                                                      stamped):
    def release(conn):
        migrations.upgrade(conn, "0001")
        if not stamped:  # what create_all of the release left: the tables, no alembic_version
            conn.execute(text("DROP TABLE alembic_version"))
        fill_release(conn)
        return snapshot(conn)

    db = Database(empty_url)
    try:
        before = await db.write(release)
    finally:
        await db.dispose()
    data = tmp_path / "data"
    layout = Layout(data)
    for blob in (CONFIG, LAYER):
        path = layout.blob(sha(blob))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)

    monkeypatch.setenv("BERTH_DATABASE_URL", empty_url)
    assert await asyncio.to_thread(main, ["db", "current", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert ("schema: 0001" if stamped else "created without migrations") in out
    assert await asyncio.to_thread(main, ["db", "check", "--data", str(data)]) == 2
    assert await asyncio.to_thread(main, ["db", "upgrade", "--data", str(data)]) == 0
    assert f"-> {migrations.head()}" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["db", "check", "--data", str(data)]) == 0

    db = Database(empty_url)
    try:
        assert await db.read(snapshot) == before
        assert await db.read(differences) == []
        assert await db.read(lambda c: c.execute(text("SELECT count(*) FROM uploads")).scalar()) == 0
    finally:
        await db.dispose()

    cfg = Config(data_dir=data, database_url=empty_url)
    cfg.auth.enabled = False
    client = await aiohttp_client(create_app(cfg))
    r = await client.get("/v2/acme/app/manifests/v1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 200 and await r.read() == MANIFEST
    r = await client.get(f"/v2/acme/app/blobs/{sha(LAYER)}")
    assert r.status == 200 and await r.read() == LAYER


async def test_auto_migrate_off_refuses_an_old_schema(empty_url, tmp_path, monkeypatch, capsys):
    db = Database(empty_url)
    try:
        await db.write(upgrade_to("0001"))
    finally:
        await db.dispose()
    data = tmp_path / "data"
    monkeypatch.setenv("BERTH_DATABASE_URL", empty_url)
    monkeypatch.setenv("BERTH_DATABASE_AUTO_MIGRATE", "false")
    monkeypatch.setenv("BERTH_ADMIN_PASSWORD", "pw-for-the-test")
    code = await asyncio.to_thread(main, ["serve", "--data", str(data), "--workers", "1", "--port", "1", "--prepare"])
    assert code == 2
    assert "berth db upgrade" in capsys.readouterr().err
    db = Database(empty_url)
    try:
        assert await db.read(migrations.current) == "0001"
        assert await db.read(lambda c: c.execute(text("SELECT count(*) FROM users")).scalar()) == 0  # no admin
    finally:
        await db.dispose()


def test_one_head():
    """Two branches that each added a revision after the same parent: chain one after the other."""
    heads = migrations.script().get_heads()
    assert len(heads) == 1, f"several heads {heads}: set one's down_revision to the other"


def test_the_schema_head_known_without_alembic_is_alembics():
    """storage.db.SCHEMA_HEAD lets a start on a current schema skip importing Alembic: a new
    revision must move it too."""
    from storage.db import SCHEMA_HEAD

    assert SCHEMA_HEAD == migrations.head(), "set storage.db.SCHEMA_HEAD to the new revision"


def test_a_start_on_a_current_schema_does_not_import_alembic(tmp_path):
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'b.db'}"
    code = ("import asyncio, sys\nfrom storage.db import Database\n"
            "async def go(first):\n    db = Database(sys.argv[1])\n    await db.create_schema()\n    await db.dispose()\n"
            "asyncio.run(go(True))\nprint('alembic' in sys.modules)\n")
    subprocess.run([sys.executable, "-c", code, url], check=True, capture_output=True)  # creates it (imports alembic)
    again = subprocess.run([sys.executable, "-c", code, url], check=True, capture_output=True, text=True)
    assert again.stdout.strip() == "False"
