"""GET/HEAD/PUT/DELETE /v2/<name>/manifests/<reference>."""
from __future__ import annotations

import hashlib
import json

import pytest

from tests.conftest import error_code, push_blob, push_image, representation_headers, sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
NAME = "man/repo"


async def image_body(client, name: str, media_type: str = OCI_MANIFEST, seed: str = "x", **extra) -> bytes:
    """Push a config and one layer; return an image manifest (of ``media_type``) referencing them."""
    docker = media_type == DOCKER_MANIFEST
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    layer = f"layer {seed}".encode() * 20
    cfg_d = await push_blob(client, name, cfg)
    layer_d = await push_blob(client, name, layer)
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json" if docker else "application/vnd.oci.image.config.v1+json",
            "digest": cfg_d,
            "size": len(cfg),
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip" if docker else "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_d,
                "size": len(layer),
            }
        ],
    }
    doc.update(extra)
    return json.dumps(doc, indent=1).encode()


def index_body(children: list[tuple[str, bytes]], media_type: str = OCI_INDEX, **extra) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            {"mediaType": mt, "digest": sha256(b), "size": len(b), "platform": {"architecture": f"arch{i}", "os": "linux"}}
            for i, (mt, b) in enumerate(children)
        ],
    }
    doc.update(extra)
    return json.dumps(doc).encode()


async def put(client, ref: str, body: bytes, media_type: str | None, name: str = NAME):
    headers = {"Content-Type": media_type} if media_type else {}
    return await client.put(f"/v2/{name}/manifests/{ref}", data=body, headers=headers)


async def tags_of(client, name: str = NAME) -> list[str]:
    r = await client.get(f"/v2/{name}/tags/list")
    if r.status == 404:
        return []
    return (await r.json())["tags"]


async def make(client, media_type: str) -> bytes:
    if media_type in (OCI_MANIFEST, DOCKER_MANIFEST):
        return await image_body(client, NAME, media_type)
    child_type = OCI_MANIFEST if media_type == OCI_INDEX else DOCKER_MANIFEST
    children = []
    for seed in ("amd64", "arm64"):
        body = await image_body(client, NAME, child_type, seed=seed)
        r = await put(client, sha256(body), body, child_type)
        assert r.status == 201, await r.text()
        children.append((child_type, body))
    return index_body(children, media_type)


ALL_TYPES = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST]


@pytest.mark.parametrize("media_type", ALL_TYPES)
@pytest.mark.parametrize("by", ["tag", "digest"])
async def test_put_get_head(client, media_type, by):
    body = await make(client, media_type)
    digest = sha256(body)
    ref = "v1" if by == "tag" else digest
    r = await put(client, ref, body, media_type)
    assert r.status == 201, await r.text()
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Location"] == f"/v2/{NAME}/manifests/{digest}"
    refs = [digest] + (["v1"] if by == "tag" else [])
    for ref in refs:
        g = await client.get(f"/v2/{NAME}/manifests/{ref}", headers={"Accept": media_type})
        assert g.status == 200
        assert await g.read() == body
        assert g.headers["Content-Type"] == media_type
        assert g.headers["Docker-Content-Digest"] == digest
        assert g.headers["Content-Length"] == str(len(body))
        h = await client.head(f"/v2/{NAME}/manifests/{ref}", headers={"Accept": media_type})
        assert h.status == 200
        assert await h.read() == b""
        assert representation_headers(h) == representation_headers(g)
        assert g.headers["ETag"] == f'"{digest}"'
    if by == "digest":
        assert await tags_of(client) == []
    else:
        assert await tags_of(client) == ["v1"]


async def test_put_by_sha512_digest(client):
    body = await image_body(client, NAME)
    digest = "sha512:" + hashlib.sha512(body).hexdigest()
    r = await put(client, digest, body, OCI_MANIFEST)
    assert r.status == 201, await r.text()
    assert r.headers["Docker-Content-Digest"] == digest
    g = await client.get(f"/v2/{NAME}/manifests/{digest}")
    assert await g.read() == body


async def test_put_without_content_type_uses_body_media_type(client):
    body = await image_body(client, NAME)
    r = await put(client, "v1", body, None)
    assert r.status == 201, await r.text()
    g = await client.get(f"/v2/{NAME}/manifests/v1")
    assert g.headers["Content-Type"] == OCI_MANIFEST


async def test_media_type_mismatch(client):
    body = await image_body(client, NAME, OCI_MANIFEST)
    r = await put(client, "v1", body, DOCKER_MANIFEST)
    assert r.status == 400
    assert await error_code(r) == "MANIFEST_INVALID"
    assert await tags_of(client) == []


async def test_invalid_manifest(client):
    for body in [b"{not json", b"[1, 2]", b"\xff\xfe", b"{}",
                 b'{"schemaVersion": 3, "mediaType": "application/vnd.oci.image.manifest.v1+json"}',
                 b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": []}']:
        r = await put(client, "v1", body, OCI_MANIFEST)
        assert r.status == 400, body
        assert await error_code(r) == "MANIFEST_INVALID", body
    assert await tags_of(client) == []


async def test_empty_manifest(client):
    r = await put(client, "v1", b"", OCI_MANIFEST)
    assert r.status == 400
    assert await error_code(r) == "MANIFEST_INVALID"


async def test_missing_blob(client):
    body = json.loads(await image_body(client, NAME))
    missing = sha256(b"never pushed")
    body["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": missing, "size": 12})
    raw = json.dumps(body).encode()
    r = await put(client, "v1", raw, OCI_MANIFEST)
    assert r.status == 400
    assert await error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    assert await tags_of(client) == []
    r = await client.get(f"/v2/{NAME}/manifests/{sha256(raw)}")
    assert r.status == 404
    assert await error_code(r) == "MANIFEST_UNKNOWN"
    r = await client.get(f"/v2/{NAME}/manifests/v1")
    assert r.status == 404
    assert await error_code(r) == "MANIFEST_UNKNOWN"


async def test_missing_blob_in_new_repository_creates_nothing(client):
    body = await image_body(client, "elsewhere/repo")  # blobs are in another repository
    r = await put(client, "v1", body, OCI_MANIFEST, name="fresh/repo")
    assert r.status == 400
    assert await error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    r = await client.get("/v2/fresh/repo/manifests/v1")
    assert r.status == 404
    r = await client.get("/v2/fresh/repo/tags/list")
    assert r.status == 404
    assert await error_code(r) == "NAME_UNKNOWN"


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
async def test_index_with_absent_child(client, media_type):
    child_type = OCI_MANIFEST if media_type == OCI_INDEX else DOCKER_MANIFEST
    present = await image_body(client, NAME, child_type, seed="a")
    assert (await put(client, sha256(present), present, child_type)).status == 201
    absent = await image_body(client, NAME, child_type, seed="b")  # blobs pushed, manifest not
    body = index_body([(child_type, present), (child_type, absent)], media_type)
    r = await put(client, "multi", body, media_type)
    assert r.status == 400
    assert await error_code(r) == "MANIFEST_BLOB_UNKNOWN"
    assert await tags_of(client) == []
    assert (await client.get(f"/v2/{NAME}/manifests/{sha256(body)}")).status == 404


async def test_too_large(client):
    body = await image_body(client, NAME, annotations={"pad": "x" * (4 * 1024 * 1024)})
    r = await put(client, "big", body, OCI_MANIFEST)
    assert r.status == 413
    assert await error_code(r) == "SIZE_INVALID"
    assert await tags_of(client) == []


async def test_too_large_chunked(client):
    body = await image_body(client, NAME, annotations={"pad": "x" * (4 * 1024 * 1024)})

    async def gen():
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    r = await client.put(f"/v2/{NAME}/manifests/big", data=gen(), headers={"Content-Type": OCI_MANIFEST})
    assert r.status == 413
    assert await error_code(r) == "SIZE_INVALID"


async def test_just_under_the_limit(client):
    base = await image_body(client, NAME, annotations={"pad": ""})
    pad = 4 * 1024 * 1024 - len(base)
    body = await image_body(client, NAME, annotations={"pad": "x" * pad})
    assert len(body) == 4 * 1024 * 1024
    r = await put(client, "big", body, OCI_MANIFEST)
    assert r.status == 201, await r.text()


async def test_digest_mismatch(client):
    body = await image_body(client, NAME)
    wrong = sha256(body + b" ")
    r = await put(client, wrong, body, OCI_MANIFEST)
    assert r.status == 400
    assert await error_code(r) == "DIGEST_INVALID"
    assert (await client.get(f"/v2/{NAME}/manifests/{wrong}")).status == 404
    assert (await client.get(f"/v2/{NAME}/manifests/{sha256(body)}")).status == 404


@pytest.mark.parametrize(
    "content_type",
    ["application/vnd.docker.distribution.manifest.v1+json", "application/vnd.docker.distribution.manifest.v1+prettyjws"],
)
async def test_schema1_refused(client, content_type):
    body = json.dumps({"schemaVersion": 1, "name": NAME, "tag": "v1", "fsLayers": [], "history": []}).encode()
    r = await put(client, "v1", body, content_type)
    assert r.status == 415  # docs/api.md: Docker schema 1 manifest → 415 UNSUPPORTED
    assert await error_code(r) == "UNSUPPORTED"
    assert await tags_of(client) == []


async def test_get_unknown(client):
    await push_image(client, NAME, "v1")
    r = await client.get(f"/v2/{NAME}/manifests/v2")
    assert r.status == 404
    assert await error_code(r) == "MANIFEST_UNKNOWN"
    r = await client.get(f"/v2/{NAME}/manifests/sha256:{'d' * 64}")
    assert r.status == 404
    assert await error_code(r) == "MANIFEST_UNKNOWN"
    r = await client.head(f"/v2/{NAME}/manifests/v2")
    assert r.status == 404
    r = await client.get("/v2/no/such/repo/manifests/v1")
    assert r.status == 404
    assert await error_code(r) == "NAME_UNKNOWN"


async def test_manifest_not_visible_from_another_repository(client):
    digest, *_ = await push_image(client, "tenant-a/app", "v1")
    await push_image(client, "tenant-b/app", "other")
    r = await client.get(f"/v2/tenant-b/app/manifests/{digest}")
    assert r.status == 404
    assert await error_code(r) == "MANIFEST_UNKNOWN"


async def test_invalid_references(client):
    r = await client.get(f"/v2/{NAME}/manifests/sha256:abc")
    assert r.status == 400
    assert await error_code(r) == "DIGEST_INVALID"
    r = await put(client, "-bad", b"{}", OCI_MANIFEST)
    assert r.status == 400
    assert await error_code(r) == "TAG_INVALID"


async def test_delete_by_tag_removes_only_the_tag(client):
    digest, body, *_ = await push_image(client, NAME, "v1")
    r = await put(client, "v2", body, OCI_MANIFEST)
    assert r.status == 201
    r = await client.delete(f"/v2/{NAME}/manifests/v1")
    assert r.status == 202
    assert await tags_of(client) == ["v2"]
    assert (await client.get(f"/v2/{NAME}/manifests/v1")).status == 404
    g = await client.get(f"/v2/{NAME}/manifests/{digest}")
    assert g.status == 200
    assert await g.read() == body
    r = await client.delete(f"/v2/{NAME}/manifests/v1")
    assert r.status == 404
    assert await error_code(r) == "MANIFEST_UNKNOWN"


async def test_delete_by_digest_removes_manifest_and_tags(client):
    digest, body, *_ = await push_image(client, NAME, "v1")
    assert (await put(client, "v2", body, OCI_MANIFEST)).status == 201
    other, *_ = await push_image(client, NAME, "keep")
    r = await client.delete(f"/v2/{NAME}/manifests/{digest}")
    assert r.status == 202
    for ref in (digest, "v1", "v2"):
        r = await client.get(f"/v2/{NAME}/manifests/{ref}")
        assert r.status == 404
        assert await error_code(r) == "MANIFEST_UNKNOWN"
    assert await tags_of(client) == ["keep"]
    assert (await client.get(f"/v2/{NAME}/manifests/{other}")).status == 200
    r = await client.delete(f"/v2/{NAME}/manifests/{digest}")
    assert r.status == 404
    assert await error_code(r) == "MANIFEST_UNKNOWN"


async def test_delete_unknown_repository(client):
    r = await client.delete(f"/v2/no/repo/manifests/sha256:{'e' * 64}")
    assert r.status == 404
    assert await error_code(r) == "NAME_UNKNOWN"


async def test_delete_manifest_listed_by_index_is_refused(client):
    child = await image_body(client, NAME)
    assert (await put(client, sha256(child), child, OCI_MANIFEST)).status == 201
    index = index_body([(OCI_MANIFEST, child)])
    assert (await put(client, "multi", index, OCI_INDEX)).status == 201
    r = await client.delete(f"/v2/{NAME}/manifests/{sha256(child)}")
    assert r.status == 405
    assert await error_code(r) == "UNSUPPORTED"
    assert (await client.get(f"/v2/{NAME}/manifests/{sha256(child)}")).status == 200
    # deleting the index first frees the child
    assert (await client.delete(f"/v2/{NAME}/manifests/{sha256(index)}")).status == 202
    assert (await client.delete(f"/v2/{NAME}/manifests/{sha256(child)}")).status == 202


async def test_tag_moves_to_new_manifest(client):
    d1, b1, *_ = await push_image(client, NAME, "latest", layers=1)
    d2, b2, *_ = await push_image(client, NAME, "latest", layers=2)
    assert d1 != d2
    g = await client.get(f"/v2/{NAME}/manifests/latest")
    assert g.headers["Docker-Content-Digest"] == d2
    assert await g.read() == b2
    assert await tags_of(client) == ["latest"]
    # the old manifest is still there by digest
    g = await client.get(f"/v2/{NAME}/manifests/{d1}")
    assert g.status == 200
    assert await g.read() == b1


async def test_put_same_manifest_twice_is_idempotent(client):
    body = await image_body(client, NAME)
    for _ in range(2):
        r = await put(client, "v1", body, OCI_MANIFEST)
        assert r.status == 201
        assert r.headers["Docker-Content-Digest"] == sha256(body)
    assert await tags_of(client) == ["v1"]


async def test_subject_header(client):
    subject_digest, subject_body, *_ = await push_image(client, NAME, "v1")
    body = await image_body(
        client, NAME, seed="sig",
        subject={"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": len(subject_body)},
    )
    r = await put(client, sha256(body), body, OCI_MANIFEST)
    assert r.status == 201, await r.text()
    assert r.headers["OCI-Subject"] == subject_digest


async def test_subject_accepted_when_absent(client):
    absent = sha256(b"no such manifest")
    body = await image_body(client, NAME, seed="sig", subject={"mediaType": OCI_MANIFEST, "digest": absent, "size": 100})
    r = await put(client, sha256(body), body, OCI_MANIFEST)
    assert r.status == 201, await r.text()
    assert r.headers["OCI-Subject"] == absent


async def test_no_subject_no_header(client):
    body = await image_body(client, NAME)
    r = await put(client, "v1", body, OCI_MANIFEST)
    assert r.status == 201
    assert "OCI-Subject" not in r.headers


async def test_foreign_layers_need_not_be_pushed(client):
    doc = json.loads(await image_body(client, NAME, DOCKER_MANIFEST))
    doc["layers"].append({
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "digest": sha256(b"windows base layer"),
        "size": 18,
        "urls": ["https://example.invalid/layer"],
    })
    body = json.dumps(doc).encode()
    r = await put(client, "win", body, DOCKER_MANIFEST)
    assert r.status == 201, await r.text()


# ---- a manifest with more references than one SQL statement may bind (issue 9, item 3) -------
# PostgreSQL binds at most 32,767 parameters per statement, SQLite 32,766: a manifest under the
# 4 MiB limit can name ~33,000 blobs. Both databases must answer the same, documented way.
MANY = 33_000


def _many_digests(n: int, seed: str = "") -> list[str]:
    return [sha256(f"{seed}{i}".encode()) for i in range(n)]


async def _link_directly(client, name: str, digests: list[str]) -> None:
    """Link ``digests`` to ``name`` as pushes would (rows only: a manifest PUT reads no blob bytes)."""
    import time

    from sqlalchemy import insert, select

    from registry.services import SERVICES
    from storage.models import Blob, Repository, RepositoryBlob

    await push_blob(client, name, b"creates the repository")

    def run(conn):
        rid = conn.execute(select(Repository.id).where(Repository.name == name)).scalar_one()
        now = time.time()
        conn.execute(insert(Blob), [{"digest": d, "size": 1, "created_at": now} for d in digests])
        conn.execute(insert(RepositoryBlob), [{"repository_id": rid, "digest": d, "created_at": now} for d in digests])

    await client.app[SERVICES].db.write(run)


def _huge_manifest(layers: list[str]) -> bytes:
    cfg = layers[0]
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 1},
        # a short (valid) media type keeps 33,000 descriptors under the 4 MiB limit
        "layers": [{"mediaType": "x/y", "digest": d, "size": 1} for d in layers[1:]],
    }
    body = json.dumps(doc, separators=(",", ":")).encode()
    assert 3_500_000 < len(body) < 4 * 1024 * 1024, len(body)
    return body


async def test_manifest_with_33000_references(client):
    digests = _many_digests(MANY)
    await _link_directly(client, NAME, digests)
    body = _huge_manifest(digests)
    r = await put(client, "huge", body, OCI_MANIFEST)
    assert r.status == 201, await r.text()
    assert r.headers["Docker-Content-Digest"] == sha256(body)
    r = await client.get(f"/v2/{NAME}/manifests/huge")
    assert r.status == 200
    assert await r.read() == body
    assert r.headers["Docker-Content-Digest"] == sha256(body)
    # every reference was recorded: each blob is now protected from deletion
    for d in (digests[0], digests[16_000], digests[-1]):
        r = await client.delete(f"/v2/{NAME}/blobs/{d}")
        assert r.status == 405, d
        assert await error_code(r) == "UNSUPPORTED"
    # and deleting the manifest releases them all
    assert (await client.delete(f"/v2/{NAME}/manifests/{sha256(body)}")).status == 202
    assert (await client.delete(f"/v2/{NAME}/blobs/{digests[-1]}")).status == 202


async def test_manifest_with_33000_references_some_missing(client):
    digests = _many_digests(MANY)
    missing = [digests[1], digests[20_000], digests[32_767], digests[-1]]
    await _link_directly(client, NAME, [d for d in digests if d not in missing])
    body = _huge_manifest(digests)
    r = await put(client, "huge", body, OCI_MANIFEST)
    assert r.status == 400, await r.text()
    err = (await r.json())["errors"][0]
    assert err["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert err["detail"] == {"missing": missing}
    assert (await client.get(f"/v2/{NAME}/manifests/huge")).status == 404


async def test_manifest_with_33000_references_none_known(client):
    digests = _many_digests(MANY, seed="absent")
    body = _huge_manifest(digests)
    r = await put(client, "huge", body, OCI_MANIFEST)
    assert r.status == 400, await r.text()
    err = (await r.json())["errors"][0]
    assert err["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert err["detail"] == {"missing": digests}
    assert await tags_of(client) == []
