"""storage.gc: unreferenced blobs past the grace period, expired uploads."""
from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import update

from storage import db
from storage.blobs import BlobStore
from storage.catalog import Catalog
from storage.digest import of_bytes
from storage.gc import collect, purge_uploads
from storage.manifests import parse
from storage.models import RepositoryBlob, Upload
from storage.paths import Layout

OLD = time.time() - 10 * 24 * 3600


@pytest.fixture
async def env(tmp_path, database_url):
    layout = Layout(tmp_path / "data")
    layout.create()
    database = db.Database(database_url or db.default_url(layout))
    await database.create_schema()
    yield Catalog(database), BlobStore(layout), layout
    await database.dispose()


async def store_blob(catalog, blobs, name, data, *, link=True, age=None):
    digest = of_bytes(data)
    size = await blobs.put_bytes(data, digest)
    if link:
        await catalog.link_blob(name, digest, size)
    if age is not None:
        os.utime(blobs.path(digest), (time.time() - age, time.time() - age))
    return digest


async def test_unreferenced_blob_past_grace_removed(env):
    catalog, blobs, _ = env
    d = await store_blob(catalog, blobs, "a/b", b"orphan", age=7200)
    await catalog.unlink_blob("a/b", d)
    report = await collect(catalog, blobs, grace=3600)
    assert report.blobs_removed == 1
    assert report.bytes_freed == len(b"orphan")
    assert blobs.size(d) is None
    assert d not in await catalog.known_blobs()


async def test_unreferenced_blob_within_grace_kept(env):
    catalog, blobs, _ = env
    d = await store_blob(catalog, blobs, "a/b", b"fresh orphan")
    await catalog.unlink_blob("a/b", d)
    report = await collect(catalog, blobs, grace=3600)
    assert report.blobs_removed == 0
    assert blobs.size(d) is not None


async def test_file_without_row_past_grace_removed(env):
    catalog, blobs, _ = env
    d = await store_blob(catalog, blobs, "a/b", b"crash between commit and link", link=False, age=7200)
    report = await collect(catalog, blobs, grace=3600)
    assert report.blobs_removed == 1
    assert blobs.size(d) is None


async def test_referenced_blob_kept(env):
    catalog, blobs, _ = env
    linked = await store_blob(catalog, blobs, "a/b", b"linked", age=7200)
    cfg = await store_blob(catalog, blobs, "a/b", b"config", age=7200)
    body = (
        '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        f'"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":6}},'
        f'"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{linked}","size":6}}]}}'
    ).encode()
    await catalog.put_manifest("a/b", of_bytes(body), parse(body, None), body, "v1")
    report = await collect(catalog, blobs, grace=0)
    assert report.blobs_removed == 0
    assert blobs.read(linked) == b"linked"
    assert blobs.read(cfg) == b"config"


async def test_blob_linked_in_another_repository_kept(env):
    catalog, blobs, _ = env
    d = await store_blob(catalog, blobs, "a/one", b"shared", age=7200)
    await catalog.link_blob("a/two", d, 6)
    await catalog.unlink_blob("a/one", d)
    report = await collect(catalog, blobs, grace=3600)  # a/two's link is young: a push in progress
    assert report.blobs_removed == 0
    assert blobs.read(d) == b"shared"


def _manifest(cfg: str, layer: str) -> bytes:
    return (
        '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        f'"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":6}},'
        f'"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":6}}]}}'
    ).encode()


async def _age_links(catalog):
    await catalog.db.write(lambda c: c.execute(update(RepositoryBlob).values(created_at=OLD)))


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
    assert blobs.size(layer) is None and blobs.size(cfg) is None
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


async def test_expired_uploads_purged(env):
    catalog, blobs, layout = env
    stale = blobs.start()
    await catalog.create_upload(stale, "a/b")
    fresh = blobs.start()
    await catalog.create_upload(fresh, "a/b")
    orphan_old = blobs.start()  # a file with no row (e.g. a crash), old
    os.utime(layout.upload(orphan_old), (OLD, OLD))
    orphan_new = blobs.start()  # a file with no row, recent: may be a session being created
    # `stale` was last used long ago
    await catalog.db.write(lambda c: c.execute(update(Upload).where(Upload.id == stale).values(updated_at=OLD)))
    removed = await purge_uploads(catalog, blobs, time.time() - 3600)
    assert removed == 2
    assert await catalog.upload_ids() == {fresh}
    assert sorted(p.name for p in layout.uploads.iterdir()) == sorted([fresh, orphan_new])


async def test_collect_purges_expired_uploads(env):
    catalog, blobs, layout = env
    uid = blobs.start()
    await catalog.create_upload(uid, "a/b")
    report = await collect(catalog, blobs, grace=3600, upload_expiry=-10)  # everything is expired
    assert report.uploads_removed == 1
    assert await catalog.upload_ids() == set()
    assert list(layout.uploads.iterdir()) == []


async def test_upload_with_row_but_no_file_purged(env):
    catalog, blobs, _ = env
    uid = blobs.start()
    await catalog.create_upload(uid, "a/b")
    blobs.cancel(uid)  # file gone, row left
    assert await purge_uploads(catalog, blobs, time.time() + 10) == 1
    assert await catalog.upload_ids() == set()
