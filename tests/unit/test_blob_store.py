"""storage.blobs.BlobStore: streaming uploads, truncation on failure, verify, dedup, restart."""
from __future__ import annotations

import hashlib
import os

import pytest

from storage.blobs import BlobStore
from storage.digest import of_bytes
from storage.errors import DigestInvalid, SizeInvalid, UploadOutOfOrder, UploadUnknown
from storage.paths import Layout


@pytest.fixture
def layout(tmp_path) -> Layout:
    lay = Layout(tmp_path / "data")
    lay.create()
    return lay


@pytest.fixture
def store(layout) -> BlobStore:
    return BlobStore(layout)


async def stream(*parts: bytes):
    for p in parts:
        yield p


async def failing(*parts: bytes):
    for p in parts:
        yield p
    raise ConnectionResetError("client went away")


def blob_files(layout: Layout) -> list:
    return [p for p in layout.blobs.rglob("*") if p.is_file()]


async def test_append_and_commit(store, layout):
    uid = store.start()
    assert store.offset(uid) == 0
    assert await store.append(uid, stream(b"hello ", b"world")) == 11
    assert await store.append(uid, stream(b"!"), start=11, length=1) == 12
    digest = of_bytes(b"hello world!")
    assert await store.commit(uid, digest) == 12
    assert store.read(digest) == b"hello world!"
    assert store.size(digest) == 12
    path = layout.blob(digest)
    assert path == layout.blobs / "sha256" / digest[7:9] / digest[7:]
    assert list(layout.uploads.iterdir()) == []
    with pytest.raises(UploadUnknown):
        store.offset(uid)


async def test_append_truncates_back_on_failing_stream(store, layout):
    uid = store.start()
    await store.append(uid, stream(b"good part "))
    with pytest.raises(ConnectionResetError):
        await store.append(uid, failing(b"half", b" written"))
    assert store.offset(uid) == 10
    assert layout.upload(uid).read_bytes() == b"good part "
    # the session continues and the digest (hash rebuilt) is right
    await store.append(uid, stream(b"rest"), start=10)
    assert await store.commit(uid, of_bytes(b"good part rest")) == 14


async def test_append_truncates_on_failure_after_a_full_buffer(store, layout, monkeypatch):
    import storage.blobs as blobs_mod

    monkeypatch.setattr(blobs_mod, "BUFFER", 8)  # force flushes to disk before the failure
    uid = store.start()
    with pytest.raises(ConnectionResetError):
        await store.append(uid, failing(b"0123456789", b"abcdefghij"))
    assert store.offset(uid) == 0
    assert layout.upload(uid).read_bytes() == b""


async def test_length_mismatch_truncates(store, layout):
    uid = store.start()
    await store.append(uid, stream(b"abc"))
    with pytest.raises(SizeInvalid):
        await store.append(uid, stream(b"defgh"), length=3)
    assert store.offset(uid) == 3
    assert layout.upload(uid).read_bytes() == b"abc"
    with pytest.raises(SizeInvalid):
        await store.append(uid, stream(b"d"), length=3)
    assert layout.upload(uid).read_bytes() == b"abc"


async def test_out_of_order(store, layout):
    uid = store.start()
    await store.append(uid, stream(b"abc"))
    with pytest.raises(UploadOutOfOrder) as e:
        await store.append(uid, stream(b"xyz"), start=5)
    assert e.value.offset == 3
    with pytest.raises(UploadOutOfOrder):
        await store.append(uid, stream(b"xyz"), start=0)
    assert layout.upload(uid).read_bytes() == b"abc"


async def test_commit_wrong_digest_removes_upload(store, layout):
    uid = store.start()
    await store.append(uid, stream(b"content"))
    wrong = of_bytes(b"other")
    with pytest.raises(DigestInvalid):
        await store.commit(uid, wrong)
    assert not layout.upload(uid).exists()
    assert list(layout.uploads.iterdir()) == []
    assert blob_files(layout) == []
    assert store.size(wrong) is None
    with pytest.raises(UploadUnknown):
        store.offset(uid)


async def test_commit_sha512(store):
    data = b"sha512 data" * 10
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    uid = store.start()
    await store.append(uid, stream(data))
    assert await store.commit(uid, digest) == len(data)
    assert store.read(digest) == data


async def test_dedup_of_identical_blobs(store, layout):
    data = b"same"
    digest = of_bytes(data)
    assert await store.put_bytes(data, digest) == 4
    path = layout.blob(digest)
    inode = path.stat().st_ino
    os.utime(path, (1, 1))
    assert await store.put_bytes(data, digest) == 4
    assert blob_files(layout) == [path]
    assert path.stat().st_ino == inode
    assert path.stat().st_mtime > 1  # refreshed: the GC grace period protects it again
    assert list(layout.uploads.iterdir()) == []


async def test_put_wrong_digest_keeps_nothing(store, layout):
    with pytest.raises(DigestInvalid):
        await store.put_bytes(b"data", of_bytes(b"not data"))
    assert blob_files(layout) == []
    assert list(layout.uploads.iterdir()) == []


async def test_put_failing_stream_keeps_nothing(store, layout):
    with pytest.raises(ConnectionResetError):
        await store.put(failing(b"abc"), of_bytes(b"abcdef"))
    assert blob_files(layout) == []
    assert list(layout.uploads.iterdir()) == []


async def test_offset_survives_restart(layout):
    first = BlobStore(layout)
    uid = first.start()
    await first.append(uid, stream(b"before restart "))
    second = BlobStore(layout)  # a new process: no in-memory session
    assert second.offset(uid) == 15
    with pytest.raises(UploadOutOfOrder):
        await second.append(uid, stream(b"x"), start=0)
    assert await second.append(uid, stream(b"after"), start=15) == 20
    assert await second.commit(uid, of_bytes(b"before restart after")) == 20
    assert second.read(of_bytes(b"before restart after")) == b"before restart after"


async def test_commit_after_restart_still_verifies(layout):
    first = BlobStore(layout)
    uid = first.start()
    await first.append(uid, stream(b"payload"))
    second = BlobStore(layout)
    with pytest.raises(DigestInvalid):
        await second.commit(uid, of_bytes(b"payloaX"))
    assert not layout.upload(uid).exists()
    assert blob_files(layout) == []


async def test_cancel(store, layout):
    uid = store.start()
    await store.append(uid, stream(b"abc"))
    store.cancel(uid)
    assert not layout.upload(uid).exists()
    with pytest.raises(UploadUnknown):
        store.cancel(uid)
    with pytest.raises(UploadUnknown):
        await store.append(uid, stream(b"x"))


@pytest.mark.parametrize("bad", ["../../etc/passwd", "..", "A" * 32, "a" * 31, "a" * 32 + "\n", ""])
def test_malformed_upload_ids_never_touch_the_filesystem(store, bad):
    with pytest.raises(UploadUnknown):
        store.offset(bad)
    with pytest.raises(UploadUnknown):
        store.cancel(bad)


def test_no_stored_digests(store):
    assert list(store.stored_digests()) == []
    assert store.upload_ids() == []


async def test_stored_digests(store):
    d1 = of_bytes(b"one")
    d2 = "sha512:" + hashlib.sha512(b"two").hexdigest()
    await store.put_bytes(b"one", d1)
    await store.put_bytes(b"two", d2)
    assert sorted(store.stored_digests()) == sorted([d1, d2])
    assert store.delete(d1) is True
    assert store.delete(d1) is False
    assert list(store.stored_digests()) == [d2]
