"""storage.manifests.parse: every media type, references, subject, artifactType."""
from __future__ import annotations

import json

import pytest

from registry.errors import domain_code
from storage import manifests as m
from storage.digest import of_bytes
from storage.errors import ManifestInvalid, Unsupported

CFG = of_bytes(b"config")
L1 = of_bytes(b"layer1")
L2 = of_bytes(b"layer2")
FOREIGN = of_bytes(b"foreign")
C1 = of_bytes(b"child1")
C2 = of_bytes(b"child2")
SUBJ = of_bytes(b"subject")


def desc(media_type, digest, size=10, **extra):
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def image(media_type=m.OCI_MANIFEST, config_type="application/vnd.oci.image.config.v1+json", layers=None, **extra):
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": desc(config_type, CFG),
        "layers": layers if layers is not None else [
            desc("application/vnd.oci.image.layer.v1.tar+gzip", L1),
            desc("application/vnd.oci.image.layer.v1.tar+gzip", L2),
        ],
    }
    doc.update(extra)
    return doc


def index(media_type=m.OCI_INDEX, children=(C1, C2), **extra):
    doc = {"schemaVersion": 2, "mediaType": media_type,
           "manifests": [desc(m.OCI_MANIFEST, c, platform={"os": "linux", "architecture": "amd64"}) for c in children]}
    doc.update(extra)
    return doc


def parse(doc, content_type=None):
    return m.parse(json.dumps(doc).encode(), content_type)


@pytest.mark.parametrize("media_type", [m.OCI_MANIFEST, m.DOCKER_MANIFEST])
def test_image_manifest(media_type):
    p = parse(image(media_type), media_type)
    assert p.media_type == media_type
    assert p.blobs == [CFG, L1, L2]
    assert p.manifests == []
    assert p.subject is None


@pytest.mark.parametrize("media_type", [m.OCI_INDEX, m.DOCKER_LIST])
def test_index(media_type):
    p = parse(index(media_type), media_type)
    assert p.media_type == media_type
    assert p.manifests == [C1, C2]
    assert p.blobs == []


def test_duplicate_references_listed_once():
    layer = desc("application/vnd.oci.image.layer.v1.tar+gzip", L1)
    p = parse(image(layers=[layer, layer]))
    assert p.blobs == [CFG, L1]
    p = parse(index(children=(C1, C1)))
    assert p.manifests == [C1]


def test_media_type_from_content_type_when_body_has_none():
    doc = image()
    del doc["mediaType"]
    assert parse(doc, m.DOCKER_MANIFEST).media_type == m.DOCKER_MANIFEST
    assert parse(doc, m.OCI_MANIFEST + "; charset=utf-8").media_type == m.OCI_MANIFEST


def test_media_type_from_shape():
    doc = image()
    del doc["mediaType"]
    assert parse(doc).media_type == m.OCI_MANIFEST
    doc = index()
    del doc["mediaType"]
    assert parse(doc, "application/json").media_type == m.OCI_INDEX


def test_media_type_mismatch():
    with pytest.raises(ManifestInvalid):
        parse(image(m.OCI_MANIFEST), m.DOCKER_MANIFEST)
    with pytest.raises(ManifestInvalid):
        parse(index(m.OCI_INDEX), m.DOCKER_LIST)


def test_unknown_media_type():
    with pytest.raises(ManifestInvalid):
        parse(image("application/vnd.example+json"))
    doc = {"schemaVersion": 2, "foo": 1}
    with pytest.raises(ManifestInvalid):
        parse(doc)


@pytest.mark.parametrize("how", ["content_type", "body", "schema_version"])
def test_schema1_refused(how):
    doc = {"schemaVersion": 1, "name": "a", "tag": "b", "fsLayers": []}
    ct = None
    if how == "content_type":
        ct = m.DOCKER_SCHEMA1[0]
    elif how == "body":
        doc["mediaType"] = m.DOCKER_SCHEMA1[1]
    with pytest.raises(Unsupported) as e:
        parse(doc, ct)
    assert domain_code(e.value) == ("UNSUPPORTED", 415)


@pytest.mark.parametrize("body", [b"not json", b"[]", b"\xff", b"null", b'"str"'])
def test_not_a_json_object(body):
    with pytest.raises(ManifestInvalid):
        m.parse(body, m.OCI_MANIFEST)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(schemaVersion=3),
        lambda d: d.pop("schemaVersion"),
        lambda d: d.pop("config"),
        lambda d: d.update(layers="nope"),
        lambda d: d["config"].pop("digest"),
        lambda d: d["config"].update(digest="sha256:short"),
        lambda d: d["config"].update(size=-1),
        lambda d: d["config"].update(size="10"),
        lambda d: d["config"].update(size=True),
        lambda d: d["config"].pop("mediaType"),
        lambda d: d["layers"].append("not an object"),
        lambda d: d.update(annotations={"a": 1}),
        lambda d: d.update(annotations=["a"]),
        lambda d: d.update(artifactType=5),
        lambda d: d.update(mediaType=5),
        lambda d: d.update(subject={"digest": SUBJ}),
    ],
)
def test_invalid_image_manifest(mutate):
    doc = image()
    mutate(doc)
    with pytest.raises(ManifestInvalid):
        parse(doc, m.OCI_MANIFEST)


def test_docker_manifest_needs_a_layer():
    with pytest.raises(ManifestInvalid):
        parse(image(m.DOCKER_MANIFEST, layers=[]))
    assert parse(image(m.OCI_MANIFEST, layers=[])).blobs == [CFG]  # OCI artifacts may have none


def test_invalid_index():
    with pytest.raises(ManifestInvalid):
        parse({"schemaVersion": 2, "mediaType": m.OCI_INDEX, "manifests": {}})
    with pytest.raises(ManifestInvalid):
        parse({"schemaVersion": 2, "mediaType": m.OCI_INDEX, "manifests": [{"digest": C1}]})


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    ],
)
def test_foreign_layers_skipped(media_type):
    layers = [desc("application/vnd.oci.image.layer.v1.tar+gzip", L1),
              desc(media_type, FOREIGN, urls=["https://example.invalid/x"])]
    p = parse(image(layers=layers))
    assert p.blobs == [CFG, L1]


def test_foreign_layer_without_urls_is_required():
    layers = [desc("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", FOREIGN)]
    assert parse(image(m.DOCKER_MANIFEST, layers=layers)).blobs == [CFG, FOREIGN]


@pytest.mark.parametrize("maker,media_type", [(image, m.OCI_MANIFEST), (index, m.OCI_INDEX)])
def test_subject(maker, media_type):
    p = parse(maker(subject=desc(m.OCI_MANIFEST, SUBJ, 123)))
    assert p.subject == m.Descriptor(m.OCI_MANIFEST, SUBJ, 123)
    # the subject is not something the manifest requires to be present
    assert SUBJ not in p.blobs and SUBJ not in p.manifests


def test_null_subject_is_no_subject():
    assert parse(image(subject=None)).subject is None


@pytest.mark.parametrize("maker,media_type", [(image, m.DOCKER_MANIFEST), (index, m.DOCKER_LIST)])
def test_subject_only_for_oci(maker, media_type):
    with pytest.raises(ManifestInvalid):
        parse(maker(media_type, subject=desc(m.OCI_MANIFEST, SUBJ)))


def test_artifact_type_field_wins():
    p = parse(image(config_type="application/vnd.example.config", artifactType="application/vnd.example.sig"))
    assert p.artifact_type == "application/vnd.example.sig"


def test_artifact_type_from_config_media_type():
    p = parse(image(config_type="application/vnd.example.sbom.config"))
    assert p.artifact_type == "application/vnd.example.sbom.config"
    assert parse(image()).artifact_type == "application/vnd.oci.image.config.v1+json"


def test_artifact_type_of_index():
    assert parse(index()).artifact_type is None
    assert parse(index(artifactType="application/vnd.example.bundle")).artifact_type == "application/vnd.example.bundle"


def test_annotations():
    p = parse(image(annotations={"org.opencontainers.image.created": "2024-01-01"}))
    assert p.annotations == {"org.opencontainers.image.created": "2024-01-01"}
    assert parse(image()).annotations is None
