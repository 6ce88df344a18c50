"""GET /v2/<name>/referrers/<digest>?artifactType=."""
from __future__ import annotations

import json

import pytest

from tests.conftest import error_code, push_blob, push_image, sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = b"{}"
NAME = "ref/repo"


async def push_referrer(client, subject: str, subject_size: int, *, artifact_type: str | None = None,
                        config_type: str = "application/vnd.oci.empty.v1+json", annotations: dict | None = None,
                        index: bool = False) -> tuple[str, int]:
    empty = await push_blob(client, NAME, EMPTY)
    if index:
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    else:
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": config_type, "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
        }
    if artifact_type:
        doc["artifactType"] = artifact_type
    if annotations:
        doc["annotations"] = annotations
    doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size}
    body = json.dumps(doc).encode()
    r = await client.put(f"/v2/{NAME}/manifests/{sha256(body)}", data=body,
                         headers={"Content-Type": doc["mediaType"]})
    assert r.status == 201, await r.text()
    assert r.headers["OCI-Subject"] == subject
    return sha256(body), len(body)


@pytest.fixture
async def subject(client):
    digest, body, *_ = await push_image(client, NAME, "v1")
    return digest, len(body)


async def test_referrers(client, subject):
    sd, ss = subject
    sig, sig_size = await push_referrer(client, sd, ss, artifact_type="application/vnd.example.sig",
                                        annotations={"org.example.signer": "alice"})
    sbom, sbom_size = await push_referrer(client, sd, ss, config_type="application/vnd.example.sbom")
    r = await client.get(f"/v2/{NAME}/referrers/{sd}")
    assert r.status == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    body = await r.json(content_type=None)
    assert body["schemaVersion"] == 2
    assert body["mediaType"] == OCI_INDEX
    assert "OCI-Filters-Applied" not in r.headers
    by_digest = {d["digest"]: d for d in body["manifests"]}
    assert set(by_digest) == {sig, sbom}
    assert by_digest[sig] == {
        "mediaType": OCI_MANIFEST,
        "digest": sig,
        "size": sig_size,
        "artifactType": "application/vnd.example.sig",
        "annotations": {"org.example.signer": "alice"},
    }
    # artifactType falls back to config.mediaType
    assert by_digest[sbom]["artifactType"] == "application/vnd.example.sbom"
    assert by_digest[sbom]["size"] == sbom_size
    assert "annotations" not in by_digest[sbom]


async def test_artifact_type_filter(client, subject):
    sd, ss = subject
    sig, _ = await push_referrer(client, sd, ss, artifact_type="application/vnd.example.sig")
    await push_referrer(client, sd, ss, artifact_type="application/vnd.example.sbom")
    r = await client.get(f"/v2/{NAME}/referrers/{sd}?artifactType=application/vnd.example.sig")
    assert r.status == 200
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    body = await r.json(content_type=None)
    assert [d["digest"] for d in body["manifests"]] == [sig]
    r = await client.get(f"/v2/{NAME}/referrers/{sd}?artifactType=application/none")
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert (await r.json(content_type=None))["manifests"] == []


async def test_index_referrer(client, subject):
    sd, ss = subject
    idx, _ = await push_referrer(client, sd, ss, artifact_type="application/vnd.example.bundle", index=True)
    r = await client.get(f"/v2/{NAME}/referrers/{sd}")
    (d,) = (await r.json(content_type=None))["manifests"]
    assert d["digest"] == idx
    assert d["mediaType"] == OCI_INDEX
    assert d["artifactType"] == "application/vnd.example.bundle"


async def test_referrer_to_absent_subject_listed(client):
    absent = sha256(b"not pushed yet")
    ref, _ = await push_referrer(client, absent, 10, artifact_type="application/vnd.example.sig")
    r = await client.get(f"/v2/{NAME}/referrers/{absent}")
    assert [d["digest"] for d in (await r.json(content_type=None))["manifests"]] == [ref]


async def test_unknown_digest_gives_empty_index(client, subject):
    r = await client.get(f"/v2/{NAME}/referrers/sha256:{'f' * 64}")
    assert r.status == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    assert await r.json(content_type=None) == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


async def test_referrers_are_per_repository(client, subject):
    sd, ss = subject
    await push_referrer(client, sd, ss, artifact_type="application/vnd.example.sig")
    r = await client.get(f"/v2/other/repo/referrers/{sd}")
    # docs/api.md: referrers always answer 200 with an index, empty for unknown repositories
    assert r.status == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    assert (await r.json(content_type=None))["manifests"] == []


async def test_deleted_referrer_disappears(client, subject):
    sd, ss = subject
    ref, _ = await push_referrer(client, sd, ss, artifact_type="application/vnd.example.sig")
    assert (await client.delete(f"/v2/{NAME}/manifests/{ref}")).status == 202
    r = await client.get(f"/v2/{NAME}/referrers/{sd}")
    assert (await r.json(content_type=None))["manifests"] == []


async def test_invalid_digest(client):
    r = await client.get(f"/v2/{NAME}/referrers/sha256:nope")
    assert r.status == 400
    assert await error_code(r) == "DIGEST_INVALID"
    r = await client.get(f"/v2/{NAME}/referrers/latest")
    assert r.status == 400
    assert await error_code(r) == "DIGEST_INVALID"
