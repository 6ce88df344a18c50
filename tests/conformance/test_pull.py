"""Conformance workflow 1: Pull.

Port of opencontainers/distribution-spec ``conformance/01_pull_test.go``
@ 47008ca930b575b3f1cd422414c00d3b0752a7cb (``test01Pull``: contexts Setup, Pull blobs,
Pull manifests, Error codes, Teardown), with the data of ``conformance/setup.go`` (see
suite.py for the versions ported). One test per ``g.Specify``, in the Go order.

Not ported: "Get tag name from environment" (runs only when OCI_TAG_NAME,
OCI_MANIFEST_DIGEST and OCI_BLOB_DIGEST point at content already in the registry; the
in-process registry starts empty, so setup always runs).

Teardown order follows OCI_DELETE_MANIFEST_BEFORE_BLOBS (default true, as in setup.go).
With it false the Go suite deletes config/layer blobs while manifests still reference
them and accepts only 2xx/404/405; Berth refuses such a delete with 405 UNSUPPORTED (a
referenced blob cannot be made unreachable), so both orders pass.
"""
from __future__ import annotations

import pytest

from .suite import (
    LOOP_SCOPE,
    DELETE_MANIFEST_BEFORE_BLOBS,
    ERROR_CODES,
    INVALID_MANIFEST_CONTENT,
    NONEXISTENT_MANIFEST,
    OCI_MANIFEST,
    TEST_TAG_NAME,
    expect_2xx,
    expect_status,
    skip_if_disabled,
)

pytestmark = [pytest.mark.asyncio(loop_scope=LOOP_SCOPE), skip_if_disabled("pull")]

ACCEPT = {"Accept": OCI_MANIFEST}


# ---- Setup ---------------------------------------------------------------------------


async def test_setup_populate_config0_blob(reg):
    """Setup / Populate registry with test blob (configs[0])."""
    expect_2xx(await reg.push_blob(reg.content.configs[0].content), why="upload configs[0]")


async def test_setup_populate_config1_blob(reg):
    """Setup / Populate registry with test blob (configs[1])."""
    expect_2xx(await reg.push_blob(reg.content.configs[1].content), why="upload configs[1]")


async def test_setup_populate_layer(reg):
    """Setup / Populate registry with test layer."""
    expect_2xx(await reg.push_blob(reg.content.layer.content), why="upload layer")


async def test_setup_populate_manifest0_by_tag(reg):
    """Setup / Populate registry with test manifest (manifests[0] as tag tagtest0)."""
    reg.state["tag"] = TEST_TAG_NAME
    r = await reg.put_manifest(TEST_TAG_NAME, reg.content.manifests[0].content)
    expect_2xx(r, why="PUT manifests[0] by tag")


async def test_setup_populate_manifest1_by_digest(reg):
    """Setup / Populate registry with test manifest (manifests[1] by digest)."""
    m = reg.content.manifests[1]
    expect_2xx(await reg.put_manifest(m.digest, m.content), why="PUT manifests[1] by digest")


# ---- Pull blobs ----------------------------------------------------------------------


async def test_head_nonexistent_blob_404(reg):
    """Pull blobs / HEAD request to nonexistent blob should result in 404 response."""
    r = await reg.request("HEAD", f"/v2/{reg.name}/blobs/{reg.content.dummy_digest}")
    expect_status(r, 404)


async def test_head_existing_blob_200(reg):
    """Pull blobs / HEAD request to existing blob should yield 200."""
    cfg = reg.content.configs[0]
    r = await reg.request("HEAD", f"/v2/{reg.name}/blobs/{cfg.digest}")
    expect_status(r, 200)
    # Go checks the header only when present; Berth always sends it
    assert r.header("Docker-Content-Digest") == cfg.digest, f"Docker-Content-Digest of {r}: {r.headers}"


async def test_get_nonexistent_blob_404(reg):
    """Pull blobs / GET nonexistent blob should result in 404 response."""
    r = await reg.request("GET", f"/v2/{reg.name}/blobs/{reg.content.dummy_digest}")
    expect_status(r, 404)


async def test_get_existing_blob_200(reg):
    """Pull blobs / GET request to existing blob URL should yield 200."""
    cfg = reg.content.configs[0]
    r = await reg.request("GET", f"/v2/{reg.name}/blobs/{cfg.digest}")
    expect_status(r, 200)
    assert r.body == cfg.content, "[beyond Go] blob body must be the uploaded bytes (spec: 'MUST provide the expected blob')"


# ---- Pull manifests ------------------------------------------------------------------


async def test_head_nonexistent_manifest_404(reg):
    """Pull manifests / HEAD request to nonexistent manifest should return 404."""
    r = await reg.request("HEAD", f"/v2/{reg.name}/manifests/{NONEXISTENT_MANIFEST}")
    expect_status(r, 404)


@pytest.mark.parametrize("index", [0, 1], ids=["manifest0", "manifest1"])
async def test_head_manifest_by_digest_200(reg, index):
    """Pull manifests / HEAD request to manifest[0|1] path (digest) should yield 200 response."""
    m = reg.content.manifests[index]
    r = await reg.request("HEAD", f"/v2/{reg.name}/manifests/{m.digest}", headers=ACCEPT)
    expect_status(r, 200)
    assert r.header("Docker-Content-Digest") == m.digest, f"Docker-Content-Digest of {r}: {r.headers}"


async def test_head_manifest_by_tag_200(reg):
    """Pull manifests / HEAD request to manifest path (tag) should yield 200 response."""
    tag = reg.state.get("tag")
    assert tag, "the setup did not set a tag"
    r = await reg.request("HEAD", f"/v2/{reg.name}/manifests/{tag}", headers=ACCEPT)
    expect_status(r, 200)
    assert r.header("Docker-Content-Digest") == reg.content.manifests[0].digest, f"{r}: {r.headers}"


async def test_get_nonexistent_manifest_404(reg):
    """Pull manifests / GET nonexistent manifest should return 404."""
    r = await reg.request("GET", f"/v2/{reg.name}/manifests/{NONEXISTENT_MANIFEST}")
    expect_status(r, 404)


@pytest.mark.parametrize("index", [0, 1], ids=["manifest0", "manifest1"])
async def test_get_manifest_by_digest_200(reg, index):
    """Pull manifests / GET request to manifest[0|1] path (digest) should yield 200 response."""
    m = reg.content.manifests[index]
    r = await reg.request("GET", f"/v2/{reg.name}/manifests/{m.digest}", headers=ACCEPT)
    expect_status(r, 200)
    assert r.body == m.content, "[beyond Go] spec: the registry MUST store (and serve) the exact bytes pushed"


async def test_get_manifest_by_tag_200(reg):
    """Pull manifests / GET request to manifest path (tag) should yield 200 response."""
    tag = reg.state.get("tag")
    assert tag, "the setup did not set a tag"
    r = await reg.request("GET", f"/v2/{reg.name}/manifests/{tag}", headers=ACCEPT)
    expect_status(r, 200)


# ---- Error codes ---------------------------------------------------------------------


async def test_error_body_is_oci_json(reg):
    """Error codes / 400 response body should contain OCI-conforming JSON message."""
    r = await reg.request("GET", f"/v2/{reg.name}/manifests/sha256:totallywrong",
                          headers={"Content-Type": OCI_MANIFEST}, body=INVALID_MANIFEST_CONTENT)
    expect_status(r, 400, 404)
    if r.status == 400:
        errors = r.errors()
        assert errors, f"empty errors array: {r}"
        assert errors[0]["code"] in ERROR_CODES, f"unknown error code in {r}"


# ---- Teardown ------------------------------------------------------------------------


def _delete_manifest(index: int):
    async def test(reg):
        r = await reg.delete("manifests", reg.content.manifests[index].digest)
        expect_2xx(r, 405, why=f"DELETE manifests[{index}]")

    test.__doc__ = f"Teardown / Delete manifest[{index}] created in setup."
    return test


def _delete_blob(label: str, pick):
    async def test(reg):
        r = await reg.delete("blobs", pick(reg.content).digest)
        expect_2xx(r, 404, 405, why=f"DELETE {label} blob")

    test.__doc__ = f"Teardown / Delete {label} blob created in setup."
    return test


if DELETE_MANIFEST_BEFORE_BLOBS:
    test_teardown_delete_manifest0 = _delete_manifest(0)
    test_teardown_delete_manifest1 = _delete_manifest(1)
test_teardown_delete_config0_blob = _delete_blob("config[0]", lambda c: c.configs[0])
test_teardown_delete_config1_blob = _delete_blob("config[1]", lambda c: c.configs[1])
test_teardown_delete_layer_blob = _delete_blob("layer", lambda c: c.layer)
if not DELETE_MANIFEST_BEFORE_BLOBS:
    test_teardown_delete_manifest0_after_blobs = _delete_manifest(0)
    test_teardown_delete_manifest1_after_blobs = _delete_manifest(1)
