"""Shared fixtures: an app with auth off (API tests) and helpers to push content."""
from __future__ import annotations

import hashlib
import json

import pytest

from registry.app import create_app
from registry.config import Config


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def config(tmp_path) -> Config:
    cfg = Config(data_dir=tmp_path / "data")
    cfg.auth.enabled = False
    return cfg


@pytest.fixture
async def client(aiohttp_client, config):
    """An aiohttp test client against Berth with auth disabled."""
    return await aiohttp_client(create_app(config))


async def push_blob(client, name: str, data: bytes) -> str:
    digest = sha256(data)
    r = await client.post(f"/v2/{name}/blobs/uploads/?digest={digest}", data=data,
                          headers={"Content-Type": "application/octet-stream"})
    assert r.status == 201, await r.text()
    return digest


async def push_image(client, name: str, tag: str | None = "latest", layers: int = 1, extra: dict | None = None):
    """Push a small OCI image; return (manifest_digest, manifest_bytes, config_digest, layer_digests)."""
    config_bytes = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    config_digest = await push_blob(client, name, config_bytes)
    layer_digests = []
    layer_descs = []
    for i in range(layers):
        data = f"layer {i} of {name} {tag}".encode() * 10
        d = await push_blob(client, name, data)
        layer_digests.append(d)
        layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": len(data)})
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config_bytes)},
        "layers": layer_descs,
    }
    manifest.update(extra or {})
    body = json.dumps(manifest).encode()
    digest = sha256(body)
    r = await client.put(f"/v2/{name}/manifests/{tag or digest}", data=body,
                         headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 201, await r.text()
    return digest, body, config_digest, layer_digests


async def error_code(r) -> str:
    """The first OCI error code of an error response (asserts the distribution-spec body shape)."""
    body = await r.json(content_type=None)
    assert isinstance(body.get("errors"), list) and body["errors"], body
    return body["errors"][0]["code"]
