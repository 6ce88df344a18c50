"""storage.fsck / `berth fsck`: re-hash every blob through the driver, check rows, links, manifest
references and tags; damaged → exit 1, orphaned → informational; --repair quarantines."""
from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import delete, select

from registry.cli import main
from storage.content.filesystem import FilesystemDriver
from storage.digest import of_bytes
from storage.fsck import fsck
from storage.manifests import parse
from storage.models import Blob, Manifest, RepositoryBlob
from storage.paths import Layout
from tests.unit.test_gc import _manifest, place, store_blob, upload_bytes


@pytest.fixture
def env(store):
    return store.catalog, store.driver, store.layout


async def image(catalog, driver, name="lib/app", tag="v1", layer=b"layer!"):
    lay = await store_blob(catalog, driver, name, layer)
    cfg = await store_blob(catalog, driver, name, b"config")
    body = _manifest(cfg, lay)
    await catalog.put_manifest(name, of_bytes(body), parse(body, None), body, tag)
    return of_bytes(body), body, cfg, lay


def kinds(findings) -> list[str]:
    return sorted(f.kind for f in findings)


async def test_clean_store(env):
    catalog, driver, _ = env
    await image(catalog, driver)
    report = await fsck(catalog, driver)
    assert report.clean and report.orphaned == []
    assert (report.blobs_checked, report.bytes_checked, report.manifests_checked, report.links_checked) == (2, 12, 1, 2)


async def test_corrupt_content_is_damage_and_repair_quarantines_it(env, tmp_path):
    catalog, driver, layout = env
    digest, body, cfg, layer = await image(catalog, driver)
    layout.blob(layer).write_bytes(b"LAYER!")  # bit rot: same size, other bytes
    report = await fsck(catalog, driver)
    assert kinds(report.damaged) == ["content-corrupt"] and report.damaged[0].subject == layer

    q = tmp_path / "quarantine"
    report = await fsck(catalog, driver, repair=True, quarantine=q)
    assert report.damaged[0].repaired
    assert (q / layer.replace(":", "-")).read_bytes() == b"LAYER!"  # kept aside, not lost
    assert await driver.stat(layer) is None
    assert await catalog.blob_size("lib/app", layer) is None  # forgotten: a push places it again
    assert await driver.stat(cfg) == 6  # good data untouched
    report = await fsck(catalog, driver)
    assert kinds(report.damaged) == ["blob-unlinked"]  # the image lacks its layer until it is pushed again
    await store_blob(catalog, driver, "lib/app", b"layer!")
    assert (await fsck(catalog, driver)).clean


async def test_missing_content_of_a_linked_blob(env, tmp_path):
    catalog, driver, layout = env
    _, _, _, layer = await image(catalog, driver)
    layout.blob(layer).unlink()
    report = await fsck(catalog, driver)
    assert kinds(report.damaged) == ["content-missing"]
    report = await fsck(catalog, driver, repair=True, quarantine=tmp_path / "q")
    assert "link" in report.damaged[0].repaired
    assert await catalog.db.read(lambda c: c.execute(select(Blob).where(Blob.digest == layer)).first()) is None


async def test_size_mismatch_repaired_from_the_content(env, tmp_path):
    catalog, driver, _ = env
    _, _, cfg, _ = await image(catalog, driver)
    from sqlalchemy import update

    await catalog.db.write(lambda c: c.execute(update(Blob).where(Blob.digest == cfg).values(size=99)))
    report = await fsck(catalog, driver, repair=True, quarantine=tmp_path / "q")
    assert kinds(report.damaged) == ["size-mismatch"]
    assert await catalog.blob_size("lib/app", cfg) == 6
    assert (await fsck(catalog, driver)).clean


async def test_leftovers_of_a_crash_are_orphans_not_damage(env):
    catalog, driver, layout = env
    await image(catalog, driver)
    await place(driver, b"placed, never pinned")  # content, no row
    assert await catalog.pin_blob(of_bytes(b"pinned, never placed"), 20)  # row, no content
    assert await catalog.pin_blob(of_bytes(b"pinned, placed"), 14)  # killed before the link
    await place(driver, b"pinned, placed")
    await upload_bytes(driver, "a" * 32)  # upload bytes, no session
    report = await fsck(catalog, driver)
    assert report.clean
    assert kinds(report.orphaned) == ["orphan-content", "orphan-upload", "row-without-content", "unlinked-blob"]


async def test_dangling_child_and_unlinked_blob(env):
    catalog, driver, _ = env
    child, child_body, _, layer = await image(catalog, driver, tag=None)
    index = ('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":'
             f'"application/vnd.oci.image.manifest.v1+json","digest":"{child}","size":{len(child_body)}}}]}}').encode()
    await catalog.put_manifest("lib/app", of_bytes(index), parse(index, None), index, "multi")
    # what the two races used to leave: an index whose child is gone, a manifest without its link
    await catalog.db.write(lambda c: c.execute(delete(Manifest).where(Manifest.digest == child)))
    await catalog.db.write(lambda c: c.execute(delete(RepositoryBlob).where(RepositoryBlob.digest == layer)))
    await image(catalog, driver, name="lib/other", tag="x", layer=b"other")
    body2 = await catalog.get_manifest("lib/other", "x")
    await catalog.db.write(lambda c: c.execute(delete(RepositoryBlob).where(RepositoryBlob.digest == of_bytes(b"other"))))
    report = await fsck(catalog, driver)
    assert kinds(report.damaged) == ["blob-unlinked", "child-missing"]
    unlinked = next(f for f in report.damaged if f.kind == "blob-unlinked")
    assert unlinked.subject == f"lib/other@{body2.digest}"


def test_berth_fsck_command(tmp_path, capsys):
    data = tmp_path / "data"
    driver = FilesystemDriver(data)
    asyncio.run(driver.check())
    assert main(["fsck", "--data", str(data)]) == 0
    digest = asyncio.run(place(driver, b"some bytes"))
    assert main(["fsck", "--data", str(data)]) == 0  # an orphan only
    out = capsys.readouterr().out
    assert f"orphaned orphan-content {digest}" in out and "0 damaged, 1 orphaned" in out
    Layout(data).blob(digest).write_bytes(b"other bytes")
    assert main(["fsck", "--data", str(data), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["clean"] is False and doc["damaged"][0]["kind"] == "content-corrupt"
    assert main(["fsck", "--data", str(data), "--repair"]) == 1  # damage found (and quarantined)
    assert (data / "quarantine" / digest.replace(":", "-")).read_bytes() == b"other bytes"
    assert main(["fsck", "--data", str(data)]) == 0


async def test_progress_counts_blobs_and_bytes(env):
    catalog, driver, _ = env
    await image(catalog, driver)
    seen = []
    await fsck(catalog, driver, progress=lambda *a: seen.append(a))
    assert seen[-1] == (2, 2, 12, 12)  # blobs done/total, bytes done/total


async def test_a_session_has_its_file_from_its_first_byte(env):
    """A session that never received a byte has no file (nothing to report); one that recorded
    bytes whose file is gone is reported."""
    from sqlalchemy import update  # noqa: PLC0415

    from storage.models import Upload  # noqa: PLC0415

    catalog, driver, _ = env
    await catalog.create_upload("e" * 32, "lib/app", None, await driver.start_upload("e" * 32))
    report = await fsck(catalog, driver)
    assert report.clean and report.orphaned == []
    await catalog.db.write(lambda c: c.execute(update(Upload).values(offset=3)))
    assert kinds((await fsck(catalog, driver)).orphaned) == ["upload-without-bytes"]
