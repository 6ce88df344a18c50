"""storage.content.filesystem.FilesystemDriver: the data directory's layout, appends at the
recorded offset, commits of exactly ``size`` bytes, dedup, listing, hostile upload ids.

(The behaviour every driver shares is checked against filesystem and S3 in tests/content.)
"""
from __future__ import annotations

import hashlib
import os

import pytest

from storage.content.filesystem import FilesystemDriver
from storage.digest import of_bytes
from storage.errors import ContentMissing, DriverUnavailable, SizeInvalid, UploadUnknown
from storage.paths import Layout

UID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def layout(tmp_path) -> Layout:
    lay = Layout(tmp_path / "data")
    lay.create()
    return lay


@pytest.fixture
def driver(layout) -> FilesystemDriver:
    return FilesystemDriver(layout.root)


async def stream(*parts: bytes):
    for p in parts:
        yield p


async def failing(*parts: bytes):
    for p in parts:
        yield p
    raise ConnectionResetError("client went away")


async def collect(aiter) -> bytes:
    return b"".join([c async for c in aiter])


def blob_files(layout: Layout) -> list:
    return [p for p in layout.blobs.rglob("*") if p.is_file()]


async def put(driver, data: bytes, upload_id: str = UID) -> str:
    digest = of_bytes(data)
    state = await driver.start_upload(upload_id)
    n, state = await driver.append(upload_id, state, 0, stream(data))
    await driver.commit(upload_id, state, n, digest)
    return digest


async def test_check_creates_the_layout(tmp_path):
    driver = FilesystemDriver(tmp_path / "new")
    await driver.check()
    assert (tmp_path / "new" / "blobs").is_dir() and (tmp_path / "new" / "uploads").is_dir()
    assert list((tmp_path / "new" / "uploads").iterdir()) == []  # the probe is gone


async def test_check_refuses_an_unwritable_directory(tmp_path):
    (tmp_path / "file").write_bytes(b"not a directory")
    with pytest.raises(DriverUnavailable) as e:
        await FilesystemDriver(tmp_path / "file" / "data").check()
    assert "data directory" in e.value.message


async def test_append_and_commit_keep_todays_layout(driver, layout):
    state = await driver.start_upload(UID)
    assert not layout.upload(UID).exists()  # the file comes with the first byte
    n, state = await driver.append(UID, state, 0, stream(b"hello ", b"world"))
    assert n == 11
    n, state = await driver.append(UID, state, 11, stream(b"!"))
    assert n == 1
    assert await collect(driver.read_upload(UID, state, 12)) == b"hello world!"
    digest = of_bytes(b"hello world!")
    await driver.commit(UID, state, 12, digest)
    path = layout.blobs / "sha256" / digest[7:9] / digest[7:]
    assert driver.local_path(digest) == path and path.read_bytes() == b"hello world!"
    assert await driver.stat(digest) == 12
    assert await collect(driver.read(digest)) == b"hello world!"
    assert await collect(driver.read(digest, 6, 11)) == b"world"
    assert list(layout.uploads.iterdir()) == []


async def test_append_truncates_back_on_a_failing_stream(driver, layout):
    state = await driver.start_upload(UID)
    await driver.append(UID, state, 0, stream(b"good part "))
    with pytest.raises(ConnectionResetError):
        await driver.append(UID, state, 10, failing(b"half", b" written"))
    assert layout.upload(UID).read_bytes() == b"good part "


async def test_append_at_the_recorded_offset_drops_what_an_interrupted_append_left(driver, layout):
    """A process killed mid-append leaves bytes past the offset the database holds."""
    state = await driver.start_upload(UID)
    await driver.append(UID, state, 0, stream(b"committed"))
    with open(layout.upload(UID), "ab") as f:
        f.write(b"GARBAGE FROM A DEAD PROCESS")
    n, state = await driver.append(UID, state, 9, stream(b" and more"))
    assert n == 9
    assert layout.upload(UID).read_bytes() == b"committed and more"


async def test_append_past_the_end_is_refused(driver):
    state = await driver.start_upload(UID)
    with pytest.raises(UploadUnknown):  # no byte yet: no file, so no offset 5 of it
        await driver.append(UID, state, 5, stream(b"x"))
    await driver.append(UID, state, 0, stream(b"abc"))
    with pytest.raises(SizeInvalid):
        await driver.append(UID, state, 5, stream(b"x"))


async def test_an_upload_without_bytes_has_no_file(driver, layout):
    """start_upload writes nothing: the sweeper and fsck see no file, an empty commit needs none."""
    state = await driver.start_upload(UID)
    assert list(layout.uploads.iterdir()) == []
    assert [u async for u in driver.list_uploads()] == []
    assert await collect(driver.read_upload(UID, state, 0)) == b""
    await driver.commit(UID, state, 0, of_bytes(b""))
    assert await driver.stat(of_bytes(b"")) == 0
    assert list(layout.uploads.iterdir()) == []


async def test_commit_with_the_whole_upload_in_memory(driver, layout):
    """commit(data=…): the body of a PUT, never appended, written and placed in one step."""
    state = await driver.start_upload(UID)
    digest = of_bytes(b"whole")
    with pytest.raises(SizeInvalid):
        await driver.commit(UID, state, 6, digest, data=b"whole")
    await driver.commit(UID, state, 5, digest, data=b"whole")
    assert driver.local_path(digest).read_bytes() == b"whole"
    assert list(layout.uploads.iterdir()) == []
    os.utime(driver.local_path(digest), (1, 1))
    state = await driver.start_upload("f" * 32)
    await driver.append("f" * 32, state, 0, stream(b"left by an interrupted append"))
    await driver.commit("f" * 32, state, 5, digest, data=b"whole")  # deduplicated: kept, refreshed
    assert driver.local_path(digest).read_bytes() == b"whole" and driver.local_path(digest).stat().st_mtime > 1
    assert list(layout.uploads.iterdir()) == []


async def test_commit_places_exactly_size_bytes(driver, layout):
    state = await driver.start_upload(UID)
    await driver.append(UID, state, 0, stream(b"0123456789"))
    digest = of_bytes(b"01234")
    await driver.commit(UID, state, 5, digest)
    assert driver.local_path(digest).read_bytes() == b"01234"


async def test_commit_of_more_than_the_upload_holds_is_refused(driver, layout):
    state = await driver.start_upload(UID)
    await driver.append(UID, state, 0, stream(b"short"))
    with pytest.raises(SizeInvalid):
        await driver.commit(UID, state, 6, of_bytes(b"short!"))
    assert blob_files(layout) == []
    assert layout.upload(UID).read_bytes() == b"short"  # the caller decides what to do with it


async def test_dedup_keeps_the_stored_file_and_refreshes_its_mtime(driver, layout):
    digest = await put(driver, b"same")
    path = driver.local_path(digest)
    inode = path.stat().st_ino
    os.utime(path, (1, 1))
    assert await put(driver, b"same", "f" * 32) == digest
    assert blob_files(layout) == [path]
    assert path.stat().st_ino == inode and path.stat().st_mtime > 1
    assert list(layout.uploads.iterdir()) == []


async def test_read_of_missing_content(driver):
    with pytest.raises(ContentMissing):
        await collect(driver.read(of_bytes(b"nothing")))
    assert await driver.stat(of_bytes(b"nothing")) is None


async def test_abort_and_unknown_uploads(driver, layout):
    state = await driver.start_upload(UID)
    await driver.append(UID, state, 0, stream(b"abc"))
    await driver.abort(UID, state)
    await driver.abort(UID, state)  # already gone: no error
    assert list(layout.uploads.iterdir()) == []
    with pytest.raises(UploadUnknown):
        await driver.append(UID, state, 3, stream(b"x"))
    with pytest.raises(UploadUnknown):
        await driver.commit(UID, state, 3, of_bytes(b"abc"))


@pytest.mark.parametrize("bad", ["../../etc/passwd", "..", "A" * 32, "a" * 31, "a" * 32 + "\n", ""])
async def test_malformed_upload_ids_never_touch_the_filesystem(driver, bad):
    with pytest.raises(UploadUnknown):
        await driver.start_upload(bad)
    with pytest.raises(UploadUnknown):
        await driver.append(bad, {}, 0, stream(b"x"))
    await driver.abort(bad, None)


async def test_listing(driver, layout):
    assert [d async for d in driver.list_digests()] == []
    assert [u async for u in driver.list_uploads()] == []
    d1 = await put(driver, b"one")
    d2 = "sha512:" + hashlib.sha512(b"two").hexdigest()
    state = await driver.start_upload("e" * 32)
    await driver.append("e" * 32, state, 0, stream(b"two"))
    await driver.commit("e" * 32, state, 3, d2)
    state = await driver.start_upload("d" * 32)
    await driver.append("d" * 32, state, 0, stream(b"x"))
    (layout.uploads / "not-an-upload").write_bytes(b"")
    assert sorted([d async for d in driver.list_digests()]) == sorted([d1, d2])
    assert [u for u, _ in [x async for x in driver.list_uploads()]] == ["d" * 32]
    assert await driver.delete(d1) is True
    assert await driver.delete(d1) is False
    assert [d async for d in driver.list_digests()] == [d2]
