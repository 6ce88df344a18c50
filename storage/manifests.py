"""Parse and validate manifests (pure; no I/O).

Supported: OCI image manifest and image index (image-spec v1.1), Docker image
manifest v2 schema 2 and Docker manifest list. The parser extracts what the
registry must check and index: referenced blobs, child manifests, subject,
artifactType and annotations.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from . import digest as digests
from . import jsonlimits
from .errors import ManifestInvalid, Unsupported

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = IMAGE_TYPES + INDEX_TYPES

# layers that are, by design, not stored in a registry (fetched from their `urls`)
_FOREIGN_LAYERS = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)


@dataclass
class Descriptor:
    media_type: str
    digest: str
    size: int


@dataclass
class ParsedManifest:
    media_type: str
    blobs: list[str] = field(default_factory=list)  # must be present in the repository
    manifests: list[str] = field(default_factory=list)  # children that must be present
    subject: Descriptor | None = None
    artifact_type: str | None = None  # as the referrers API reports it
    annotations: dict | None = None


def _descriptor(obj: object, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise ManifestInvalid(f"{where}: descriptor must be an object")
    media_type = obj.get("mediaType")
    digest = obj.get("digest")
    size = obj.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestInvalid(f"{where}: descriptor needs a mediaType")
    if not isinstance(digest, str):
        raise ManifestInvalid(f"{where}: descriptor needs a digest")
    try:
        digests.parse(digest)
    except Exception:
        raise ManifestInvalid(f"{where}: invalid digest {digest!r}") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(f"{where}: descriptor needs a non-negative integer size")
    return Descriptor(media_type, digest, size)


def _annotations(doc: dict) -> dict | None:
    a = doc.get("annotations")
    if a is None:
        return None
    if not isinstance(a, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in a.items()):
        raise ManifestInvalid("annotations must map strings to strings")
    return a


def detect_media_type(doc: dict, content_type: str | None) -> str:
    """The manifest's media type from its body and the request's Content-Type.

    A ``mediaType`` in the body must agree with the Content-Type when both are
    given; without either, the shape of the document decides.
    """
    ct = (content_type or "").split(";")[0].strip().lower() or None
    body_type = doc.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise ManifestInvalid("mediaType must be a string")
    if ct in DOCKER_SCHEMA1 or body_type in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise Unsupported("Docker image manifest schema 1 is not supported; push schema 2 or OCI")
    if body_type and ct and ct in MANIFEST_TYPES and body_type != ct:
        raise ManifestInvalid(f"mediaType {body_type!r} does not match Content-Type {ct!r}")
    media_type = body_type or (ct if ct in MANIFEST_TYPES else None)
    if media_type is None:
        if "manifests" in doc:
            media_type = OCI_INDEX
        elif "config" in doc or "layers" in doc:
            media_type = OCI_MANIFEST
        else:
            raise ManifestInvalid("cannot tell the manifest's media type (no mediaType, no known Content-Type)")
    if media_type not in MANIFEST_TYPES:
        raise ManifestInvalid(f"unsupported manifest media type {media_type!r}")
    return media_type


_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")  # a \uD800-\uDFFF escape somewhere in the body


def _has_lone_surrogate(doc) -> bool:
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")  # a paired escape became one character
    except UnicodeEncodeError:
        return True
    return False


def parse(body: bytes, content_type: str | None) -> ParsedManifest:
    try:
        doc = jsonlimits.loads(body)  # nesting depth and number length capped: never RecursionError
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestInvalid(f"manifest is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ManifestInvalid("manifest must be a JSON object")
    if _SURROGATE_ESCAPE.search(body) and _has_lone_surrogate(doc):
        # "\udcff" is valid JSON text but no Unicode: PostgreSQL refuses it in a text column (a 500
        # found by `make fuzz N=10000` in artifactType); UTF-8 bytes cannot hold one, only escapes
        raise ManifestInvalid("manifest holds a string that is not valid Unicode (a lone surrogate escape)")
    media_type = detect_media_type(doc, content_type)
    if doc.get("schemaVersion") != 2:
        raise ManifestInvalid("schemaVersion must be 2")
    result = ParsedManifest(media_type=media_type, annotations=_annotations(doc))

    at = doc.get("artifactType")
    if at is not None and not isinstance(at, str):
        raise ManifestInvalid("artifactType must be a string")

    if media_type in IMAGE_TYPES:
        config = _descriptor(doc.get("config"), "config")
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise ManifestInvalid("layers must be an array")
        if media_type == DOCKER_MANIFEST and not layers:
            raise ManifestInvalid("a Docker image manifest needs at least one layer")
        result.blobs.append(config.digest)
        seen = {config.digest}  # a list lookup would make 33,000 layers cost seconds
        for i, raw in enumerate(layers):
            d = _descriptor(raw, f"layers[{i}]")
            if d.media_type in _FOREIGN_LAYERS and raw.get("urls"):
                continue
            if d.digest not in seen:
                seen.add(d.digest)
                result.blobs.append(d.digest)
        result.artifact_type = at or config.media_type
    else:
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise ManifestInvalid("manifests must be an array")
        seen = set()
        for i, raw in enumerate(children):
            d = _descriptor(raw, f"manifests[{i}]")
            if d.digest not in seen:
                seen.add(d.digest)
                result.manifests.append(d.digest)
        result.artifact_type = at

    if "subject" in doc and doc["subject"] is not None:
        if media_type not in (OCI_MANIFEST, OCI_INDEX):
            raise ManifestInvalid("subject is only defined for OCI manifests")
        result.subject = _descriptor(doc["subject"], "subject")
    return result
