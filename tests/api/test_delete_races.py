"""The two races of issue 7 part 3, interleaved deterministically on SQLite and PostgreSQL:

1. a tenant force-deleted (``DELETE /admin/tenants/{t}?force=true``) during a push into one of
   its repositories: afterwards no repository, blob link, manifest or upload session of the
   deleted tenant may remain (the push either completed before the delete, which then removed
   it, or fails cleanly);
2. a manifest deleted while an index that lists it is being PUT: never an index whose child is
   gone (the delete either went first, and the PUT fails with MANIFEST_BLOB_UNKNOWN, or it
   waits for the index and is refused with ManifestInUse).

The push runs on one ``Database`` and pauses *inside* its write transaction, right where it
has made its checks; the competing delete runs on a second ``Database`` on the same database
(what a second ``berth serve``, or the admin CLI next to a server, is). Before the fixes the
delete went through while the push's transaction was open (SQLite: the push's reads were not
yet part of any transaction; PostgreSQL: nothing was locked), and the push then committed a
repository for a tenant that was gone, or an index whose child was gone.
"""
from __future__ import annotations

import asyncio
import json
import threading

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.util import await_only

import storage.catalog as catalog_module
from storage import db
from storage.catalog import Catalog
from storage.errors import ManifestBlobUnknown, ManifestInUse, NameUnknown
from storage.manifests import parse
from storage.models import Manifest, ManifestReference, Repository, RepositoryBlob, Tag, Upload
from storage.paths import Layout
from storage.principals import Principals
from tests.conftest import sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture
async def two(tmp_path, database_url):
    """Two Database objects on one database (two processes), the first with a tenant-aware catalog."""
    layout = Layout(tmp_path / "data")
    layout.create()
    url = database_url or db.default_url(layout)
    a, b = db.Database(url), db.Database(url)
    await a.create_schema()
    yield a, b
    await a.dispose()
    await b.dispose()


class Pause:
    """Stops a write transaction where the test says (a sync hook inside the operation) until
    ``proceed()``; works in SQLite's database threads and in PostgreSQL's greenlets."""

    def __init__(self, database: db.Database) -> None:
        self.sqlite = database.is_sqlite
        self.loop = asyncio.get_running_loop()
        self.reached = asyncio.Event()
        self._go_async = asyncio.Event()
        self._go_thread = threading.Event()

    def here(self) -> None:
        if self.sqlite:  # a database thread: block it (the event loop goes on)
            self.loop.call_soon_threadsafe(self.reached.set)
            if not self._go_thread.wait(60):  # a test that sits here has lost sight of the other side
                raise AssertionError("paused 60 s: the competing operation was never seen waiting or done")
        else:
            async def wait() -> None:
                self.reached.set()
                await self._go_async.wait()

            await_only(wait())

    def proceed(self) -> None:
        self._go_thread.set()
        self._go_async.set()


async def blocked_or_done(database: db.Database, task: asyncio.Task, engine_of_other: db.Database, verb: str) -> None:
    """Return once ``task`` (an operation on ``engine_of_other``) is done, or waits for a lock the
    paused transaction holds: PostgreSQL shows it in pg_stat_activity; on SQLite a write
    transaction first takes the writer ``flock`` (storage.db._writer_lock), then sends
    ``BEGIN IMMEDIATE``: a write started before the paused transaction ends waits for it, so
    the wait is seen as the write starts (before the flock there was only the ``BEGIN``; this
    test then sat out the pause's 60 s timeout)."""
    waiting = asyncio.Event()
    if engine_of_other.is_sqlite:
        loop = asyncio.get_running_loop()
        real_run = engine_of_other._run

        def run(write, fn, args):
            if write:
                assert engine_of_other._lock_path is not None  # the flock comes first
                loop.call_soon_threadsafe(waiting.set)
            return real_run(write, fn, args)

        engine_of_other._run = run
    else:
        async def poll() -> None:
            q = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                     f"AND query LIKE '{verb}%'")
            while not await database.read(lambda c: c.execute(q).scalar()):
                await asyncio.sleep(0.01)
            waiting.set()

        poller = asyncio.ensure_future(poll())
    w = asyncio.ensure_future(waiting.wait())
    await asyncio.wait([w, task], return_when=asyncio.FIRST_COMPLETED)
    w.cancel()
    if not engine_of_other.is_sqlite:
        poller.cancel()


def hook_insert(monkeypatch, model, pause: Pause) -> None:
    """Pause the operation at its INSERT of ``model`` (its checks are done, its transaction open)."""
    real = catalog_module._insert_ignore

    def insert_ignore(conn, m, **values):
        if m is model:
            pause.here()
        return real(conn, m, **values)

    monkeypatch.setattr(catalog_module, "_insert_ignore", insert_ignore)


async def count(database: db.Database, model, where=None) -> int:
    q = select(func.count()).select_from(model)
    if where is not None:
        q = q.where(where)
    return await database.read(lambda c: c.execute(q).scalar())


# ---- 1. a tenant force-deleted during a push into it ----------------------------------------------

async def _pinned(catalog: Catalog, data: bytes) -> str:
    digest = sha256(data)
    assert await catalog.pin_blob(digest, len(data))
    return digest


async def test_tenant_deleted_while_a_push_links_into_it(two, monkeypatch):
    """The push's link transaction has found (or made) the repository and is about to link; the
    tenant is force-deleted meanwhile. Either way round, nothing of the tenant may remain."""
    a, b = two
    catalog = Catalog(a, tenants=True)
    await Principals(a).create_tenant("acme")
    digest = await _pinned(catalog, b"layer")
    pause = Pause(a)
    real_hold = catalog_module._hold_link

    def hold_link(conn, rid, d):  # the link's INSERT: repository found (or made), tenant checked
        pause.here()
        return real_hold(conn, rid, d)

    monkeypatch.setattr(catalog_module, "_hold_link", hold_link)

    link = asyncio.ensure_future(catalog.link_blob("acme/app", digest, 5))
    await pause.reached.wait()
    delete = asyncio.ensure_future(Principals(b).delete_tenant("acme", purge_repositories=True))
    await blocked_or_done(a, delete, b, "SELECT")
    pause.proceed()
    await link  # it held the tenant: it completes, and the delete then removes what it added
    await delete
    assert await count(a, Repository) == 0
    assert await count(a, RepositoryBlob) == 0


async def test_push_authorised_before_a_tenant_delete_links_after_it(two):
    """The request was authorised while the tenant existed (the guard ran before the delete);
    its link, manifest and upload session come after the delete committed: all refused."""
    a, b = two
    catalog = Catalog(a, tenants=True)
    await Principals(a).create_tenant("acme")
    await Principals(a).create_tenant("src")
    layer = await _pinned(catalog, b"layer")
    cfg = await _pinned(catalog, b"{}")
    await catalog.link_blob("src/lib", layer, 5)
    await catalog.link_blob("acme/app", layer, 5)
    await catalog.link_blob("acme/app", cfg, 2)
    await Principals(b).delete_tenant("acme", purge_repositories=True)

    with pytest.raises(NameUnknown):
        await catalog.link_blob("acme/app", layer, 5)
    with pytest.raises(NameUnknown):
        await catalog.mount_blob("src/lib", "acme/app", layer)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
                       "layers": []}).encode()
    with pytest.raises(NameUnknown):
        await catalog.put_manifest("acme/app", sha256(body), parse(body, OCI_MANIFEST), body, "v1")
    with pytest.raises(NameUnknown):
        await catalog.create_upload("0" * 32, "acme/app", None, {})
    assert await catalog.repositories() == ["src/lib"]
    for model in (Manifest, Tag, Upload):
        assert await count(a, model) == 0, model.__tablename__
    assert await count(a, RepositoryBlob) == 1  # src/lib's


async def test_without_tenants_a_catalog_creates_repositories_freely(two):
    """Auth off (no tenants): repositories need no tenant row, as before."""
    a, _ = two
    catalog = Catalog(a)
    digest = await _pinned(catalog, b"x")
    await catalog.link_blob("any/repo", digest, 1)
    assert await catalog.repositories() == ["any/repo"]


# ---- 2. a manifest deleted while an index listing it is PUT ----------------------------------------

async def _image(catalog: Catalog, name: str, n: int) -> str:
    cfg = await _pinned(catalog, b'{"n": %d}' % n)
    await catalog.link_blob(name, cfg, len(b'{"n": %d}' % n))
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg,
                                  "size": len(b'{"n": %d}' % n)},
                       "layers": []}).encode()
    await catalog.put_manifest(name, sha256(body), parse(body, OCI_MANIFEST), body, None)
    return sha256(body), len(body)


async def test_child_deleted_while_its_index_is_put(two, monkeypatch):
    """The index PUT has checked its children and is about to insert; the child is deleted
    meanwhile from another process. The delete must wait and be refused: never an index whose
    child is gone."""
    a, b = two
    catalog = Catalog(a)
    child, size = await _image(catalog, "lib/app", 1)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                       "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": size}]}).encode()
    pause = Pause(a)
    hook_insert(monkeypatch, Manifest, pause)

    put = asyncio.ensure_future(catalog.put_manifest("lib/app", sha256(body), parse(body, OCI_INDEX), body, "multi"))
    await pause.reached.wait()
    delete = asyncio.ensure_future(Catalog(b).delete_manifest("lib/app", child))
    await blocked_or_done(a, delete, b, "SELECT")
    pause.proceed()
    await put
    with pytest.raises(ManifestInUse):
        await delete
    await assert_no_dangling_child(a)


async def test_index_put_after_its_child_was_deleted_fails(two):
    """The other order: the child went first; the index PUT finds it missing."""
    a, b = two
    catalog = Catalog(a)
    child, size = await _image(catalog, "lib/app", 2)
    await Catalog(b).delete_manifest("lib/app", child)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                       "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": size}]}).encode()
    with pytest.raises(ManifestBlobUnknown):
        await catalog.put_manifest("lib/app", sha256(body), parse(body, OCI_INDEX), body, "multi")
    await assert_no_dangling_child(a)


async def assert_no_dangling_child(database: db.Database) -> None:
    child = Manifest.__table__.alias("child")
    q = (
        select(func.count())
        .select_from(ManifestReference)
        .join(Manifest, Manifest.id == ManifestReference.manifest_id)
        .where(
            ManifestReference.kind == "manifest",
            ~select(child.c.id).where(child.c.repository_id == Manifest.repository_id,
                                      child.c.digest == ManifestReference.digest).exists(),
        )
    )
    assert await database.read(lambda c: c.execute(q).scalar()) == 0


def test_with_auth_on_the_registrys_catalog_checks_tenants(tmp_path):
    """The wiring: auth on (tenants exist) → every repository write checks its tenant; auth off
    (no tenants at all) → it does not."""
    from registry import bootstrap
    from registry.config import Config

    on = Config(data_dir=tmp_path / "on")
    off = Config(data_dir=tmp_path / "off")
    off.auth.enabled = False
    assert bootstrap.build(on).catalog.tenants is True
    assert bootstrap.build(off).catalog.tenants is False
