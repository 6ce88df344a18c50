"""Concurrent pushes of the same content through the API: every request succeeds.

Run on each database (tests/conftest.py); on PostgreSQL the transactions really overlap.
"""
from __future__ import annotations

import asyncio
import json

from tests.conftest import push_blob, sha256

N = 10
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def manifest(config: bytes, layer: bytes) -> bytes:
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer),
                    "size": len(layer)}],
    }).encode()


async def test_concurrent_monolithic_uploads_of_one_blob(client):
    data = b"the same layer, pushed ten times at once"
    await asyncio.gather(*(push_blob(client, "race/blob", data) for _ in range(N)))
    r = await client.get(f"/v2/race/blob/blobs/{sha256(data)}")
    assert r.status == 200 and await r.read() == data


async def test_concurrent_chunked_uploads_of_one_blob_into_new_repositories(client):
    data = b"x" * 1000

    async def push(i: int) -> None:
        r = await client.post(f"/v2/race/r{i}/blobs/uploads/")
        assert r.status == 202, await r.text()
        loc = r.headers["Location"]
        r = await client.patch(loc, data=data, headers={"Content-Type": "application/octet-stream"})
        assert r.status == 202, await r.text()
        r = await client.put(f"{r.headers['Location']}{'&' if '?' in loc else '?'}digest={sha256(data)}")
        assert r.status == 201, await r.text()

    await asyncio.gather(*(push(i) for i in range(N)))
    r = await client.get("/v2/_catalog")
    assert (await r.json())["repositories"] == sorted(f"race/r{i}" for i in range(N))


async def test_concurrent_puts_of_one_manifest_and_tag(client):
    config, layer = b"{}", b"layer bytes"
    await push_blob(client, "race/img", config)
    await push_blob(client, "race/img", layer)
    body = manifest(config, layer)

    async def put(reference: str) -> None:
        r = await client.put(f"/v2/race/img/manifests/{reference}", data=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 201, await r.text()

    await asyncio.gather(*(put("latest") for _ in range(N)))
    await asyncio.gather(*(put("again") for _ in range(N)))  # the manifest exists: only the tag races
    for ref in ("latest", "again", sha256(body)):
        r = await client.get(f"/v2/race/img/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert r.status == 200 and await r.read() == body
    r = await client.get("/v2/race/img/tags/list")
    assert (await r.json())["tags"] == ["again", "latest"]


async def test_concurrent_pushes_of_whole_images_to_one_tag(client):
    """Different images pushed to the same new repository and tag at once: the last one wins."""

    async def push(i: int) -> str:
        config, layer = json.dumps({"i": i}).encode(), f"layer {i}".encode()
        await push_blob(client, "race/tag", config)
        await push_blob(client, "race/tag", layer)
        body = manifest(config, layer)
        r = await client.put("/v2/race/tag/manifests/v1", data=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 201, await r.text()
        return sha256(body)

    digests = await asyncio.gather(*(push(i) for i in range(N)))
    r = await client.head("/v2/race/tag/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status == 200 and r.headers["Docker-Content-Digest"] in digests
