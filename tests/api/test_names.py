"""Repository names and tags: NAME_INVALID / TAG_INVALID, and path traversal."""
from __future__ import annotations

import asyncio
import json

from yarl import URL

from tests.conftest import error_code, push_blob, push_image, sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


async def raw_request(client, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """Send ``path`` byte for byte (no client-side normalisation of '..' or %2e)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


INVALID_NAMES = [
    "Upper",
    "lib/Upper",
    "a__-b",
    "a..b",
    "-a",
    "a-",
    "a_",
    "_a",
    "a//b",
    "a/",
    "a.",
    "a/.b",
    "a___b",
    "a@b",
    "a:b",
    "x" * 256,
    "/".join(["abcdefghi"] * 26),  # 259 chars of valid components
]


async def test_invalid_names(client):
    for name in INVALID_NAMES:
        for method, path in (
            ("GET", f"/v2/{name}/tags/list"),
            ("GET", f"/v2/{name}/manifests/latest"),
            ("HEAD", f"/v2/{name}/manifests/latest"),
            ("PUT", f"/v2/{name}/manifests/latest"),
            ("GET", f"/v2/{name}/blobs/{sha256(b'')}"),
            ("POST", f"/v2/{name}/blobs/uploads/"),
            ("GET", f"/v2/{name}/referrers/{sha256(b'')}"),
        ):
            r = await client.request(method, URL(path, encoded=True))
            assert r.status == 400, (method, path, r.status)
            if method != "HEAD":
                assert await error_code(r) == "NAME_INVALID", (method, path)
    r = await client.get("/v2/_catalog")
    assert (await r.json())["repositories"] == []


VALID_NAMES = ["a", "a/b/c", "a.b", "a_b", "a__b", "a-b", "a---b", "0", "lib/a.b_c__d-e--f", "x" * 255]


async def test_valid_names(client):
    for name in VALID_NAMES:
        await push_blob(client, name, b"valid")
        r = await client.get(f"/v2/{name}/blobs/{sha256(b'valid')}")
        assert r.status == 200, name
    r = await client.get("/v2/_catalog")
    assert (await r.json())["repositories"] == sorted(VALID_NAMES)


TRAVERSALS = [
        "/v2/a/../b/tags/list",
        "/v2/../v2/b/tags/list",
        "/v2/a/./b/tags/list",
        "/v2/a/%2e%2e/b/tags/list",
        "/v2/a/%2E%2E/b/tags/list",
        "/v2/a/.%2e/b/tags/list",
        "/v2/a/%2e/b/tags/list",
        "/v2/a/%2e%2e/b/manifests/latest",
        "/v2/a/../b/blobs/uploads/",
        "/v2/a/b/manifests/..",
        "/v2/a/b/manifests/%2e%2e",
        "/v2/a/../b/blobs/sha256:" + "0" * 64,
]


async def test_path_traversal_is_name_invalid(client):
    _, body, *_ = await push_image(client, "b", "latest")
    for path in TRAVERSALS:
        for method in ("GET", "PUT", "DELETE", "POST"):
            status, headers, raw = await raw_request(client, method, path)
            assert status == 400, (method, path, status, raw)
            assert headers.get("docker-distribution-api-version") == "registry/2.0"
            assert json.loads(raw)["errors"][0]["code"] == "NAME_INVALID", (method, path)
    # nothing was touched
    r = await client.get("/v2/b/manifests/latest")
    assert r.status == 200
    assert await r.read() == body


async def test_path_traversal_via_encoded_yarl_url(client):
    r = await client.get(URL("/v2/a/%2e%2e/b/tags/list", encoded=True))
    assert r.status == 400
    assert await error_code(r) == "NAME_INVALID"


async def test_dots_inside_names_are_not_traversal(client):
    await push_blob(client, "a.b/c.d", b"dots")
    status, _, raw = await raw_request(client, "GET", f"/v2/a.b/c.d/blobs/{sha256(b'dots')}")
    assert status == 200, raw


INVALID_TAGS = ["-start", ".start", "a" * 129, "tag!", "tag+x", "t%20ag"]


async def test_invalid_tags(client):
    _, body, *_ = await push_image(client, "lib/app", None)
    for tag in INVALID_TAGS:
        url = URL(f"/v2/lib/app/manifests/{tag}", encoded=True)
        r = await client.put(url, data=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 400, tag
        assert await error_code(r) == "TAG_INVALID"
        r = await client.delete(url)
        assert r.status == 400, tag
        assert await error_code(r) == "TAG_INVALID"
        # a GET or HEAD of something that cannot name a manifest: the 404 the spec allows
        # (and the conformance suite expects), docs/api.md
        r = await client.get(url)
        assert (r.status, await error_code(r)) == (404, "MANIFEST_UNKNOWN"), tag
        r = await client.head(url)
        assert r.status == 404, tag
    r = await client.get("/v2/lib/app/tags/list")
    assert (await r.json())["tags"] == []


VALID_TAGS = ["latest", "v1.0.0", "_under", "1", "UPPER", "a-b_c.d", "a" * 128]


async def test_valid_tags(client):
    _, body, *_ = await push_image(client, "lib/app", None)
    for tag in VALID_TAGS:
        r = await client.put(f"/v2/lib/app/manifests/{tag}", data=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 201, tag
        r = await client.get(f"/v2/lib/app/manifests/{tag}")
        assert r.status == 200, tag
    assert (await (await client.get("/v2/lib/app/tags/list")).json())["tags"] == sorted(VALID_TAGS)


async def test_trailing_newline_is_not_a_valid_tag_or_digest(client):
    """`$` in a regex matches before a final newline: 'latest%0A' must not become a tag."""
    _, body, *_ = await push_image(client, "lib/app", None)
    r = await client.put(URL("/v2/lib/app/manifests/latest%0A", encoded=True), data=body,
                         headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 400
    assert await error_code(r) == "TAG_INVALID"
    assert (await (await client.get("/v2/lib/app/tags/list")).json())["tags"] == []
    r = await client.get(URL(f"/v2/lib/app/blobs/{sha256(b'x')}%0A", encoded=True))
    assert r.status == 400
    assert await error_code(r) == "DIGEST_INVALID"
