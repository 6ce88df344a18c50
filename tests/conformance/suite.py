"""Shared data, knobs and HTTP helper of the conformance port.

Ports, from https://github.com/opencontainers/distribution-spec (directory ``conformance/``):

* ``setup.go``   — the test content (configs, manifests, layer, chunked blob, referrer
  artifacts, dummy digest, error-code list) and the environment knobs;
* ``image.go``   — the JSON shapes the Go suite marshals (field order, ``data`` and the
  deliberately unknown ``newUnspecifiedField`` on every descriptor);
* the parts of the ``reggie`` client the suite relies on: relative ``Location``
  handling, query parameters merged into a Location, ``resp.Errors()``.

Versions ported (the newest stored upstream version of each file of the 00–04 family;
the later rewrite — 01_base_api_route_test.go, api.go, state.go, … — is not ported):

* ``00_conformance_suite_test.go`` @ 81bb239e0c8eebab51ad43171bf99fc1a39fea6e
* ``01_pull_test.go``              @ 47008ca930b575b3f1cd422414c00d3b0752a7cb
* ``02_push_test.go``              @ 11b8e3fba7d2d7329513d0cff53058243c334858
* ``03_discovery_test.go``         @ b5f09ebe541c65857e8721d51a7a3d0e2f1d8749
* ``04_management_test.go``        @ 3c7a4ac8186fe1307bac6857bfdb48fc190ed57f
* ``setup.go``                     @ b5f09ebe541c65857e8721d51a7a3d0e2f1d8749
* ``image.go``                     @ 3ec8a56d897bb89d482b41d4aac6ba01519f55f2

Refreshed 2026-12-01 (issue 9): the commits above are the newest versions of these files
stored under opencontainers/distribution-spec in the code index this port was checked
against, but the current suite has checks they lack. They are ported from the later copies
of the same files the index holds (under forks that track upstream, e.g.
Silvanoc/distribution-spec; the index gives their text, not their upstream commit, so no
newer upstream hash can be pinned here):

* 02_push_test.go, "PATCH request with second chunk should return 202": ``Range`` must be
  ``0-<len(blob)-1>`` after the second chunk (test_push.py);
* 03_discovery_test.go, "Populate registry with test tags": each tag pushed as ``test<i>``
  and ``TEST<i>``; "GET request to list tags should yield 200 response and be in sorted
  order": the list equals its case-insensitive stable sort or its byte-order sort;
  "GET start of tag is set by `last`": the second page is re-read, at most n tags and
  not ``last`` itself (test_discovery.py);
* 04_management_test.go, "GET request to tags list should reflect manifest deletion":
  exactly ``numTags-1`` tags after the one tag delete, or 404 only when none remain
  (test_management.py).

Left out, because they are fork-only features, not checks of the current upstream files:
push-side setup uploads of the empty JSON and reference blobs, artifact manifests with
``artifactType`` / custom config ``mediaType``, image index and nested index PUTs, a
dangling-subject PUT, 4 MB blobs (``refsManifestConfigTypeDigest``,
``testBlob4MBDigest``, … are defined by no upstream setup.go in the index).

``00_conformance_suite_test.go`` (the Ginkgo runner calling the four workflows in order)
maps onto pytest itself: one module per workflow (test_pull.py, test_push.py,
test_discovery.py, test_management.py), each ``g.Specify`` one test function, run in
file order against one module-scoped registry (tests/conformance/conftest.py).
``reporter.go`` (HTML report) is not ported: ``pytest --junitxml`` covers the JUnit half.

Differences that come from the language, not from the checks:

* Content is built the way setup.go builds it (random config ``author`` so digests are
  unique per run, ``json.MarshalIndent(..., "", "\\t")`` layout), but Go's math/rand
  stream cannot be reproduced, so the "random" blobs differ byte-wise (same sizes).
* The layer tarball is generated here (a gzip'd tar holding one small text file, as the
  comment in setup.go describes) instead of embedding the Go suite's base64 constant.
* Where the Go suite sets a ``Content-Length`` header on a request *without* a body,
  Go's net/http drops that header and sends ``Content-Length: 0``; so do we.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import random
import secrets
import tarfile
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient
from multidict import CIMultiDictProxy
from yarl import URL

# ---- knobs (setup.go's environment variables) ---------------------------------------


def _env_bool(name: str, default: bool | None) -> bool | None:
    """strconv.ParseBool semantics; unset → default."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if raw in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return False  # Go ignores the parse error and keeps false


#: OCI_NAMESPACE — the repository every workflow uses.
NAMESPACE = os.environ.get("OCI_NAMESPACE", "berth/conformance")
#: OCI_CROSSMOUNT_NAMESPACE — defaults, as in setup.go, to "conformance-<uuid>".
CROSSMOUNT_NAMESPACE = os.environ.get("OCI_CROSSMOUNT_NAMESPACE") or f"conformance-{uuid.uuid4()}"
#: OCI_DELETE_MANIFEST_BEFORE_BLOBS — setup.go defaults it to true (the README says the
#: opposite; the code wins). With false, every teardown deletes blobs while manifests
#: still reference them — see the report in test_pull.py's docstring for what Berth does.
DELETE_MANIFEST_BEFORE_BLOBS = _env_bool("OCI_DELETE_MANIFEST_BEFORE_BLOBS", True)
#: OCI_AUTOMATIC_CROSSMOUNT — set → the automatic-mount checks run; its value says
#: whether the registry mounts without ``from``. Berth does not (a mount needs ``from``
#: and pull access to it), so we run the check expecting "disabled" unless told otherwise.
AUTOMATIC_CROSSMOUNT_ENABLED = _env_bool("OCI_AUTOMATIC_CROSSMOUNT", False)
RUN_AUTOMATIC_CROSSMOUNT_TEST = True
#: OCI_SHARED_REGISTRY (ours, not the Go suite's) — one registry for all workflow modules.
SHARED_REGISTRY = bool(_env_bool("OCI_SHARED_REGISTRY", False))
#: OCI_ROOT_URL — set (e.g. http://127.0.0.1:5001): the workflows talk to that registry over
#: real HTTP instead of an in-process Berth. Same checks, same expectations (Berth's).
ROOT_URL = os.environ.get("OCI_ROOT_URL", "").rstrip("/")
REMOTE = bool(ROOT_URL)
#: OCI_USERNAME / OCI_PASSWORD — Basic auth on every request (remote mode only; reggie
#: would also follow a Bearer challenge, which is not ported).
USERNAME = os.environ.get("OCI_USERNAME", "")
PASSWORD = os.environ.get("OCI_PASSWORD", "")
#: OCI_TEST_PULL / _PUSH / _CONTENT_DISCOVERY / _CONTENT_MANAGEMENT — as in setup.go a
#: workflow runs only when its variable parses true, and the others are skipped; unlike
#: the Go suite, when none of the four is set all four run (the in-process default).
WORKFLOW_ENV = {
    "pull": "OCI_TEST_PULL",
    "push": "OCI_TEST_PUSH",
    "content discovery": "OCI_TEST_CONTENT_DISCOVERY",
    "content management": "OCI_TEST_CONTENT_MANAGEMENT",
}
_WORKFLOW_SWITCHES = {w: _env_bool(v, None) for w, v in WORKFLOW_ENV.items()}


def workflow_enabled(workflow: str) -> bool:
    """setup.go SkipIfDisabled, except that no switch at all means every workflow."""
    if all(v is None for v in _WORKFLOW_SWITCHES.values()):
        return True
    return bool(_WORKFLOW_SWITCHES[workflow])


def skip_if_disabled(workflow: str):
    """The module mark for setup.go ``SkipIfDisabled(<workflow>)``."""
    return pytest.mark.skipif(not workflow_enabled(workflow),
                              reason=f"{WORKFLOW_ENV[workflow]} is not true (SkipIfDisabled)")

#: the event loop the tests and the registry fixture share
LOOP_SCOPE = "session" if SHARED_REGISTRY else "module"

# ---- media types ---------------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCTET = "application/octet-stream"

# error codes the Go suite accepts in an error body (setup.go ``errorCodes``)
ERROR_CODES = (
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "MANIFEST_UNVERIFIED",
    "NAME_INVALID", "NAME_UNKNOWN", "SIZE_INVALID", "TAG_INVALID", "UNAUTHORIZED",
    "DENIED", "UNSUPPORTED",
)

TEST_TAG_NAME = "tagtest0"
EMPTY_LAYER_TEST_TAG = "emptylayer"
NONEXISTENT_MANIFEST = ".INVALID_MANIFEST_NAME"
INVALID_MANIFEST_CONTENT = b"blablabla"
ARTIFACT_TYPE_FILTER = "artifactType"
# setup.go makes one config and one manifest per "workflow" in a loop bounded by
# ``numWorkflows``, which is the iota *bit* after the four workflow bits: 1<<4 = 16.
# So there are 16 of each (discovery relies on manifests[3] and manifests[4]).
NUM_WORKFLOWS = 16


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def go_json(obj: Any) -> bytes:
    """json.MarshalIndent(obj, "", "\\t") for the shapes used here."""
    return json.dumps(obj, indent="\t").encode()


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def descriptor(
    media_type: str,
    digest: str,
    size: int,
    *,
    annotations: dict[str, str] | None = None,
    data: bytes | None = None,
    artifact_type: str | None = None,
    new_unspecified_field: bytes | None = None,
) -> dict:
    """image.go ``descriptor``: omitempty fields dropped; newUnspecifiedField always present."""
    d: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if annotations:
        d["annotations"] = annotations
    if data:
        d["data"] = _b64(data)
    if artifact_type:
        d["artifactType"] = artifact_type
    d["newUnspecifiedField"] = _b64(new_unspecified_field)  # nil []byte marshals as null
    return d


def image_manifest(config: dict, layers: list[dict], *, media_type: str | None = OCI_MANIFEST,
                   artifact_type: str | None = None, subject: dict | None = None,
                   annotations: dict[str, str] | None = None) -> bytes:
    m: dict[str, Any] = {"schemaVersion": 2}
    if media_type:
        m["mediaType"] = media_type
    if artifact_type:
        m["artifactType"] = artifact_type
    m["config"] = config
    m["layers"] = layers
    if subject:
        m["subject"] = subject
    if annotations:
        m["annotations"] = annotations
    return go_json(m)


def image_index(manifests: list[dict], *, artifact_type: str | None = None, subject: dict | None = None,
                annotations: dict[str, str] | None = None) -> bytes:
    m: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX}
    if artifact_type:
        m["artifactType"] = artifact_type
    m["manifests"] = manifests
    if subject:
        m["subject"] = subject
    if annotations:
        m["annotations"] = annotations
    return go_json(m)


@dataclass(frozen=True)
class TestBlob:
    """setup.go TestBlob: content with its digest and length."""

    __test__ = False  # not a pytest test class
    content: bytes

    @property
    def digest(self) -> str:
        return digest_of(self.content)

    @property
    def length(self) -> int:
        return len(self.content)


def _random_string(n: int) -> str:
    letters = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-"
    return "".join(secrets.choice(letters) for _ in range(n))


def random_blob(size: int, seed: int) -> bytes:
    """setup.go randomBlob: reproducible bytes for a seed (Python's PRNG, not Go's)."""
    return random.Random(seed).randbytes(size)


def _layer_tarball() -> bytes:
    """A tar.gz with one small text file (what setup.go's layerBase64String encodes)."""
    text = b"you bothered to find out what was in here. Congratulations!\n"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("test.txt")
        info.size = len(text)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(text))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


@dataclass(frozen=True)
class ChunkedBlob:
    """setup.go setupChunkedBlob: a blob split after size/2+1 bytes."""

    blob: bytes

    @classmethod
    def make(cls, size: int, seed: int) -> "ChunkedBlob":
        return cls(random_blob(size, seed))

    @property
    def digest(self) -> str:
        return digest_of(self.blob)

    @property
    def chunk1(self) -> bytes:
        return self.blob[: len(self.blob) // 2 + 1]

    @property
    def chunk2(self) -> bytes:
        return self.blob[len(self.blob) // 2 + 1:]

    @property
    def chunk1_range(self) -> str:
        return f"0-{len(self.chunk1) - 1}"

    @property
    def chunk2_range(self) -> str:
        return f"{len(self.chunk1)}-{len(self.blob) - 1}"


@dataclass
class Content:
    """Everything setup.go's init() prepares."""

    seed: int
    configs: list[TestBlob]
    manifests: list[TestBlob]
    layer: TestBlob
    empty_layer_manifest: TestBlob
    blob_a: TestBlob
    blob_b: ChunkedBlob
    empty_json: TestBlob
    ref_blob_a: TestBlob
    ref_blob_b: TestBlob
    ref_artifact_type_a: str
    ref_artifact_type_b: str
    ref_artifact_type_index: str
    refs_manifest_a_config: TestBlob
    refs_manifest_b_config: TestBlob
    refs_manifest_a_layer: TestBlob
    refs_manifest_b_layer: TestBlob
    refs_manifest_c_layer: TestBlob
    refs_index: TestBlob
    annotation_key: str
    annotation_values: dict[str, str] = field(default_factory=dict)
    dummy_digest: str = digest_of(b"hello world")


def build_content(seed: int | None = None) -> Content:
    seed = random.randrange(1 << 62) if seed is None else seed

    # a unique config per workflow: a random author makes each digest unique per run
    configs = []
    for _ in range(NUM_WORKFLOWS):
        cfg = {
            "author": _random_string(16),
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
        }
        configs.append(TestBlob(go_json(cfg)))

    layer = TestBlob(_layer_tarball())
    layers = [descriptor(OCI_LAYER_GZIP, layer.digest, layer.length)]

    manifests = []
    for i in range(NUM_WORKFLOWS):
        cfg = descriptor(OCI_CONFIG, configs[i].digest, configs[i].length,
                         data=configs[i].content, new_unspecified_field=b"hello world")
        manifests.append(TestBlob(image_manifest(cfg, layers)))

    # push test: an image manifest with no layers (and no mediaType field)
    empty_cfg = descriptor(OCI_CONFIG, configs[1].digest, configs[1].length,
                           data=configs[1].content, new_unspecified_field=b"hello world")
    empty_layer_manifest = TestBlob(image_manifest(empty_cfg, [], media_type=None))

    blob_a = TestBlob(random_blob(42, seed + 1))
    blob_b = ChunkedBlob.make(42, seed + 2)

    # referrers
    empty_json = TestBlob(b"{}")
    empty_desc = descriptor(OCI_EMPTY, empty_json.digest, empty_json.length)
    ref_blob_a = TestBlob(b"NHL Peanut Butter on my NHL bagel")
    ref_blob_b = TestBlob(b"NBA Strawberry Jam on my NBA croissant")
    type_a = "application/vnd.nhl.peanut.butter.bagel"
    type_b = "application/vnd.nba.strawberry.jam.croissant"
    type_index = "application/vnd.food.stand"
    key = "org.opencontainers.conformance.test"
    values: dict[str, str] = {}

    def subject_of(m: TestBlob) -> dict:
        return descriptor(OCI_MANIFEST, m.digest, m.length)

    def remember(content: bytes, annotations: dict[str, str] | None) -> TestBlob:
        blob = TestBlob(content)
        if annotations:
            values[blob.digest] = annotations[key]
        return blob

    def referrer(config: dict, layers: list[dict], annotation: str | None, *, subject: TestBlob,
                 artifact_type: str | None = None) -> TestBlob:
        annotations = {key: annotation} if annotation else None
        return remember(image_manifest(config, layers, artifact_type=artifact_type, subject=subject_of(subject),
                                       annotations=annotations), annotations)

    ref_a_desc = descriptor(type_a, ref_blob_a.digest, ref_blob_a.length)
    ref_b_desc = descriptor(type_b, ref_blob_b.digest, ref_blob_b.length)
    # artifactType carried by config.mediaType
    a_config = referrer(ref_a_desc, [empty_desc], "test config a", subject=manifests[4])
    b_config = referrer(ref_b_desc, [empty_desc], "test config b", subject=manifests[4])
    # artifactType field set, config is the empty JSON descriptor
    a_layer = referrer(empty_desc, [ref_a_desc], "test layer a", subject=manifests[4], artifact_type=type_a)
    b_layer = referrer(empty_desc, [ref_b_desc], "test layer b", subject=manifests[4], artifact_type=type_b)
    # like b_layer, but its subject (manifests[3]) is never pushed; and no annotations
    c_layer = referrer(empty_desc, [ref_b_desc], None, subject=manifests[3], artifact_type=type_b)
    index = remember(image_index(
        [descriptor(OCI_MANIFEST, a_config.digest, a_config.length),
         descriptor(OCI_MANIFEST, a_layer.digest, a_layer.length)],
        artifact_type=type_index, subject=subject_of(manifests[4]), annotations={key: "test index"},
    ), {key: "test index"})

    return Content(
        seed=seed, configs=configs, manifests=manifests, layer=layer,
        empty_layer_manifest=empty_layer_manifest, blob_a=blob_a, blob_b=blob_b,
        empty_json=empty_json, ref_blob_a=ref_blob_a, ref_blob_b=ref_blob_b,
        ref_artifact_type_a=type_a, ref_artifact_type_b=type_b, ref_artifact_type_index=type_index,
        refs_manifest_a_config=a_config, refs_manifest_b_config=b_config,
        refs_manifest_a_layer=a_layer, refs_manifest_b_layer=b_layer, refs_manifest_c_layer=c_layer,
        refs_index=index, annotation_key=key, annotation_values=values,
    )


# ---- HTTP (what the suite uses of the reggie client) -----------------------------------


@dataclass
class Response:
    method: str
    url: str
    status: int
    headers: CIMultiDictProxy
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name, "")

    @property
    def location(self) -> str:
        return self.header("Location")

    def relative_location(self) -> str:
        """reggie GetRelativeLocation: path (+ query) of the Location header."""
        loc = URL(self.location)
        return loc.raw_path + (f"?{loc.raw_query_string}" if loc.raw_query_string else "")

    def json(self) -> Any:
        return json.loads(self.body)

    def errors(self) -> list[dict]:
        """reggie resp.Errors(): the ``errors`` array of an OCI error body."""
        return self.json()["errors"]

    def is_2xx(self) -> bool:
        return 200 <= self.status < 300

    def __str__(self) -> str:
        text = self.body[:300].decode("utf-8", "replace")
        return f"{self.method} {self.url} -> {self.status} {text!r}"


class Registry:
    """The reggie client of the Go suite, over aiohttp's in-process test client or, in
    remote mode, an ``aiohttp.ClientSession`` whose ``base_url`` is OCI_ROOT_URL (both
    take a path and answer the same response objects)."""

    def __init__(self, client: TestClient | ClientSession, content: Content) -> None:
        self.client = client
        self.content = content
        self.name = NAMESPACE
        self.state: dict[str, Any] = {}  # the Go workflows' closure variables

    async def request(self, method: str, path: str, *, query: dict[str, str] | None = None,
                      headers: dict[str, str] | None = None, body: bytes | None = None) -> Response:
        url = URL(path)
        if query:
            url = url.update_query(query)  # resty merges SetQueryParam into the URL's query
        r = await self.client.request(method, str(url), headers=headers or {}, data=body,
                                      allow_redirects=False)
        try:
            data = await r.read()
        finally:
            r.release()
        return Response(method, str(url), r.status, r.headers, data)

    # the workflows' recurring "POST an upload, PUT the bytes with ?digest=" setup step
    async def push_blob(self, data: bytes, digest: str | None = None, name: str | None = None) -> Response:
        start = await self.request("POST", f"/v2/{name or self.name}/blobs/uploads/")
        if not start.location:
            return start  # the POST failed: its answer says why (a PUT to "" would only say 404)
        return await self.request("PUT", start.relative_location(), query={"digest": digest or digest_of(data)},
                                  headers={"Content-Type": OCTET}, body=data)

    async def put_manifest(self, reference: str, content: bytes, media_type: str = OCI_MANIFEST) -> Response:
        return await self.request("PUT", f"/v2/{self.name}/manifests/{reference}",
                                  headers={"Content-Type": media_type}, body=content)

    async def delete(self, kind: str, reference: str) -> Response:
        return await self.request("DELETE", f"/v2/{self.name}/{kind}/{reference}")


# ---- assertions ----------------------------------------------------------------------


def expect_status(resp: Response, *allowed: int, why: str = "") -> None:
    assert resp.status in allowed, f"{why or 'status'}: expected one of {allowed}, got {resp}"


def expect_2xx(resp: Response, *also: int, why: str = "") -> None:
    """Ginkgo's SatisfyAny(SatisfyAll(>=200, <300), Equal(x)...)."""
    assert resp.is_2xx() or resp.status in also, f"{why or 'status'}: expected 2xx or {also}, got {resp}"
