"""GET/HEAD/DELETE /v2/<name>/blobs/<digest>."""
from __future__ import annotations

import hashlib

import pytest

from tests.conftest import error_code, push_blob, push_image, representation_headers, sha256


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


# ---- HEAD and GET carry the same headers ---------------------------------------------------
# Every header but the per-response ones: a client may HEAD first and GET later (or the
# reverse) and must see one representation.
_headers = representation_headers


async def test_blob_head_and_get_send_the_same_headers(client):
    data = bytes(range(256)) * 4
    digest = await push_blob(client, "lib/a", data)
    get = await client.get(f"/v2/lib/a/blobs/{digest}")
    assert await get.read() == data
    head = await client.head(f"/v2/lib/a/blobs/{digest}")
    assert await head.read() == b""
    assert get.status == head.status == 200
    assert _headers(head) == _headers(get)
    assert _headers(get) == {
        "content-type": "application/octet-stream",
        "content-length": str(len(data)),
        "docker-content-digest": digest,
        "etag": f'"{digest}"',
        "accept-ranges": "bytes",
        "cache-control": "max-age=31536000",
        "docker-distribution-api-version": "registry/2.0",
    }


@pytest.mark.parametrize("tagged", [True, False])
async def test_manifest_head_and_get_send_the_same_headers(client, tagged):
    manifest_digest, body, _, _ = await push_image(client, "lib/img", "v1")
    ref = "v1" if tagged else manifest_digest
    get = await client.get(f"/v2/lib/img/manifests/{ref}")
    assert await get.read() == body
    head = await client.head(f"/v2/lib/img/manifests/{ref}")
    assert await head.read() == b""
    assert get.status == head.status == 200
    assert _headers(head) == _headers(get)
    assert _headers(get) == {
        "content-type": "application/vnd.oci.image.manifest.v1+json",
        "content-length": str(len(body)),
        "docker-content-digest": manifest_digest,
        "etag": f'"{manifest_digest}"',
        "docker-distribution-api-version": "registry/2.0",
    }
    # a Range on a manifest is ignored (manifests are small and served whole)
    r = await client.get(f"/v2/lib/img/manifests/{ref}", headers={"Range": "bytes=0-9"})
    assert r.status == 200
    assert await r.read() == body
    assert _headers(r) == _headers(get)


# ---- Range (RFC 9110 §14) -----------------------------------------------------------------
BLOB = bytes(range(250)) * 4  # 1,000 bytes
assert len(BLOB) == 1000


@pytest.mark.parametrize(
    "header, start, end",
    [
        ("bytes=10-19", 10, 19),
        ("bytes=0-0", 0, 0),
        ("bytes=990-", 990, 999),
        ("bytes=-10", 990, 999),  # suffix: the last 10 bytes
        ("bytes=-5000", 0, 999),  # a suffix longer than the blob is the whole blob, still 206
        ("bytes=900-5000", 900, 999),  # last-pos beyond the end is clipped
        ("bytes=0-999", 0, 999),
        ("bytes=999-999", 999, 999),
        ("BYTES=1-2", 1, 2),  # the unit is case-insensitive
        ("bytes=5-6,", 5, 6),  # an empty list element is not a second range
        ("bytes=5-99999999999999999999999999", 5, 999),
    ],
)
async def test_satisfiable_range_is_206(client, header, start, end):
    digest = await push_blob(client, "lib/a", BLOB)
    r = await client.get(f"/v2/lib/a/blobs/{digest}", headers={"Range": header})
    assert r.status == 206, header
    assert await r.read() == BLOB[start:end + 1]
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/1000"
    assert r.headers["Content-Length"] == str(end - start + 1)
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["ETag"] == f'"{digest}"'
    assert r.headers["Accept-Ranges"] == "bytes"


@pytest.mark.parametrize(
    "header",
    [
        "items=0-1",  # a unit Berth does not understand MUST be ignored
        "bytes=abc",  # invalid: ignored
        "bytes=5-2",  # last < first: invalid, ignored
        "bytes=",
        "bytes=-",
        "bytes",
        "=0-1",
        "bytes=0-1,5-6",  # multi-range: the whole blob (no multipart/byteranges)
        "bytes=0-1, 2000-",
        "bytes=2000-3000,4000-",  # ignored as a whole, so not 416 either
        "bytes=١-٢",  # Arabic-Indic digits are not DIGIT
        "bytes=99999999999999999999999-5",
    ],
)
async def test_ignored_range_is_the_whole_blob(client, header):
    digest = await push_blob(client, "lib/a", BLOB)
    plain = await client.get(f"/v2/lib/a/blobs/{digest}")
    await plain.read()
    r = await client.get(f"/v2/lib/a/blobs/{digest}", headers={"Range": header})
    assert r.status == 200, header
    assert await r.read() == BLOB
    assert "Content-Range" not in r.headers
    assert _headers(r) == _headers(plain)


@pytest.mark.parametrize("header", ["bytes=2000-", "bytes=1000-", "bytes=1000-1000", "bytes=-0",
                                    "bytes=99999999999999999999999-"])
async def test_unsatisfiable_range_is_416_with_content_range(client, header):
    digest = await push_blob(client, "lib/a", BLOB)
    r = await client.get(f"/v2/lib/a/blobs/{digest}", headers={"Range": header})
    assert r.status == 416, header
    assert r.headers["Content-Range"] == "bytes */1000"
    assert r.headers["Content-Type"] == "application/json"
    body = await r.json()
    assert body["errors"][0]["code"] == "SIZE_INVALID"
    assert body["errors"][0]["detail"] == {"digest": digest, "range": header, "size": 1000}


async def test_any_range_of_an_empty_blob_is_416(client):
    digest = await push_blob(client, "lib/a", b"")
    r = await client.get(f"/v2/lib/a/blobs/{digest}", headers={"Range": "bytes=0-"})
    assert r.status == 416
    assert r.headers["Content-Range"] == "bytes */0"
    assert await error_code(r) == "SIZE_INVALID"


@pytest.mark.parametrize("header", ["bytes=10-19", "bytes=2000-", "items=0-1", "bytes=0-1,5-6"])
async def test_head_ignores_range(client, header):
    """RFC 9110 §14.2: Range is defined for GET only; HEAD answers as for a plain GET."""
    digest = await push_blob(client, "lib/a", BLOB)
    plain = await client.get(f"/v2/lib/a/blobs/{digest}")
    await plain.read()
    r = await client.head(f"/v2/lib/a/blobs/{digest}", headers={"Range": header})
    assert r.status == 200, header
    assert _headers(r) == _headers(plain)


async def test_range_of_unknown_blob_is_404(client):
    await push_blob(client, "lib/a", b"x")
    r = await client.get("/v2/lib/a/blobs/sha256:" + "a" * 64, headers={"Range": "bytes=0-1"})
    assert r.status == 404
    assert await error_code(r) == "BLOB_UNKNOWN"


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
    assert await error_code(r) == "NAME_UNKNOWN"


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


@pytest.mark.parametrize("header", [b"X-Note: \xff\xfe", b"Range: bytes=\xff-1", b"If-None-Match: \"\xc3\x28\""])
async def test_header_bytes_that_are_not_utf8(client, header):
    """Raw header bytes outside UTF-8 must not cost the answer (a header Berth does not use is
    ignored, an undecodable Range is an invalid one: the whole blob)."""
    import asyncio

    digest = await push_blob(client, "lib/a", BLOB)
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(f"GET /v2/lib/a/blobs/{digest} HTTP/1.1\r\nHost: x\r\n".encode() + header
                 + b"\r\nConnection: close\r\n\r\n")
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), raw[:300]
    assert body == BLOB


# ---- drivers without local files: streamed from driver.read, or redirected ---------------


class _NoLocalFiles:
    """The filesystem driver as a driver without local files would be used (like S3)."""

    def __init__(self, inner, url: str | None = None) -> None:
        self.inner = inner
        self.url = url
        self.redirects = url is not None

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
    r = await client.get(f"/v2/lib/a/blobs/{digest}")
    assert r.status == 404
    assert await error_code(r) == "BLOB_UNKNOWN"
    # HEAD answers from the database alone (docs/performance.md): the link and the size are
    # there, so it says 200 with the recorded size; `berth fsck` is what finds the lost file
    r = await client.head(f"/v2/lib/a/blobs/{digest}")
    assert r.status == 200
    assert r.headers["Content-Length"] == str(len(b"lost file"))
