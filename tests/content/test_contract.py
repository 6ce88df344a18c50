"""The content-driver contract (storage/content/driver.py), run against every driver.

Each test gets a fresh, empty store; ``store()`` makes another driver instance on it
(another replica), and upload state travels between instances through JSON only.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid

import aiohttp
import pytest

from storage.content.driver import ContentDriver
from storage.errors import ContentMissing, SizeInvalid

from .conftest import roundtrip

KiB, MiB = 1024, 1024 * 1024


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


async def chunks(data: bytes, size: int = 64 * KiB):
    for i in range(0, len(data), size):
        yield data[i:i + size]
        await asyncio.sleep(0)


class Boom(Exception):
    pass


async def failing(data: bytes, after: int, size: int = 64 * KiB):
    """Yields ``data`` in chunks, then fails once ``after`` bytes were sent."""
    sent = 0
    for i in range(0, len(data), size):
        if sent >= after:
            raise Boom("client went away")
        piece = data[i:i + size]
        sent += len(piece)
        yield piece
    raise Boom("client went away")


async def collect(stream) -> bytes:
    out = bytearray()
    async for chunk in stream:
        out += chunk
    return bytes(out)


async def upload(store, data_parts: list[bytes]) -> tuple[str, dict, int]:
    """Start an upload and append each of ``data_parts``, each through a fresh driver."""
    upload_id = uuid.uuid4().hex
    state = roundtrip(await store().start_upload(upload_id))
    offset = 0
    for part in data_parts:
        written, state = await store().append(upload_id, state, offset, chunks(part))
        assert written == len(part)
        offset += written
        state = roundtrip(state)
    return upload_id, state, offset


async def put(store, data: bytes) -> str:
    upload_id, state, size = await upload(store, [data])
    digest = sha256(data)
    await store().commit(upload_id, state, size, digest)
    return digest


async def upload_ids(driver) -> set[str]:
    return {u async for u, _ in driver.list_uploads()}


async def test_is_a_content_driver(store):
    d = store()
    assert isinstance(d, ContentDriver)
    assert d.name == store.kind
    await d.check()


async def test_missing_content(store):
    d = store()
    digest = sha256(b"never stored")
    assert await d.stat(digest) is None
    with pytest.raises(ContentMissing):
        await collect(d.read(digest))
    with pytest.raises(ContentMissing):
        await collect(d.read(digest, 5, 10))
    assert await d.delete(digest) is False
    assert [x async for x in d.list_digests()] == []


async def test_stat_read_and_ranges(store):
    data = os.urandom(300 * KiB + 7)
    digest = await put(store, data)
    d = store()
    assert await d.stat(digest) == len(data)
    assert await collect(d.read(digest)) == data
    n = len(data)
    for start, end in [(0, 1), (5, 10), (0, n), (n - 1, None), (1000, None), (100 * KiB, 200 * KiB), (7, 7)]:
        assert await collect(d.read(digest, start, end)) == data[start:end], (start, end)
    if d.local_path(digest) is not None:
        assert d.local_path(digest).read_bytes() == data


async def test_appends_across_replicas(store):
    """1 B, 1 KiB, 5 MiB - 1, 5 MiB + 1 and 12 MiB, each appended by another instance."""
    pieces = [os.urandom(n) for n in (1, KiB, 5 * MiB - 1, 5 * MiB + 1, 12 * MiB)]
    data = b"".join(pieces)
    upload_id, state, size = await upload(store, pieces)
    assert size == len(data)
    assert upload_id in await upload_ids(store())
    digest = sha256(data)
    await store().commit(upload_id, state, size, digest)
    d = store()
    assert await d.stat(digest) == len(data)
    assert hashlib.sha256(await collect(d.read(digest))).hexdigest() == digest[7:]
    assert await collect(d.read(digest, 8 * MiB - 3, 8 * MiB + 3)) == data[8 * MiB - 3:8 * MiB + 3]
    assert [x async for x in d.list_digests()] == [digest]
    assert upload_id not in await upload_ids(d)


async def test_many_small_appends(store):
    """Forty tiny appends (a chunked client): the bytes come back in order."""
    parts = [os.urandom(1 + i * 37) for i in range(40)]
    upload_id, state, size = await upload(store, parts)
    data = b"".join(parts)
    await store().commit(upload_id, state, size, sha256(data))
    assert await collect(store().read(sha256(data))) == data


async def test_empty_append_and_empty_blob(store):
    upload_id = uuid.uuid4().hex
    state = roundtrip(await store().start_upload(upload_id))
    written, state = await store().append(upload_id, state, 0, chunks(b""))
    assert written == 0
    digest = sha256(b"")
    await store().commit(upload_id, roundtrip(state), 0, digest)
    d = store()
    assert await d.stat(digest) == 0
    assert await collect(d.read(digest)) == b""


@pytest.mark.parametrize("before, fail_after", [
    (1000, 1),  # fails inside what would be a small tail
    (3 * MiB, 9 * MiB),  # fails after a full part was written from the tail and new bytes
])
async def test_interrupted_append_keeps_previous_state(store, before, fail_after):
    first = os.urandom(before)
    upload_id, state, offset = await upload(store, [first])
    with pytest.raises(Boom):
        await store().append(upload_id, state, offset, failing(os.urandom(12 * MiB), fail_after))
    # the caller kept ``state`` and ``offset``: another replica continues from them
    rest = os.urandom(10 * MiB + 5)
    written, state2 = await store().append(upload_id, roundtrip(state), offset, chunks(rest))
    assert written == len(rest)
    data = first + rest
    digest = sha256(data)
    await store().commit(upload_id, roundtrip(state2), len(data), digest)
    assert hashlib.sha256(await collect(store().read(digest))).hexdigest() == digest[7:]


async def test_append_whose_state_was_never_stored(store):
    """A replica dies after an append returned but before the database took its state:
    the previous state (and offset) still describe the upload, whatever that append wrote."""
    first = [os.urandom(3 * MiB), os.urandom(2 * MiB)]  # a tail that the lost append folds into a part
    upload_id, state, offset = await upload(store, first)
    lost_written, lost_state = await store().append(upload_id, state, offset, chunks(os.urandom(7 * MiB)))
    assert lost_written == 7 * MiB
    del lost_state  # never stored
    rest = [os.urandom(4 * MiB), os.urandom(6 * MiB)]
    for part in rest:
        written, state = await store().append(upload_id, roundtrip(state), offset, chunks(part))
        offset += written
    data = b"".join(first + rest)
    digest = sha256(data)
    await store().commit(upload_id, roundtrip(state), offset, digest)
    assert hashlib.sha256(await collect(store().read(digest))).hexdigest() == digest[7:]


async def test_interrupted_append_then_commit(store):
    first = os.urandom(9 * MiB)
    upload_id, state, offset = await upload(store, [first])
    with pytest.raises(Boom):
        await store().append(upload_id, state, offset, failing(os.urandom(9 * MiB), 8 * MiB + 1))
    digest = sha256(first)
    await store().commit(upload_id, state, offset, digest)
    assert await collect(store().read(digest)) == first


async def test_commit_checks_size(store):
    data = os.urandom(6 * MiB + 11)
    upload_id, state, size = await upload(store, [data])
    with pytest.raises(SizeInvalid):
        await store().commit(upload_id, state, size + 1, sha256(data + b"x"))
    assert await store().stat(sha256(data + b"x")) is None
    await store().commit(upload_id, state, size, sha256(data))  # the upload is still there
    assert await collect(store().read(sha256(data))) == data


@pytest.mark.parametrize("total, size", [(100, 60), (9 * MiB + 100, 9 * MiB + 50), (9 * MiB + 100, 3 * MiB)])
async def test_commit_places_exactly_size_bytes(store, total, size):
    data = os.urandom(total)
    upload_id, state, _ = await upload(store, [data])
    digest = sha256(data[:size])
    await store().commit(upload_id, state, size, digest)
    assert await store().stat(digest) == size
    assert await collect(store().read(digest)) == data[:size]


async def test_concurrent_commits_of_one_digest(store):
    data = os.urandom(9 * MiB + 3)
    digest = sha256(data)
    a = await upload(store, [data[:5 * MiB], data[5 * MiB:]])
    b = await upload(store, [data])
    c = await upload(store, [data[:1000], data[1000:]])
    await asyncio.gather(*(store().commit(u, s, n, digest) for u, s, n in (a, b, c)))
    d = store()
    assert [x async for x in d.list_digests()] == [digest]
    assert await d.stat(digest) == len(data)
    assert hashlib.sha256(await collect(d.read(digest))).hexdigest() == digest[7:]
    assert await upload_ids(d) == set()


async def test_commit_of_stored_digest_keeps_it(store):
    data = os.urandom(2000)
    digest = await put(store, data)
    upload_id, state, size = await upload(store, [data])
    await store().commit(upload_id, state, size, digest)
    assert await collect(store().read(digest)) == data
    assert upload_id not in await upload_ids(store())


async def test_read_upload_then_commit(store):
    """read_upload (re-hashing, e.g. for sha512) streams the upload; commit follows."""
    parts = [os.urandom(3 * MiB), os.urandom(7 * MiB)]
    upload_id, state, size = await upload(store, parts)
    data = b"".join(parts)
    h = hashlib.sha512()
    async for chunk in store().read_upload(upload_id, state, size):
        h.update(chunk)
    digest = "sha512:" + h.hexdigest()
    assert digest == sha512(data)
    await store().commit(upload_id, state, size, digest)
    assert await collect(store().read(digest)) == data
    assert [x async for x in store().list_digests()] == [digest]


async def test_read_upload_small(store):
    upload_id, state, size = await upload(store, [b"abc", b"defgh"])
    assert await collect(store().read_upload(upload_id, state, size)) == b"abcdefgh"
    assert await collect(store().read_upload(upload_id, state, 4)) == b"abcd"


async def test_abort(store):
    upload_id, state, _ = await upload(store, [os.urandom(9 * MiB), os.urandom(100)])
    other, _, _ = await upload(store, [b"other"])
    assert await upload_ids(store()) == {upload_id, other}
    await store().abort(upload_id, state)
    assert await upload_ids(store()) == {other}
    await store().abort(upload_id, state)  # already gone: no error
    await store().abort(other, None)  # the sweeper knows no state
    assert await upload_ids(store()) == set()
    assert [x async for x in store().list_digests()] == []


async def test_list_uploads_reports_when_written(store):
    before = time.time()
    upload_id, _, _ = await upload(store, [b"x" * 100])
    found = dict([u async for u in store().list_uploads()])
    assert set(found) == {upload_id}
    # epoch seconds of the last write (the store's clock; allow for clock granularity and skew)
    assert before - 120 <= found[upload_id] <= time.time() + 120


async def test_delete(store):
    data = b"to be deleted"
    digest = await put(store, data)
    other = await put(store, b"stays")
    d = store()
    assert await d.delete(digest) is True
    assert await d.stat(digest) is None
    with pytest.raises(ContentMissing):
        await collect(d.read(digest))
    assert await d.delete(digest) is False
    assert [x async for x in d.list_digests()] == [other]


async def test_list_digests(store):
    datas = [os.urandom(10 + i) for i in range(5)]
    expected = {await put(store, x) for x in datas}
    await upload(store, [b"pending"])  # an upload in progress is not content
    assert {x async for x in store().list_digests()} == expected


async def test_sha512_content(store):
    data = os.urandom(4096)
    upload_id, state, size = await upload(store, [data])
    await store().commit(upload_id, state, size, sha512(data))
    assert await collect(store().read(sha512(data), 10, 20)) == data[10:20]
    assert sha512(data) in {x async for x in store().list_digests()}


async def test_redirect_url(store):
    data = os.urandom(70 * KiB)
    digest = await put(store, data)
    assert await store().redirect_url(digest) is None  # filesystem never; s3 only with redirect on
    if store.kind != "s3":
        return
    url = await store(redirect=True).redirect_url(digest, expires_in=60)
    assert url and url.startswith(store.seaweedfs.endpoint + "/")
    async with aiohttp.ClientSession() as http:  # a plain client, no credentials
        async with http.get(url) as r:
            assert r.status == 200
            assert await r.read() == data
        async with http.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0")) as r:
            assert r.status == 403  # the signature is what grants access


async def test_commit_of_a_whole_upload_held_in_memory(store):
    """commit(data=…): a session's whole content, never appended, written and placed in one step;
    what an interrupted append left in the upload is discarded; existing content is kept."""
    data = b"the whole blob" * 10
    digest = sha256(data)
    upload_id = uuid.uuid4().hex
    state = roundtrip(await store().start_upload(upload_id))
    await store().commit(upload_id, state, len(data), digest, data=data)
    assert await collect(store().read(digest)) == data
    assert upload_id not in await upload_ids(store())
    other, state, _ = await upload(store, [b"left behind"])
    await store().commit(other, state, len(data), digest, data=data)  # deduplicated
    assert await collect(store().read(digest)) == data
    assert await upload_ids(store()) == set()
