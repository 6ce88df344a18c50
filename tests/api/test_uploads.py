"""Blob upload sessions: POST/PATCH/PUT/GET/DELETE /v2/<name>/blobs/uploads/…"""
from __future__ import annotations

import hashlib
import os

import pytest

from tests.conftest import error_code, push_blob, sha256

NAME = "up/repo"


def blob_file(config, digest: str):
    alg, hexd = digest.split(":", 1)
    return config.data_dir / "blobs" / alg / hexd[:2] / hexd


def upload_files(config) -> list[str]:
    return sorted(p.name for p in (config.data_dir / "uploads").iterdir())


async def start(client, name: str = NAME) -> str:
    r = await client.post(f"/v2/{name}/blobs/uploads/")
    assert r.status == 202, await r.text()
    return r.headers["Location"]


async def agen(*parts: bytes):
    for p in parts:
        yield p


async def test_start_session(client, config):
    r = await client.post(f"/v2/{NAME}/blobs/uploads/")
    assert r.status == 202
    location = r.headers["Location"]
    uuid = r.headers["Docker-Upload-UUID"]
    assert location == f"/v2/{NAME}/blobs/uploads/{uuid}"
    assert r.headers["Range"] == "0-0"
    assert r.headers["Content-Length"] == "0"
    assert upload_files(config) == []  # the upload's file comes with its first byte
    r = await client.get(location)
    assert r.status == 204
    assert r.headers["Range"] == "0-0"
    assert r.headers["Docker-Upload-UUID"] == uuid


async def test_monolithic_post(client, config):
    data = b"monolithic" * 1000
    digest = sha256(data)
    r = await client.post(f"/v2/{NAME}/blobs/uploads/?digest={digest}", data=data,
                          headers={"Content-Type": "application/octet-stream"})
    assert r.status == 201
    assert r.headers["Location"] == f"/v2/{NAME}/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert blob_file(config, digest).read_bytes() == data
    assert upload_files(config) == []
    r = await client.get(f"/v2/{NAME}/blobs/{digest}")
    assert await r.read() == data


async def test_monolithic_post_wrong_digest(client, config):
    digest = sha256(b"other")
    r = await client.post(f"/v2/{NAME}/blobs/uploads/?digest={digest}", data=b"data")
    assert r.status == 400
    assert await error_code(r) == "DIGEST_INVALID"
    assert not blob_file(config, digest).exists()
    assert not blob_file(config, sha256(b"data")).exists()
    assert upload_files(config) == []


async def test_monolithic_post_invalid_digest(client, config):
    r = await client.post(f"/v2/{NAME}/blobs/uploads/?digest=sha256:nothex", data=b"data")
    assert r.status == 400
    assert await error_code(r) == "DIGEST_INVALID"
    assert upload_files(config) == []


async def test_chunked_upload_with_content_range(client, config):
    data = b"abcdefghij" * 30
    loc = await start(client)
    r = await client.patch(loc, data=data[:100], headers={"Content-Range": "0-99", "Content-Type": "application/octet-stream"})
    assert r.status == 202
    assert r.headers["Range"] == "0-99"
    assert r.headers["Location"] == loc
    loc = r.headers["Location"]
    r = await client.patch(loc, data=data[100:250], headers={"Content-Range": "100-249"})
    assert r.status == 202
    assert r.headers["Range"] == "0-249"
    r = await client.get(loc)
    assert r.status == 204
    assert r.headers["Range"] == "0-249"
    r = await client.put(f"{loc}?digest={sha256(data)}", data=data[250:], headers={"Content-Range": "250-299"})
    assert r.status == 201, await r.text()
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert r.headers["Location"] == f"/v2/{NAME}/blobs/{sha256(data)}"
    assert blob_file(config, sha256(data)).read_bytes() == data
    assert upload_files(config) == []


async def test_chunked_upload_without_content_range(client):
    data = b"0123456789" * 10
    loc = await start(client)
    for i in range(0, 100, 25):
        r = await client.patch(loc, data=data[i : i + 25])
        assert r.status == 202
        assert r.headers["Range"] == f"0-{i + 24}"
    r = await client.put(f"{loc}?digest={sha256(data)}")
    assert r.status == 201
    r = await client.get(f"/v2/{NAME}/blobs/{sha256(data)}")
    assert await r.read() == data


async def test_chunked_transfer_encoding(client):
    parts = [b"first part ", b"second part ", b"x" * 70000, b"end"]
    data = b"".join(parts)
    loc = await start(client)
    r = await client.patch(loc, data=agen(*parts[:2]))
    assert r.status == 202
    assert r.headers["Range"] == f"0-{len(parts[0]) + len(parts[1]) - 1}"
    r = await client.put(f"{loc}?digest={sha256(data)}", data=agen(*parts[2:]))
    assert r.status == 201, await r.text()
    r = await client.get(f"/v2/{NAME}/blobs/{sha256(data)}")
    assert await r.read() == data


async def test_monolithic_post_chunked_transfer_encoding(client):
    data = b"streamed " * 1000
    r = await client.post(f"/v2/{NAME}/blobs/uploads/?digest={sha256(data)}", data=agen(data[:10], data[10:]))
    assert r.status == 201
    r = await client.get(f"/v2/{NAME}/blobs/{sha256(data)}")
    assert await r.read() == data


async def test_out_of_order_chunk(client, config):
    loc = await start(client)
    r = await client.patch(loc, data=b"0123456789", headers={"Content-Range": "0-9"})
    assert r.status == 202
    # a gap
    r = await client.patch(loc, data=b"abcde", headers={"Content-Range": "20-24"})
    assert r.status == 416
    assert r.headers["Range"] == "0-9"
    assert await error_code(r) == "BLOB_UPLOAD_INVALID"
    # a rewind
    r = await client.patch(loc, data=b"abcde", headers={"Content-Range": "5-9"})
    assert r.status == 416
    assert r.headers["Range"] == "0-9"
    # nothing was appended
    r = await client.get(loc)
    assert r.headers["Range"] == "0-9"
    uuid = loc.rsplit("/", 1)[1]
    assert (config.data_dir / "uploads" / uuid).read_bytes() == b"0123456789"
    # and the session still completes
    r = await client.put(f"{loc}?digest={sha256(b'0123456789')}")
    assert r.status == 201


async def test_first_chunk_must_start_at_zero(client):
    loc = await start(client)
    r = await client.patch(loc, data=b"abc", headers={"Content-Range": "1-3"})
    assert r.status == 416
    assert r.headers["Range"] == "0-0"
    assert await error_code(r) == "BLOB_UPLOAD_INVALID"


async def test_content_length_content_range_mismatch(client, config):
    loc = await start(client)
    r = await client.patch(loc, data=b"0123456789", headers={"Content-Range": "0-4"})
    assert 400 <= r.status < 500
    assert r.status in (400, 416)
    assert await error_code(r) == "BLOB_UPLOAD_INVALID"
    uuid = loc.rsplit("/", 1)[1]
    assert not (config.data_dir / "uploads" / uuid).exists()  # nothing written (the file comes with a byte)
    r = await client.get(loc)
    assert r.headers["Range"] == "0-0"


@pytest.mark.parametrize("bad", ["bytes=a-b", "5-2", "garbage"])
async def test_malformed_content_range(client, bad):
    loc = await start(client)
    r = await client.patch(loc, data=b"abc", headers={"Content-Range": bad})
    assert r.status in (400, 416)
    assert await error_code(r) == "BLOB_UPLOAD_INVALID"


async def test_put_without_digest(client):
    loc = await start(client)
    await client.patch(loc, data=b"abc")
    r = await client.put(loc)
    assert r.status == 400
    assert await error_code(r) == "DIGEST_INVALID"
    # the session survives a missing digest
    r = await client.get(loc)
    assert r.status == 204
    assert r.headers["Range"] == "0-2"


async def test_put_with_wrong_digest_keeps_nothing(client, config):
    data = b"the real content" * 10
    wrong = sha256(b"not the content")
    loc = await start(client)
    assert (await client.patch(loc, data=data[:50])).status == 202
    r = await client.put(f"{loc}?digest={wrong}", data=data[50:])
    assert r.status == 400
    assert await error_code(r) == "DIGEST_INVALID"
    # the session is gone
    r = await client.get(loc)
    assert r.status == 404
    assert await error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    r = await client.patch(loc, data=b"more")
    assert r.status == 404
    assert await error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    # nothing on disk: neither the claimed digest, nor the real one, nor an upload file
    assert not blob_file(config, wrong).exists()
    assert not blob_file(config, sha256(data)).exists()
    assert list((config.data_dir / "blobs").rglob("*.*")) == []
    assert [p for p in (config.data_dir / "blobs").rglob("*") if p.is_file()] == []
    assert upload_files(config) == []
    assert (await client.get(f"/v2/{NAME}/blobs/{wrong}")).status == 404


async def test_put_with_invalid_digest_syntax(client):
    loc = await start(client)
    r = await client.put(f"{loc}?digest=sha256:xyz")
    assert r.status == 400
    assert await error_code(r) == "DIGEST_INVALID"


async def test_sha512_chunked_upload(client):
    data = b"sha512 chunked" * 100
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    loc = await start(client)
    await client.patch(loc, data=data[:300])
    r = await client.put(f"{loc}?digest={digest}", data=data[300:])
    assert r.status == 201
    r = await client.get(f"/v2/{NAME}/blobs/{digest}")
    assert await r.read() == data


async def test_cancel_upload(client, config):
    loc = await start(client)
    await client.patch(loc, data=b"abc")
    r = await client.delete(loc)
    assert r.status == 204
    assert upload_files(config) == []
    r = await client.get(loc)
    assert r.status == 404
    assert await error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    r = await client.delete(loc)
    assert r.status == 404
    assert await error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    r = await client.put(f"{loc}?digest={sha256(b'abc')}")
    assert r.status == 404
    assert await error_code(r) == "BLOB_UPLOAD_UNKNOWN"


async def test_session_under_another_repository(client):
    loc = await start(client, "tenant-a/repo")
    uuid = loc.rsplit("/", 1)[1]
    other = f"/v2/tenant-b/repo/blobs/uploads/{uuid}"
    for method, kwargs in (
        ("GET", {}),
        ("PATCH", {"data": b"abc"}),
        ("PUT", {"params": {"digest": sha256(b"")}}),
        ("DELETE", {}),
    ):
        r = await client.request(method, other, **kwargs)
        assert r.status == 404, method
        assert await error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    # the session under its own name is untouched
    r = await client.get(loc)
    assert r.status == 204
    assert r.headers["Range"] == "0-0"


async def test_malformed_upload_id(client):
    for upload_id in ["nope", "A" * 32, "0" * 31, "0" * 64, "g" * 32]:
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            r = await client.request(method, f"/v2/{NAME}/blobs/uploads/{upload_id}", data=b"x")
            assert r.status == 404, (method, upload_id, r.status)
            assert await error_code(r) == "BLOB_UPLOAD_UNKNOWN", (method, upload_id)


async def test_unknown_upload_id(client):
    r = await client.get(f"/v2/{NAME}/blobs/uploads/{'0' * 32}")
    assert r.status == 404
    assert await error_code(r) == "BLOB_UPLOAD_UNKNOWN"


async def test_cross_repository_mount(client):
    data = b"mount me"
    digest = await push_blob(client, "src/repo", data)
    assert (await client.get(f"/v2/dst/repo/blobs/{digest}")).status == 404
    r = await client.post(f"/v2/dst/repo/blobs/uploads/?mount={digest}&from=src/repo")
    assert r.status == 201
    assert r.headers["Location"] == f"/v2/dst/repo/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    r = await client.get(f"/v2/dst/repo/blobs/{digest}")
    assert r.status == 200
    assert await r.read() == data


@pytest.mark.parametrize(
    "query",
    [
        "mount=sha256:" + "c" * 64 + "&from=src/repo",  # unknown blob
        "mount={digest}&from=unknown/repo",  # unknown source repository
        "mount={digest}&from=Bad..Name",  # invalid source name
        "mount={digest}",  # no source
    ],
)
async def test_mount_falls_back_to_session(client, query):
    digest = await push_blob(client, "src/repo", b"mount source")
    r = await client.post(f"/v2/dst/repo/blobs/uploads/?{query.format(digest=digest)}")
    assert r.status == 202
    assert r.headers["Location"].startswith("/v2/dst/repo/blobs/uploads/")
    assert r.headers["Range"] == "0-0"
    assert (await client.get(r.headers["Location"])).status == 204
    assert (await client.get(f"/v2/dst/repo/blobs/{digest}")).status == 404


async def test_mount_invalid_digest(client):
    r = await client.post("/v2/dst/repo/blobs/uploads/?mount=sha256:zz&from=src/repo")
    assert r.status == 400
    assert await error_code(r) == "DIGEST_INVALID"


async def test_status_after_completion_is_gone(client):
    loc = await start(client)
    r = await client.put(f"{loc}?digest={sha256(b'done')}", data=b"done")
    assert r.status == 201
    r = await client.get(loc)
    assert r.status == 404
    assert await error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    r = await client.patch(loc, data=b"more")
    assert r.status == 404
    assert await error_code(r) == "BLOB_UPLOAD_UNKNOWN"


async def test_identical_blob_twice_is_deduplicated(client, config):
    data = b"same bytes"
    d1 = await push_blob(client, "a/one", data)
    loc = await start(client, "a/two")
    r = await client.put(f"{loc}?digest={d1}", data=data)
    assert r.status == 201
    files = [p for p in (config.data_dir / "blobs").rglob("*") if p.is_file()]
    assert files == [blob_file(config, d1)]
    assert upload_files(config) == []
    for repo in ("a/one", "a/two"):
        assert await (await client.get(f"/v2/{repo}/blobs/{d1}")).read() == data


async def test_upload_invalid_name(client):
    r = await client.post("/v2/Upper/blobs/uploads/")
    assert r.status == 400
    assert await error_code(r) == "NAME_INVALID"


async def test_patch_keeps_an_active_session_from_expiring(client):
    """Expiry is about idle sessions: a chunk received refreshes the session."""
    import time

    from sqlalchemy import update

    from registry.services import SERVICES
    from storage.gc import sweep_uploads
    from storage.models import Upload

    svc = client.server.app[SERVICES]
    loc = await start(client)
    uuid = loc.rsplit("/", 1)[1]
    long_ago = time.time() - 10 * 24 * 3600
    # the session was opened long ago…
    stmt = update(Upload).where(Upload.id == uuid).values(started_at=long_ago, updated_at=long_ago)
    await svc.db.write(lambda c: c.execute(stmt))
    assert (await client.patch(loc, data=b"still going")).status == 202  # …but is in use now
    assert await sweep_uploads(svc.catalog, svc.driver, expiry=3600) == 0
    r = await client.get(loc)
    assert r.status == 204
    assert r.headers["Range"] == "0-10"


async def test_idle_session_expires(client):
    import time

    from sqlalchemy import update

    from registry.services import SERVICES
    from storage.gc import sweep_uploads
    from storage.models import Upload

    svc = client.server.app[SERVICES]
    loc = await start(client)
    await client.patch(loc, data=b"abandoned")
    uuid = loc.rsplit("/", 1)[1]
    long_ago = time.time() - 10 * 24 * 3600
    stmt = update(Upload).where(Upload.id == uuid).values(updated_at=long_ago)
    await svc.db.write(lambda c: c.execute(stmt))
    assert await sweep_uploads(svc.catalog, svc.driver, expiry=3600) == 1
    r = await client.get(loc)
    assert r.status == 404
    assert await error_code(r) == "BLOB_UPLOAD_UNKNOWN"


async def test_session_survives_restart(aiohttp_client, config):
    from registry.app import create_app

    data = b"0123456789abcdefghij"
    first = await aiohttp_client(create_app(config))
    loc = await start(first)
    assert (await first.patch(loc, data=data[:10])).status == 202
    await first.close()
    second = await aiohttp_client(create_app(config))  # a new process on the same data directory
    r = await second.get(loc)
    assert r.status == 204
    assert r.headers["Range"] == "0-9"
    r = await second.patch(loc, data=data[:5], headers={"Content-Range": "0-4"})
    assert r.status == 416
    r = await second.put(f"{loc}?digest={sha256(data)}", data=data[10:], headers={"Content-Range": "10-19"})
    assert r.status == 201, await r.text()
    assert await (await second.get(f"/v2/{NAME}/blobs/{sha256(data)}")).read() == data


async def test_wrong_content_for_an_existing_digest_does_not_touch_it(client, config):
    data = b"genuine"
    digest = await push_blob(client, NAME, data)
    r = await client.post(f"/v2/other/repo/blobs/uploads/?digest={digest}", data=b"forged!")
    assert r.status == 400
    assert await error_code(r) == "DIGEST_INVALID"
    assert blob_file(config, digest).read_bytes() == data
    assert (await client.get(f"/v2/other/repo/blobs/{digest}")).status == 404


async def test_content_range_longer_than_chunked_body(client, config):
    loc = await start(client)
    r = await client.patch(loc, data=agen(b"abc", b"de"), headers={"Content-Range": "0-9"})
    assert r.status == 400
    assert await error_code(r) in ("SIZE_INVALID", "BLOB_UPLOAD_INVALID")
    r = await client.get(loc)
    assert r.headers["Range"] == "0-0"
    left = config.data_dir / "uploads" / loc.rsplit("/", 1)[1]
    assert not left.exists() or left.read_bytes() == b""


async def test_final_chunk_out_of_order_keeps_the_session(client, config):
    loc = await start(client)
    await client.patch(loc, data=b"abc")
    r = await client.put(f"{loc}?digest={sha256(b'abcdef')}", data=b"def", headers={"Content-Range": "5-7"})
    assert r.status == 416
    assert r.headers["Range"] == "0-2"
    assert await error_code(r) == "BLOB_UPLOAD_INVALID"
    assert not blob_file(config, sha256(b"abcdef")).exists()
    r = await client.put(f"{loc}?digest={sha256(b'abcdef')}", data=b"def", headers={"Content-Range": "3-5"})
    assert r.status == 201


# ---- sessions in the database: leases, any replica, verified commits ---------------------


def _svc(client):
    from registry.services import SERVICES

    return client.server.app[SERVICES]


async def test_a_chunk_while_another_request_holds_the_session_gets_416(client, config):
    """The loser of two concurrent PATCHes: 416 with where the upload stands, nothing appended."""
    import time

    svc = _svc(client)
    loc = await start(client)
    uuid = loc.rsplit("/", 1)[1]
    assert (await client.patch(loc, data=b"0123456789")).status == 202
    await svc.catalog.claim_upload(uuid, NAME, "another-request-token-000000000", time.time() + 30)
    for headers in ({}, {"Content-Range": "10-14"}):
        r = await client.patch(loc, data=b"abcde", headers=headers)
        assert r.status == 416
        assert await error_code(r) == "BLOB_UPLOAD_INVALID"
        assert r.headers["Range"] == "0-9"
        assert r.headers["Location"] == loc and r.headers["Docker-Upload-UUID"] == uuid
    r = await client.put(f"{loc}?digest={sha256(b'0123456789')}")
    assert r.status == 416
    assert (config.data_dir / "uploads" / uuid).read_bytes() == b"0123456789"
    await svc.catalog.release_upload(uuid, "another-request-token-000000000")
    assert (await client.patch(loc, data=b"abcde", headers={"Content-Range": "10-14"})).status == 202
    assert (await client.put(f"{loc}?digest={sha256(b'0123456789abcde')}")).status == 201


async def test_an_expired_lease_is_taken_over(client):
    """A request that died holding the session (SIGKILL) stops blocking it once its lease lapses."""
    import time

    svc = _svc(client)
    loc = await start(client)
    uuid = loc.rsplit("/", 1)[1]
    await svc.catalog.claim_upload(uuid, NAME, "dead-process-token-000000000000", time.time() - 1)
    r = await client.patch(loc, data=b"abc", headers={"Content-Range": "0-2"})
    assert r.status == 202 and r.headers["Range"] == "0-2"


async def test_a_lease_lost_mid_chunk_records_nothing(client, config):
    """Another request took the session while this body streamed: this chunk does not count
    (416), the offset and hash state stay as the other request left them."""
    import time

    from sqlalchemy import update

    from storage.models import Upload

    svc = _svc(client)
    loc = await start(client)
    uuid = loc.rsplit("/", 1)[1]
    assert (await client.patch(loc, data=b"first")).status == 202

    async def body():
        yield b"second "
        stmt = update(Upload).where(Upload.id == uuid).values(
            lease_token="thief-token-00000000000000000000", lease_expires_at=time.time() + 30)
        await svc.db.write(lambda c: c.execute(stmt))
        yield b"chunk"

    r = await client.patch(loc, data=body())
    assert r.status == 416
    assert r.headers["Range"] == "0-4"
    record = await svc.catalog.get_upload(uuid, NAME)
    assert record.offset == 5


async def test_commit_verifies_without_hash_state(client, monkeypatch):
    """No resumable SHA-256 (libcrypto missing): the upload is re-read at commit."""
    import registry.service.uploads as uploads_service

    monkeypatch.setattr(uploads_service, "resumable_sha256", lambda state=None: None)
    data = b"no running hash" * 100
    loc = await start(client)
    assert (await client.patch(loc, data=data[:700])).status == 202
    assert (await client.patch(loc, data=data[700:1000])).status == 202
    r = await client.put(f"{loc}?digest={sha256(data[:999])}", data=data[1000:])
    assert r.status == 400 and await error_code(r) == "DIGEST_INVALID"
    loc = await start(client)
    assert (await client.patch(loc, data=data[:700])).status == 202
    r = await client.put(f"{loc}?digest={sha256(data)}", data=data[700:])
    assert r.status == 201
    assert await (await client.get(f"/v2/{NAME}/blobs/{sha256(data)}")).read() == data


@pytest.mark.parametrize("hash_state", [True, False])
async def test_commit_refuses_an_upload_shorter_than_recorded(client, config, monkeypatch, hash_state):
    """What is placed is exactly what was hashed: bytes missing from the store → SIZE_INVALID,
    nothing placed, the session gone (with a running hash, and when re-hashing)."""
    import registry.service.uploads as uploads_service

    if not hash_state:
        monkeypatch.setattr(uploads_service, "resumable_sha256", lambda state=None: None)
    data = b"0123456789"
    loc = await start(client)
    uuid = loc.rsplit("/", 1)[1]
    assert (await client.patch(loc, data=data)).status == 202
    (config.data_dir / "uploads" / uuid).write_bytes(data[:7])  # e.g. a lost write
    r = await client.put(f"{loc}?digest={sha256(data)}")
    assert r.status == 400
    assert await error_code(r) == "SIZE_INVALID"
    assert not blob_file(config, sha256(data)).exists()
    assert (await client.get(loc)).status == 404
    assert upload_files(config) == []


# ---- max_blob_size ------------------------------------------------------------------------


@pytest.fixture
def small_limit(config):
    config.max_blob_size = 100
    return config


async def test_monolithic_post_over_the_limit_is_refused_before_reading(small_limit, client):
    data = b"x" * 101
    r = await client.post(f"/v2/{NAME}/blobs/uploads/?digest={sha256(data)}", data=data)
    assert r.status == 413
    assert await error_code(r) == "SIZE_INVALID"
    assert upload_files(small_limit) == []
    data = b"x" * 100
    assert (await client.post(f"/v2/{NAME}/blobs/uploads/?digest={sha256(data)}", data=data)).status == 201


async def test_chunks_over_the_limit_are_refused_and_the_offset_kept(small_limit, client):
    loc = await start(client)
    uuid = loc.rsplit("/", 1)[1]
    assert (await client.patch(loc, data=b"a" * 60)).status == 202
    # announced: Content-Length, Content-Range
    for headers in ({}, {"Content-Range": "60-100"}):
        r = await client.patch(loc, data=b"b" * 41, headers=headers)
        assert r.status == 413, headers
        assert await error_code(r) == "SIZE_INVALID"
    # not announced (chunked transfer): stopped once the running total passes the limit
    r = await client.patch(loc, data=agen(b"c" * 30, b"d" * 30))
    assert r.status == 413
    assert await error_code(r) == "SIZE_INVALID"
    r = await client.get(loc)
    assert r.headers["Range"] == "0-59"
    assert (small_limit.data_dir / "uploads" / uuid).read_bytes() == b"a" * 60
    # a final chunk over the limit keeps the session too
    r = await client.put(f"{loc}?digest={sha256(b'a' * 101)}", data=b"a" * 41)
    assert r.status == 413
    r = await client.put(f"{loc}?digest={sha256(b'a' * 100)}", data=b"a" * 40)
    assert r.status == 201


async def test_max_blob_size_from_the_environment():
    from registry.config import Config

    assert Config.load(None, env={}).max_blob_size == 10 * 1024**3
    assert Config.load(None, env={"BERTH_MAX_BLOB_SIZE": "1048576"}).max_blob_size == 1048576


async def test_a_writer_that_cannot_renew_its_lease_in_time_stops(client, config, monkeypatch):
    """The writer checks its lease before each buffer: once it could have lapsed unrenewed
    (here: at once), it stops — before it could overlap the next holder — and records nothing."""
    import registry.service.uploads as uploads_service

    loc = await start(client)
    uuid = loc.rsplit("/", 1)[1]
    assert (await client.patch(loc, data=b"kept")).status == 202
    monkeypatch.setattr(uploads_service, "LEASE", 0.0)
    r = await client.patch(loc, data=b"never recorded")
    assert r.status == 416 and r.headers["Range"] == "0-3"
    assert (config.data_dir / "uploads" / uuid).read_bytes() == b"kept"
    monkeypatch.setattr(uploads_service, "LEASE", 30.0)
    assert (await client.patch(loc, data=b" more", headers={"Content-Range": "4-8"})).status == 202
    assert (await client.put(f"{loc}?digest={sha256(b'kept more')}")).status == 201


async def test_the_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(client):
    """A process killed mid-PATCH (SIGKILL) leaves its lease; another process of the same host
    sees that its holder is gone and continues without waiting for it to lapse. A live
    holder, or one on another host, is waited for."""
    import subprocess
    import sys
    import time

    import registry.service.uploads as uploads_service

    svc = _svc(client)
    loc = await start(client)
    uuid = loc.rsplit("/", 1)[1]
    assert (await client.patch(loc, data=b"0123456789")).status == 202
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    token = uploads_service.new_token()
    dead = token[:8] + f"{gone.pid:08x}" + token[16:]
    if not uploads_service.holder_is_dead(dead):
        pytest.skip("this host cannot tell a dead lease holder (no /proc)")
    alive = token[:8] + f"{os.getppid():08x}" + token[16:]
    elsewhere = "ffffffff" if token[:8] != "ffffffff" else "00000000"
    for holder in (alive, elsewhere + dead[8:]):
        await svc.catalog.claim_upload(uuid, NAME, holder, time.time() + 30)
        r = await client.patch(loc, data=b"abc", headers={"Content-Range": "10-12"})
        assert r.status == 416 and r.headers["Range"] == "0-9", holder
        await svc.catalog.release_upload(uuid, holder)
    await svc.catalog.claim_upload(uuid, NAME, dead, time.time() + 30)
    r = await client.patch(loc, data=b"abc", headers={"Content-Range": "10-12"})
    assert r.status == 202 and r.headers["Range"] == "0-12"
    assert (await client.put(f"{loc}?digest={sha256(b'0123456789abc')}")).status == 201
