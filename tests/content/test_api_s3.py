"""The registry API on the s3 content driver, against a real SeaweedFS: push/pull of a
multi-layer image, chunked (1 KiB and 6 MiB chunks), monolithic and sha512 uploads, mount,
307 redirects to presigned URLs, and streamed GETs with Range."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import uuid

import aiohttp
import pytest

from registry.app import create_app
from registry.config import Config

from ..conftest import push_blob, push_image, sha256
from .conftest import s3_config

if importlib.util.find_spec("storage.content.filesystem") is None:  # handlers on drivers: the store branch
    pytest.skip("the API serves blobs through content drivers only with the store branch merged",
                allow_module_level=True)

KiB, MiB = 1024, 1024 * 1024


@pytest.fixture
def s3_prefix() -> str:
    return f"api-{uuid.uuid4().hex[:8]}"


def s3_app_config(tmp_path, seaweedfs, bucket, prefix, redirect=False) -> Config:
    cfg = Config(data_dir=tmp_path / "data")
    cfg.auth.enabled = False
    cfg.storage.driver = "s3"
    cfg.storage.s3 = s3_config(seaweedfs, bucket, prefix, redirect=redirect)
    cfg.storage.validate()
    return cfg


@pytest.fixture
async def client(aiohttp_client, tmp_path, seaweedfs, s3_bucket, s3_prefix):
    return await aiohttp_client(create_app(s3_app_config(tmp_path, seaweedfs, s3_bucket, s3_prefix)))


def stored(seaweedfs, bucket, prefix, sub="") -> list[str]:
    return seaweedfs.keys(bucket, f"{prefix}/{sub}")


def blob_key(prefix: str, digest: str) -> str:
    alg, hexd = digest.split(":")
    return f"{prefix}/blobs/{alg}/{hexd[:2]}/{hexd}"


async def test_push_and_pull_an_image(client, seaweedfs, s3_bucket, s3_prefix):
    manifest_digest, body, config_digest, layers = await push_image(client, "team/app", "v1", layers=3)
    r = await client.get("/v2/team/app/manifests/v1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 200 and await r.read() == body
    manifest = json.loads(body)
    for desc in [manifest["config"], *manifest["layers"]]:
        r = await client.get(f"/v2/team/app/blobs/{desc['digest']}")
        assert r.status == 200
        data = await r.read()
        assert len(data) == desc["size"] and sha256(data) == desc["digest"]
    keys = set(stored(seaweedfs, s3_bucket, s3_prefix))
    assert keys == {blob_key(s3_prefix, d) for d in [config_digest, *layers]}  # in S3, no upload left over


async def test_chunked_upload_1k_and_6m_chunks(client, seaweedfs, s3_bucket, s3_prefix):
    data = os.urandom(KiB) + os.urandom(6 * MiB) + os.urandom(KiB) + os.urandom(6 * MiB) + os.urandom(300)
    r = await client.post("/v2/team/chunked/blobs/uploads/")
    assert r.status == 202
    loc = r.headers["Location"]
    offset = 0
    for size in (KiB, 6 * MiB, KiB, 6 * MiB):
        chunk = data[offset:offset + size]
        r = await client.patch(loc, data=chunk, headers={
            "Content-Range": f"{offset}-{offset + size - 1}", "Content-Type": "application/octet-stream"})
        assert r.status == 202, await r.text()
        assert r.headers["Range"] == f"0-{offset + size - 1}"
        loc = r.headers["Location"]
        offset += size
    r = await client.put(f"{loc}?digest={sha256(data)}", data=data[offset:],
                         headers={"Content-Range": f"{offset}-{len(data) - 1}"})
    assert r.status == 201, await r.text()
    r = await client.get(f"/v2/team/chunked/blobs/{sha256(data)}")
    assert r.status == 200 and hashlib.sha256(await r.read()).hexdigest() == sha256(data)[7:]
    assert stored(seaweedfs, s3_bucket, s3_prefix, "uploads/") == []
    assert seaweedfs.multipart_uploads(s3_bucket, f"{s3_prefix}/") == []


async def test_monolithic_upload_post_then_put(client):
    data = os.urandom(9 * MiB + 1)
    r = await client.post("/v2/team/mono/blobs/uploads/")
    assert r.status == 202
    r = await client.put(f"{r.headers['Location']}?digest={sha256(data)}", data=data,
                         headers={"Content-Type": "application/octet-stream"})
    assert r.status == 201, await r.text()
    r = await client.head(f"/v2/team/mono/blobs/{sha256(data)}")
    assert r.status == 200 and int(r.headers["Content-Length"]) == len(data)


async def test_sha512_chunked_upload(client):
    """No running hash for sha512: the service re-reads the upload (driver.read_upload)."""
    data = os.urandom(9 * MiB + 77)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    r = await client.post("/v2/team/sha512/blobs/uploads/")
    loc = r.headers["Location"]
    r = await client.patch(loc, data=data[:5 * MiB], headers={"Content-Range": f"0-{5 * MiB - 1}"})
    assert r.status == 202
    r = await client.put(f"{r.headers['Location']}?digest={digest}", data=data[5 * MiB:],
                         headers={"Content-Range": f"{5 * MiB}-{len(data) - 1}"})
    assert r.status == 201, await r.text()
    r = await client.get(f"/v2/team/sha512/blobs/{digest}")
    assert r.status == 200 and await r.read() == data


async def test_wrong_digest_keeps_nothing(client, seaweedfs, s3_bucket, s3_prefix):
    data = os.urandom(6 * MiB)
    r = await client.post(f"/v2/team/bad/blobs/uploads/?digest={sha256(b'other')}", data=data)
    assert r.status == 400
    assert stored(seaweedfs, s3_bucket, s3_prefix) == []
    assert seaweedfs.multipart_uploads(s3_bucket, f"{s3_prefix}/") == []


async def test_mount(client):
    data = os.urandom(3000)
    digest = await push_blob(client, "team/src", data)
    r = await client.post(f"/v2/team/dst/blobs/uploads/?mount={digest}&from=team/src")
    assert r.status == 201
    r = await client.get(f"/v2/team/dst/blobs/{digest}")
    assert r.status == 200 and await r.read() == data


async def test_streamed_get_with_range(client):
    data = os.urandom(2 * MiB + 5)
    digest = await push_blob(client, "team/ranges", data)
    r = await client.get(f"/v2/team/ranges/blobs/{digest}", headers={"Range": "bytes=10-99"})
    assert r.status == 206
    assert r.headers["Content-Range"] == f"bytes 10-99/{len(data)}"
    assert await r.read() == data[10:100]
    r = await client.get(f"/v2/team/ranges/blobs/{digest}", headers={"Range": f"bytes={MiB}-"})
    assert r.status == 206 and await r.read() == data[MiB:]
    r = await client.get(f"/v2/team/ranges/blobs/{digest}", headers={"Range": f"bytes={len(data)}-"})
    assert r.status == 416
    r = await client.head(f"/v2/team/ranges/blobs/{digest}")
    assert r.status == 200 and int(r.headers["Content-Length"]) == len(data)


async def test_redirect_to_presigned_url(aiohttp_client, tmp_path, seaweedfs, s3_bucket, s3_prefix):
    client = await aiohttp_client(create_app(s3_app_config(tmp_path, seaweedfs, s3_bucket, s3_prefix, redirect=True)))
    data = os.urandom(700 * KiB)
    digest = await push_blob(client, "team/redirect", data)
    r = await client.get(f"/v2/team/redirect/blobs/{digest}", allow_redirects=False)
    assert r.status == 307
    location = r.headers["Location"]
    assert location.startswith(f"{seaweedfs.endpoint}/{s3_bucket}/{blob_key(s3_prefix, digest)}?")
    assert "X-Amz-Expires=" in location and "X-Amz-Signature=" in location
    async with aiohttp.ClientSession() as plain, plain.get(location) as r:  # no credentials of its own
        assert r.status == 200
        assert await r.read() == data
    r = await client.get(f"/v2/team/redirect/blobs/sha256:{'0' * 64}", allow_redirects=False)
    assert r.status == 404  # unknown blobs are not redirected
