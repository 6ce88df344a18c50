"""Garbage collection against pushes of the same blob, interleaved deterministically
(issue 9 item 2): every linked blob has its content, always. Runs on both databases.

The collector runs with a content driver that stops right before it deletes a blob's
content (``Pausing``); the push goes through the application meanwhile. Before the pin
protocol, the push's dedup path found the file still there, touched it, linked it, and
the collector then deleted it: the repository served a blob whose file was gone.
"""
from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import update

import registry.service.blobs as blob_service
from registry.services import SERVICES
from storage.gc import collect
from storage.models import Blob, RepositoryBlob
from tests.conftest import error_code, push_blob, sha256


class Pausing:
    """A content driver that pauses ``delete`` until the test lets it go on."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.at_delete = asyncio.Event()
        self.proceed = asyncio.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def delete(self, digest: str) -> bool:
        self.at_delete.set()
        await self.proceed.wait()
        return await self.inner.delete(digest)


async def age(svc) -> None:
    old = time.time() - 7200
    await svc.db.write(lambda c: c.execute(update(Blob).values(last_used_at=old)))
    await svc.db.write(lambda c: c.execute(update(RepositoryBlob).values(created_at=old)))


@pytest.fixture
def pin_waits(monkeypatch):
    """Set when a push found the blob marked for deletion and waits for the collector."""
    waiting = asyncio.Event()
    real = blob_service.pin_backoff

    async def backoff(attempt: int) -> None:
        waiting.set()
        await real(attempt)

    monkeypatch.setattr(blob_service, "pin_backoff", backoff)
    return waiting


async def first_of(*aws) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in tasks:
        if not t.done():
            t.cancel()


@pytest.mark.parametrize("how", ["monolithic", "chunked"])
async def test_push_while_gc_deletes_the_same_blob(client, pin_waits, how):
    svc = client.server.app[SERVICES]
    data = b"a layer gc is collecting while it is pushed again"
    digest = await push_blob(client, "old/repo", data)
    assert (await client.delete(f"/v2/old/repo/blobs/{digest}")).status == 202
    await age(svc)

    driver = Pausing(svc.driver)
    gc = asyncio.create_task(collect(svc.catalog, driver, grace=3600))
    await driver.at_delete.wait()  # marked, about to delete the content

    async def push() -> None:
        if how == "monolithic":
            await push_blob(client, "new/repo", data)
            return
        r = await client.post("/v2/new/repo/blobs/uploads/")
        loc = r.headers["Location"]
        assert (await client.patch(loc, data=data)).status == 202
        r = await client.put(f"{loc}?digest={digest}")
        assert r.status == 201, await r.text()

    pushing = asyncio.create_task(push())
    await first_of(pin_waits.wait(), asyncio.shield(pushing))  # the push waits for the collector
    driver.proceed.set()
    report = await gc
    await pushing
    assert report.blobs_removed == 1
    r = await client.get(f"/v2/new/repo/blobs/{digest}")
    assert r.status == 200, await r.text()
    assert await r.read() == data  # placed again by the push, from its own upload
    assert (await client.get(f"/v2/old/repo/blobs/{digest}")).status == 404


async def test_mount_of_a_blob_gc_is_deleting_falls_back_to_an_upload(client):
    """Mount refuses a row marked for deletion: 202 and a session, never a link to content
    about to go."""
    svc = client.server.app[SERVICES]
    data = b"mounted while collected"
    digest = await push_blob(client, "src/repo", data)
    now = time.time()
    # the race's outcome: the collector marked the row after the mount read the source link
    await svc.db.write(lambda c: c.execute(update(Blob).values(deleting_at=now)))
    r = await client.post(f"/v2/dst/repo/blobs/uploads/?mount={digest}&from=src/repo")
    assert r.status == 202
    assert (await client.get(f"/v2/dst/repo/blobs/{digest}")).status == 404
    await svc.db.write(lambda c: c.execute(update(Blob).values(deleting_at=None)))
    r = await client.post(f"/v2/dst/repo/blobs/uploads/?mount={digest}&from=src/repo")
    assert r.status == 201


async def test_gc_takes_nothing_a_recent_push_uses(client):
    """Push, delete the link, collect at once: the blob row was used within the grace period."""
    svc = client.server.app[SERVICES]
    digest = await push_blob(client, "a/b", b"fresh")
    assert (await client.delete(f"/v2/a/b/blobs/{digest}")).status == 202
    report = await collect(svc.catalog, svc.driver, grace=3600)
    assert report.blobs_removed == 0
    assert await svc.driver.stat(digest) == 5
    r = await client.post(f"/v2/c/d/blobs/uploads/?digest={digest}", data=b"fresh")
    assert r.status == 201
    assert await (await client.get(f"/v2/c/d/blobs/{digest}")).read() == b"fresh"
    r = await client.get(f"/v2/a/b/blobs/{digest}")
    assert r.status == 404 and await error_code(r) == "BLOB_UNKNOWN"
    assert sha256(b"fresh") == digest


async def test_manifest_put_and_gc_link_removal_do_not_race(client, database_url, monkeypatch):
    """PostgreSQL: a manifest PUT checks the repository's links while the collector deletes
    the links no manifest references yet. The collector's DELETE must wait for the PUT and
    then keep the links the new manifest references (SQLite serialises the two anyway)."""
    if database_url is None:
        pytest.skip("SQLite runs one write transaction at a time")
    import json

    from sqlalchemy import text
    from sqlalchemy.util import await_only

    import storage.catalog as catalog_module
    from storage.models import Manifest

    svc = client.server.app[SERVICES]
    cfg = await push_blob(client, "race/img", b"{}")
    layer = await push_blob(client, "race/img", b"layer bytes")
    await age(svc)
    body = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 11}],
    }).encode()

    at_insert, proceed = asyncio.Event(), asyncio.Event()
    real_insert = catalog_module._insert_ignore

    async def pause() -> None:
        at_insert.set()
        await proceed.wait()

    def insert_ignore(conn, model, **values):
        if model is Manifest:  # the PUT has checked the links; its transaction is open
            await_only(pause())
        return real_insert(conn, model, **values)

    monkeypatch.setattr(catalog_module, "_insert_ignore", insert_ignore)
    put = asyncio.create_task(client.put("/v2/race/img/manifests/v1", data=body,
                                         headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}))
    await at_insert.wait()
    gc = asyncio.create_task(svc.catalog.unlink_unreferenced(time.time() - 3600))

    async def gc_blocked() -> None:
        q = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE%'")
        while not await svc.db.read(lambda c: c.execute(q).scalar()):
            await asyncio.sleep(0.01)

    await first_of(gc_blocked(), asyncio.shield(gc))  # before the fix the DELETE did not wait
    proceed.set()
    assert (await put).status == 201
    assert await gc == 0
    for d in (cfg, layer):
        r = await client.get(f"/v2/race/img/blobs/{d}")
        assert r.status == 200
