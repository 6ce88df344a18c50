"""storage.gc: unreferenced links and unused blobs past the grace period, expired uploads;
every delay kept in the database, every byte reached through the content driver."""
from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import select, update

from storage.content.filesystem import FilesystemDriver
from storage.digest import of_bytes
from storage.gc import collect, sweep_uploads
from storage.manifests import parse
from storage.models import Blob, RepositoryBlob, Upload

OLD = time.time() - 10 * 24 * 3600


@pytest.fixture
def env(store):
    return store.catalog, store.driver, store.layout


async def one(data: bytes):
    yield data


async def place(driver, data: bytes, upload_id: str | None = None) -> str:
    import uuid

    upload_id = upload_id or uuid.uuid4().hex
    digest = of_bytes(data)
    state = await driver.start_upload(upload_id)
    n, state = await driver.append(upload_id, state, 0, one(data))
    await driver.commit(upload_id, state, n, digest)
    return digest


async def store_blob(catalog, blobs, name, data, *, link=True, age=None):
    """Push as the service does: pin the row, place the content, link it."""
    digest = of_bytes(data)
    assert await catalog.pin_blob(digest, len(data))
    await place(blobs, data)
    if link:
        await catalog.link_blob(name, digest, len(data))
    if age is not None:
        await age_blob(catalog, digest, age)
    return digest


async def age_blob(catalog, digest, age):
    stmt = update(Blob).where(Blob.digest == digest).values(last_used_at=time.time() - age)
    await catalog.db.write(lambda c: c.execute(stmt))


async def size(blobs, digest):
    return await blobs.stat(digest)


async def read(blobs, digest) -> bytes:
    return b"".join([c async for c in blobs.read(digest)])


async def test_unreferenced_blob_past_grace_removed(env):
    catalog, blobs, _ = env
    d = await store_blob(catalog, blobs, "a/b", b"orphan", age=7200)
    await catalog.unlink_blob("a/b", d)
    report = await collect(catalog, blobs, grace=3600)
    assert report.blobs_removed == 1
    assert report.bytes_freed == len(b"orphan")
    assert await size(blobs, d) is None
    assert d not in await catalog.known_blobs()


async def test_unreferenced_blob_within_grace_kept(env):
    catalog, blobs, _ = env
    d = await store_blob(catalog, blobs, "a/b", b"fresh orphan")
    await catalog.unlink_blob("a/b", d)
    report = await collect(catalog, blobs, grace=3600)
    assert report.blobs_removed == 0
    assert await size(blobs, d) is not None
    assert d in await catalog.known_blobs()


async def test_delays_are_in_the_database_not_in_file_times(env):
    """An old file whose row was used recently is kept; a fresh file whose row is old goes."""
    catalog, blobs, _ = env
    kept = await store_blob(catalog, blobs, "a/b", b"used recently")
    os.utime(blobs.local_path(kept), (1, 1))
    gone = await store_blob(catalog, blobs, "a/b", b"unused for long", age=7200)
    for d in (kept, gone):
        await catalog.unlink_blob("a/b", d)
    report = await collect(catalog, blobs, grace=3600)
    assert report.blobs_removed == 1
    assert await size(blobs, kept) is not None and await size(blobs, gone) is None


async def test_content_without_row_removed(env):
    catalog, blobs, _ = env
    d = await place(blobs, b"crash between commit and link, or a lost row")
    report = await collect(catalog, blobs, grace=3600)
    assert report.blobs_removed == 1
    assert report.bytes_freed == len(b"crash between commit and link, or a lost row")
    assert await size(blobs, d) is None
    assert d not in await catalog.known_blobs()


async def test_row_without_content_removed(env):
    """A push pinned the row and died before placing the content."""
    catalog, blobs, _ = env
    d = of_bytes(b"never placed")
    assert await catalog.pin_blob(d, 12)
    await age_blob(catalog, d, 7200)
    report = await collect(catalog, blobs, grace=3600)
    assert report.blobs_removed == 0
    assert d not in await catalog.known_blobs()


async def test_referenced_blob_kept(env):
    catalog, blobs, _ = env
    linked = await store_blob(catalog, blobs, "a/b", b"linked", age=7200)
    cfg = await store_blob(catalog, blobs, "a/b", b"config", age=7200)
    body = _manifest(cfg, linked)
    await catalog.put_manifest("a/b", of_bytes(body), parse(body, None), body, "v1")
    report = await collect(catalog, blobs, grace=0)
    assert report.blobs_removed == 0
    assert await read(blobs, linked) == b"linked"
    assert await read(blobs, cfg) == b"config"


async def test_blob_linked_in_another_repository_kept(env):
    catalog, blobs, _ = env
    d = await store_blob(catalog, blobs, "a/one", b"shared", age=7200)
    await catalog.link_blob("a/two", d, 6)
    await catalog.unlink_blob("a/one", d)
    report = await collect(catalog, blobs, grace=3600)  # a/two's link is young: a push in progress
    assert report.blobs_removed == 0
    assert await read(blobs, d) == b"shared"


def _manifest(cfg: str, layer: str) -> bytes:
    return (
        '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        f'"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":6}},'
        f'"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":6}}]}}'
    ).encode()


async def _age_links(catalog):
    await catalog.db.write(lambda c: c.execute(update(RepositoryBlob).values(created_at=OLD)))
    await catalog.db.write(lambda c: c.execute(update(Blob).values(last_used_at=OLD)))


async def test_deleted_image_layers_reclaimed(env):
    catalog, blobs, _ = env
    layer = await store_blob(catalog, blobs, "a/b", b"layer!", age=7200)
    cfg = await store_blob(catalog, blobs, "a/b", b"config", age=7200)
    body = _manifest(cfg, layer)
    await catalog.put_manifest("a/b", of_bytes(body), parse(body, None), body, "v1")
    await _age_links(catalog)
    assert (await collect(catalog, blobs, grace=3600)).blobs_removed == 0  # still referenced
    await catalog.delete_manifest("a/b", of_bytes(body))
    report = await collect(catalog, blobs, grace=3600)
    assert report.links_removed == 2
    assert report.blobs_removed == 2
    assert await size(blobs, layer) is None and await size(blobs, cfg) is None
    assert await catalog.blob_size("a/b", layer) is None


async def test_unreferenced_link_kept_while_young(env):
    catalog, blobs, _ = env
    d = await store_blob(catalog, blobs, "a/b", b"pushed, manifest not yet", age=7200)
    report = await collect(catalog, blobs, grace=3600)
    assert report.links_removed == 0
    assert await catalog.blob_size("a/b", d) is not None
    await _age_links(catalog)
    report = await collect(catalog, blobs, grace=3600)
    assert report.links_removed == 1 and report.blobs_removed == 1


async def test_blob_shared_with_a_referencing_repository_kept(env):
    catalog, blobs, _ = env
    layer = await store_blob(catalog, blobs, "a/one", b"layer!", age=7200)
    cfg = await store_blob(catalog, blobs, "a/one", b"config", age=7200)
    body = _manifest(cfg, layer)
    await catalog.put_manifest("a/one", of_bytes(body), parse(body, None), body, "v1")
    await catalog.link_blob("a/two", layer, 6)  # mounted, never used by a manifest there
    await _age_links(catalog)
    report = await collect(catalog, blobs, grace=3600)
    assert report.links_removed == 1  # a/two's link only
    assert report.blobs_removed == 0
    assert await catalog.blob_size("a/one", layer) == 6
    assert await catalog.blob_size("a/two", layer) is None


async def test_marked_rows_refuse_pins_links_and_mounts(env):
    """While a collector has a row marked, nothing links it; a mark from a dead collector
    (older than MARK_STALE) is taken over by a pin and by the next collector."""
    from storage.errors import BlobDeleting
    from storage.gc import MARK_STALE

    catalog, blobs, _ = env
    d = await store_blob(catalog, blobs, "a/src", b"marked")
    await catalog.unlink_blob("a/src", d)
    await age_blob(catalog, d, 7200)
    now = time.time()
    assert await catalog.mark_unused_blobs(now - 3600, now, now - MARK_STALE) == [(d, 6)]
    assert await catalog.pin_blob(d, 6, steal_before=now - MARK_STALE) is False
    with pytest.raises(BlobDeleting):
        await catalog.link_blob("a/b", d, 6)
    with pytest.raises(BlobDeleting):  # no row at all (a collector deleted it, content and all)
        await catalog.link_blob("a/b", of_bytes(b"no row"), 6)
    assert await catalog.mount_blob("a/src", "a/c", d) is None  # (not linked in a/src either)
    # a dead collector's mark
    stale = time.time() - MARK_STALE - 60
    await catalog.db.write(lambda c: c.execute(update(Blob).values(deleting_at=stale)))
    assert await catalog.pin_blob(d, 6, steal_before=time.time() - MARK_STALE) is True
    row = await catalog.db.read(lambda c: c.execute(select(Blob.deleting_at)).scalar())
    assert row is None
    await catalog.link_blob("a/b", d, 6)
    assert await read(blobs, d) == b"marked"


async def test_next_collector_finishes_a_dead_collectors_marks(env):
    from storage.gc import MARK_STALE

    catalog, blobs, _ = env
    d = await store_blob(catalog, blobs, "a/b", b"half collected", link=False, age=7200)
    stale = time.time() - MARK_STALE - 60
    await catalog.db.write(lambda c: c.execute(update(Blob).values(deleting_at=stale)))
    report = await collect(catalog, blobs, grace=3600)
    assert report.blobs_removed == 1
    assert d not in await catalog.known_blobs()


async def start_session(catalog, blobs, name="a/b") -> str:
    import uuid

    upload_id = uuid.uuid4().hex
    state = await blobs.start_upload(upload_id)
    await catalog.create_upload(upload_id, name, None, state)
    await blobs.append(upload_id, state, 0, one(b"x"))  # the file comes with the first byte
    return upload_id


async def upload_bytes(blobs, upload_id: str) -> None:
    """Upload bytes no session row knows (what a crash leaves)."""
    state = await blobs.start_upload(upload_id)
    await blobs.append(upload_id, state, 0, one(b"x"))


async def test_expired_uploads_purged(env):
    catalog, blobs, layout = env
    stale = await start_session(catalog, blobs)
    fresh = await start_session(catalog, blobs)
    orphan_old = "a" * 32  # bytes with no row (e.g. a crash), old
    await upload_bytes(blobs, orphan_old)
    os.utime(layout.upload(orphan_old), (OLD, OLD))
    orphan_new = "b" * 32  # bytes with no row, recent: may be a monolithic push in progress
    await upload_bytes(blobs, orphan_new)
    # `stale` was last used long ago
    await catalog.db.write(lambda c: c.execute(update(Upload).where(Upload.id == stale).values(updated_at=OLD)))
    removed = await sweep_uploads(catalog, blobs, expiry=3600)
    assert removed == 2
    assert await catalog.upload_ids() == {fresh}
    assert sorted(p.name for p in layout.uploads.iterdir()) == sorted([fresh, orphan_new])


async def test_leased_upload_is_not_purged(env):
    """A session being written (an unexpired lease) is not idle, whatever its updated_at."""
    catalog, blobs, layout = env
    uid = await start_session(catalog, blobs)
    await catalog.claim_upload(uid, "a/b", "t" * 32, time.time() + 30)
    await catalog.db.write(lambda c: c.execute(update(Upload).values(updated_at=OLD)))
    assert await sweep_uploads(catalog, blobs, expiry=3600) == 0
    assert await catalog.upload_ids() == {uid}


async def test_collect_purges_expired_uploads(env):
    catalog, blobs, layout = env
    await start_session(catalog, blobs)
    report = await collect(catalog, blobs, grace=3600, upload_expiry=-10)  # everything is expired
    assert report.uploads_removed == 1
    assert await catalog.upload_ids() == set()
    assert list(layout.uploads.iterdir()) == []


async def test_upload_with_row_but_no_bytes_purged(env):
    catalog, blobs, _ = env
    uid = await start_session(catalog, blobs)
    await blobs.abort(uid, None)  # bytes gone, row left
    assert await sweep_uploads(catalog, blobs, expiry=-10) == 1
    assert await catalog.upload_ids() == set()


def test_berth_gc_command(tmp_path, capsys):
    """`berth gc` builds the same services as the server (bootstrap) and collects through the driver."""
    import asyncio

    from registry.cli import main

    data = tmp_path / "data"
    driver = FilesystemDriver(data)
    asyncio.run(driver.check())
    digest = asyncio.run(place(driver, b"left behind by a crash"))
    assert main(["gc", "--data", str(data)]) == 0
    assert "1 blobs (22 bytes)" in capsys.readouterr().out
    assert asyncio.run(driver.stat(digest)) is None


# ---- dry run, untagged manifests, the server's collection (issue 7 part 3) ------------------------

async def test_dry_run_reports_what_would_go_and_changes_nothing(env):
    catalog, blobs, _ = env
    layer = await store_blob(catalog, blobs, "a/b", b"layer!", age=7200)
    cfg = await store_blob(catalog, blobs, "a/b", b"config", age=7200)
    body = _manifest(cfg, layer)
    await catalog.put_manifest("a/b", of_bytes(body), parse(body, None), body, "v1")
    orphan = await place(blobs, b"no row at all")  # a crash between placing and pinning/linking
    await catalog.delete_manifest("a/b", of_bytes(body))
    await _age_links(catalog)
    would = await collect(catalog, blobs, grace=3600, dry_run=True)
    assert would.dry_run
    assert (would.links_removed, would.blobs_removed, would.bytes_freed) == (2, 3, 6 + 6 + 13)
    assert await size(blobs, layer) == 6 and await size(blobs, orphan) == 13
    assert await catalog.blob_size("a/b", layer) == 6  # the link is still there
    done = await collect(catalog, blobs, grace=3600)
    assert (done.links_removed, done.blobs_removed, done.bytes_freed) == (2, 3, 25)


async def _untagged(catalog, blobs, name: str, data: bytes, tag: str | None):
    layer = await store_blob(catalog, blobs, name, data)
    cfg = await store_blob(catalog, blobs, name, b"config")
    body = _manifest(cfg, layer)
    await catalog.put_manifest(name, of_bytes(body), parse(body, None), body, tag)
    return of_bytes(body), body


async def test_untagged_manifests_removed_only_when_configured_and_old(env):
    from storage.models import Manifest

    catalog, blobs, _ = env
    untagged, _ = await _untagged(catalog, blobs, "a/b", b"layer1", None)
    tagged, _ = await _untagged(catalog, blobs, "a/b", b"layer2", "v1")
    # a child of an index stays, untagged as it is
    child, child_body = await _untagged(catalog, blobs, "a/c", b"layer3", None)
    index = ('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":'
             f'"application/vnd.oci.image.manifest.v1+json","digest":"{child}","size":{len(child_body)}}}]}}').encode()
    await catalog.put_manifest("a/c", of_bytes(index), parse(index, None), index, "multi")
    assert (await collect(catalog, blobs, grace=3600)).manifests_removed == 0  # off by default
    assert (await collect(catalog, blobs, grace=3600, untagged_after=3600)).manifests_removed == 0  # young
    await catalog.db.write(lambda c: c.execute(update(Manifest).values(created_at=OLD)))
    assert (await collect(catalog, blobs, grace=3600, untagged_after=3600, dry_run=True)).manifests_removed == 1
    report = await collect(catalog, blobs, grace=0, untagged_after=3600)
    assert report.manifests_removed == 1
    assert report.links_removed == 1 and report.blobs_removed == 1  # its layer (the config is shared with v1)
    with pytest.raises(Exception):
        await catalog.get_manifest("a/b", untagged)
    assert (await catalog.get_manifest("a/b", tagged)).digest == tagged
    assert (await catalog.get_manifest("a/c", child)).digest == child


async def test_a_manifest_tagged_again_is_not_collected(env):
    """The PUT that tags an old untagged manifest locks it; the collector re-checks after."""
    from storage.models import Manifest

    catalog, blobs, _ = env
    digest, body = await _untagged(catalog, blobs, "a/b", b"layer1", None)
    await catalog.db.write(lambda c: c.execute(update(Manifest).values(created_at=OLD)))
    await catalog.put_manifest("a/b", digest, parse(body, None), body, "again")
    assert (await collect(catalog, blobs, grace=3600, untagged_after=3600)).manifests_removed == 0
    assert (await catalog.get_manifest("a/b", "again")).digest == digest


async def test_server_collects_with_the_configured_grace(tmp_path, database_url):
    """registry.app.run_gc_once: the one call the server's loop makes (and a lease wraps)."""
    from registry import bootstrap
    from registry.app import run_gc_once
    from registry.config import Config

    cfg = Config(data_dir=tmp_path / "data", database_url=database_url)
    cfg.gc.grace = 0
    svc = bootstrap.build(cfg)
    await bootstrap.start(svc)
    try:
        orphan = await place(svc.driver, b"left by a crash")
        report = await run_gc_once(svc)
        assert report.blobs_removed == 1 and await svc.driver.stat(orphan) is None
    finally:
        await bootstrap.stop(svc)


def test_gc_config_keys(tmp_path):
    from registry.config import Config

    p = tmp_path / "c.yaml"
    p.write_text("gc:\n  interval: 0\n  grace: 60\n  untagged_manifests_after: 86400\n")
    c = Config.load(p, env={"BERTH_GC_GRACE": "30"})
    assert (c.gc.interval, c.gc.grace, c.gc.untagged_manifests_after) == (0, 30, 86400)
    assert Config.load(None, env={}).gc.interval == 3600


def test_berth_gc_dry_run_command(tmp_path, capsys):
    import asyncio

    from registry.cli import main

    data = tmp_path / "data"
    driver = FilesystemDriver(data)
    asyncio.run(driver.check())
    digest = asyncio.run(place(driver, b"left behind by a crash"))
    assert main(["gc", "--data", str(data), "--dry-run"]) == 0
    assert "would remove 0 unreferenced blob links, 1 blobs (22 bytes)" in capsys.readouterr().out
    assert asyncio.run(driver.stat(digest)) == 22


async def test_rowless_upload_bytes_go_after_15_minutes_idle(env):
    """What a SIGKILL leaves of a monolithic push (bytes, no session row) is not a resumable
    session: the next collection takes it once idle for ORPHAN_UPLOAD_IDLE, whatever upload_expiry."""
    from storage.gc import ORPHAN_UPLOAD_IDLE

    catalog, blobs, layout = env
    dead, live = "c" * 32, "d" * 32
    for u in (dead, live):
        await upload_bytes(blobs, u)
    past = time.time() - ORPHAN_UPLOAD_IDLE - 60
    os.utime(layout.upload(dead), (past, past))
    kept = await start_session(catalog, blobs)  # a resumable session, as old: kept for upload_expiry
    os.utime(layout.upload(kept), (past, past))
    await catalog.db.write(lambda c: c.execute(update(Upload).values(updated_at=past)))
    assert (await collect(catalog, blobs, grace=3600, upload_expiry=86400)).uploads_removed == 1
    assert sorted(p.name for p in layout.uploads.iterdir()) == sorted([kept, live])


async def test_a_pinned_blob_is_the_pushs_until_its_link_even_with_grace_0(env):
    """pin → commit → link while a collector with grace 0 runs between commit and link: before
    the pin held the row (last_used_at = now + PIN_HOLD), the collector marked the unlinked row,
    deleted the content just placed, and the link failed (BlobDeleting)."""
    catalog, blobs, _ = env
    data = b"placed a moment ago"
    digest = of_bytes(data)
    assert await catalog.pin_blob(digest, len(data))
    await place(blobs, data)
    report = await collect(catalog, blobs, grace=0)
    assert report.blobs_removed == 0
    await catalog.link_blob("a/b", digest, len(data))
    assert await read(blobs, digest) == data


async def test_a_dead_pushs_pin_lapses(env):
    """A push killed between pin and link: its row and content go once PIN_HOLD has passed."""
    from storage.catalog import PIN_HOLD

    catalog, blobs, _ = env
    data = b"pinned and placed, then SIGKILL"
    digest = of_bytes(data)
    assert await catalog.pin_blob(digest, len(data))
    await place(blobs, data)
    await age_blob(catalog, digest, 1)  # last_used_at: a second ago
    await catalog.db.write(lambda c: c.execute(update(Blob).values(last_used_at=time.time() - PIN_HOLD - 1)))
    assert (await collect(catalog, blobs, grace=0)).blobs_removed == 1


async def test_a_pushs_links_wait_for_its_manifest_even_with_grace_0(env):
    """Blobs pushed (201), the manifest not yet PUT, a collector with grace 0 in between: the
    push's links are dated PIN_HOLD ahead, so the manifest PUT finds them. Once a manifest
    referenced them and is deleted, grace 0 takes them at the next collection."""
    catalog, blobs, _ = env
    layer = await store_blob(catalog, blobs, "a/b", b"layer!")
    cfg = await store_blob(catalog, blobs, "a/b", b"config")
    report = await collect(catalog, blobs, grace=0)
    assert (report.links_removed, report.blobs_removed) == (0, 0)
    body = _manifest(cfg, layer)
    await catalog.put_manifest("a/b", of_bytes(body), parse(body, None), body, "v1")
    await catalog.delete_manifest("a/b", of_bytes(body))
    report = await collect(catalog, blobs, grace=0)
    assert (report.links_removed, report.blobs_removed) == (2, 2)
