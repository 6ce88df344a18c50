"""GET/HEAD/DELETE /v2/<name>/blobs/<digest>."""
from __future__ import annotations

import hashlib

import pytest

from tests.conftest import error_code, push_blob, push_image, sha256


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


async def test_get_blob(client):
    data = b"hello blob" * 100
    digest = await push_blob(client, "lib/a", data)
    r = await client.get(f"/v2/lib/a/blobs/{digest}")
    assert r.status == 200
    assert await r.read() == data
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Content-Type"] == "application/octet-stream"


async def test_head_blob(client):
    data = b"head me" * 7
    digest = await push_blob(client, "lib/a", data)
    r = await client.head(f"/v2/lib/a/blobs/{digest}")
    assert r.status == 200
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert await r.read() == b""


async def test_range_request(client):
    data = bytes(range(256)) * 4
    digest = await push_blob(client, "lib/a", data)
    r = await client.get(f"/v2/lib/a/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert r.status == 206
    assert await r.read() == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert r.headers["Content-Length"] == "10"


async def test_open_ended_range(client):
    data = b"0123456789"
    digest = await push_blob(client, "lib/a", data)
    r = await client.get(f"/v2/lib/a/blobs/{digest}", headers={"Range": "bytes=7-"})
    assert r.status == 206
    assert await r.read() == b"789"
    assert r.headers["Content-Range"] == "bytes 7-9/10"


async def test_unsatisfiable_range(client):
    data = b"0123456789"
    digest = await push_blob(client, "lib/a", data)
    r = await client.get(f"/v2/lib/a/blobs/{digest}", headers={"Range": "bytes=100-200"})
    assert r.status == 416


async def test_blob_not_readable_from_another_repository(client):
    digest = await push_blob(client, "tenant-a/app", b"secret layer")
    for method in ("GET", "HEAD"):
        r = await client.request(method, f"/v2/tenant-b/app/blobs/{digest}")
        assert r.status == 404
    r = await client.get(f"/v2/tenant-b/app/blobs/{digest}")
    assert await error_code(r) == "BLOB_UNKNOWN"
    # and B pushing something does not grant it A's blob either
    await push_blob(client, "tenant-b/app", b"other")
    r = await client.get(f"/v2/tenant-b/app/blobs/{digest}")
    assert r.status == 404
    assert await error_code(r) == "BLOB_UNKNOWN"


async def test_unknown_blob(client):
    await push_blob(client, "lib/a", b"x")
    r = await client.get("/v2/lib/a/blobs/sha256:" + "a" * 64)
    assert r.status == 404
    assert await error_code(r) == "BLOB_UNKNOWN"
    r = await client.head("/v2/lib/a/blobs/sha256:" + "a" * 64)
    assert r.status == 404


async def test_invalid_digest(client):
    await push_blob(client, "lib/a", b"x")
    for bad in ["sha256:short", "sha256:" + "G" * 64, "nocolon", "md5:" + "a" * 32, "sha256:" + "A" * 64,
                "sha512:" + "a" * 64]:
        for method in ("GET", "DELETE"):
            r = await client.request(method, f"/v2/lib/a/blobs/{bad}")
            assert r.status == 400, (method, bad)
            assert await error_code(r) == "DIGEST_INVALID", (method, bad)


async def test_delete_blob(client):
    digest = await push_blob(client, "lib/a", b"to delete")
    r = await client.delete(f"/v2/lib/a/blobs/{digest}")
    assert r.status == 202
    r = await client.get(f"/v2/lib/a/blobs/{digest}")
    assert r.status == 404
    assert await error_code(r) == "BLOB_UNKNOWN"
    r = await client.delete(f"/v2/lib/a/blobs/{digest}")
    assert r.status == 404
    assert await error_code(r) == "BLOB_UNKNOWN"


async def test_delete_blob_in_one_repo_keeps_it_in_another(client):
    digest = await push_blob(client, "lib/a", b"shared")
    await push_blob(client, "lib/b", b"shared")
    assert (await client.delete(f"/v2/lib/a/blobs/{digest}")).status == 202
    r = await client.get(f"/v2/lib/b/blobs/{digest}")
    assert r.status == 200
    assert await r.read() == b"shared"


async def test_delete_blob_unknown_repository(client):
    r = await client.delete("/v2/never/pushed/blobs/sha256:" + "b" * 64)
    assert r.status == 404
    assert await error_code(r) in ("NAME_UNKNOWN", "BLOB_UNKNOWN")


async def test_delete_referenced_blob_is_refused(client):
    manifest_digest, _, config_digest, layers = await push_image(client, "lib/img", "v1")
    for d in (config_digest, layers[0]):
        r = await client.delete(f"/v2/lib/img/blobs/{d}")
        assert r.status == 405
        assert await error_code(r) == "UNSUPPORTED"
        assert (await client.get(f"/v2/lib/img/blobs/{d}")).status == 200
    # once the manifest is gone the blob may go
    assert (await client.delete(f"/v2/lib/img/manifests/{manifest_digest}")).status == 202
    assert (await client.delete(f"/v2/lib/img/blobs/{layers[0]}")).status == 202


async def test_sha512_blob(client):
    data = b"sha512 content" * 50
    digest = sha512(data)
    r = await client.post(f"/v2/lib/a/blobs/uploads/?digest={digest}", data=data)
    assert r.status == 201, await r.text()
    assert r.headers["Docker-Content-Digest"] == digest
    r = await client.get(f"/v2/lib/a/blobs/{digest}")
    assert r.status == 200
    assert r.headers["Docker-Content-Digest"] == digest
    assert await r.read() == data
    # the same bytes are not known under their sha256 unless pushed so
    r = await client.get(f"/v2/lib/a/blobs/{sha256(data)}")
    assert r.status == 404


async def test_sha512_blob_wrong_digest(client):
    data = b"sha512 content"
    digest = sha512(b"something else")
    r = await client.post(f"/v2/lib/a/blobs/uploads/?digest={digest}", data=data)
    assert r.status == 400
    assert await error_code(r) == "DIGEST_INVALID"
    assert (await client.get(f"/v2/lib/a/blobs/{digest}")).status == 404


async def test_empty_blob(client):
    digest = await push_blob(client, "lib/a", b"")
    r = await client.get(f"/v2/lib/a/blobs/{digest}")
    assert r.status == 200
    assert r.headers["Content-Length"] == "0"
    assert await r.read() == b""


# ---- drivers without local files: streamed from driver.read, or redirected ---------------


class _NoLocalFiles:
    """The filesystem driver as a driver without local files would be used (like S3)."""

    def __init__(self, inner, url: str | None = None) -> None:
        self.inner = inner
        self.url = url

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def local_path(self, digest):
        return None

    async def redirect_url(self, digest, expires_in=300):
        return None if self.url is None else f"{self.url}/{digest}?X-Amz-Expires={expires_in}"


def _use_driver(client, wrapper) -> None:
    from registry.services import SERVICES

    svc = client.server.app[SERVICES]
    svc.blobs.driver = wrapper(svc.driver)


async def test_streamed_blob_has_the_same_headers_and_ranges(client):
    data = bytes(range(256)) * 4
    digest = await push_blob(client, "lib/a", data)
    files = await client.get(f"/v2/lib/a/blobs/{digest}")
    _use_driver(client, _NoLocalFiles)
    r = await client.get(f"/v2/lib/a/blobs/{digest}")
    assert r.status == 200 and await r.read() == data
    for h in ("Content-Length", "Content-Type", "Docker-Content-Digest", "Accept-Ranges"):
        assert r.headers[h] == files.headers[h], h
    r = await client.head(f"/v2/lib/a/blobs/{digest}")
    assert r.status == 200 and r.headers["Content-Length"] == str(len(data)) and await r.read() == b""
    r = await client.get(f"/v2/lib/a/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert r.status == 206 and await r.read() == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}" and r.headers["Content-Length"] == "10"
    r = await client.get(f"/v2/lib/a/blobs/{digest}", headers={"Range": "bytes=-5"})
    assert r.status == 206 and await r.read() == data[-5:]
    r = await client.get(f"/v2/lib/a/blobs/{digest}", headers={"Range": "bytes=5000-"})
    assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{len(data)}"
    r = await client.get(f"/v2/lib/a/blobs/{digest}", headers={"Range": "bytes=1-2,4-5"})
    assert r.status == 200 and await r.read() == data  # multi-range: the whole blob


async def test_streamed_blob_with_missing_content(client, config):
    digest = await push_blob(client, "lib/a", b"gone from the store")
    _use_driver(client, _NoLocalFiles)
    alg, hexd = digest.split(":")
    (config.data_dir / "blobs" / alg / hexd[:2] / hexd).unlink()
    r = await client.get(f"/v2/lib/a/blobs/{digest}")
    assert r.status == 404 and await error_code(r) == "BLOB_UNKNOWN"


async def test_blob_get_redirects_when_the_driver_gives_a_url(client):
    digest = await push_blob(client, "lib/a", b"redirected")
    _use_driver(client, lambda d: _NoLocalFiles(d, "http://s3.example/bucket"))
    for method in ("GET", "HEAD"):
        r = await client.request(method, f"/v2/lib/a/blobs/{digest}", allow_redirects=False)
        assert r.status == 307
        assert r.headers["Location"] == f"http://s3.example/bucket/{digest}?X-Amz-Expires=300"
        assert r.headers["Docker-Content-Digest"] == digest
    r = await client.get(f"/v2/tenant-b/app/blobs/{digest}", allow_redirects=False)
    assert r.status == 404  # the link is checked before any URL is given


async def test_missing_local_file_is_blob_unknown(client, config):
    digest = await push_blob(client, "lib/a", b"lost file")
    alg, hexd = digest.split(":")
    (config.data_dir / "blobs" / alg / hexd[:2] / hexd).unlink()
    for method in ("GET", "HEAD"):
        r = await client.request(method, f"/v2/lib/a/blobs/{digest}")
        assert r.status == 404
    assert await error_code(await client.get(f"/v2/lib/a/blobs/{digest}")) == "BLOB_UNKNOWN"
