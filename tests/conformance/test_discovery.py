"""Conformance workflow 3: Content Discovery (tag listing and the referrers API).

Port of opencontainers/distribution-spec ``conformance/03_discovery_test.go``
@ b5f09ebe541c65857e8721d51a7a3d0e2f1d8749 (``test03ContentDiscovery``: contexts Setup,
"Test content discovery endpoints (listing tags)", "Test content discovery endpoints
(listing references)", Teardown), with the data of ``conformance/setup.go`` (see suite.py
for the versions ported). One test per ``g.Specify``, Go order.

Optional checks, as enabled for Berth: referrers filtering. The Go suite accepts an
unfiltered answer (with a warning) when ``OCI-Filters-Applied`` is absent; Berth filters,
so the header is required here and the filtered branch is the one checked.

Not ported: "Populate registry with test tags (no push)" (OCI_TAG_LIST names tags already
in the registry; the in-process registry starts empty).

Current-suite checks ported on top of b5f09ebe (see suite.py, "Refreshed"): the test tags
are pushed in both cases (test0/TEST0 …) and the first listing must be in sorted order
(case-insensitive lexical, or byte order); the ``last`` check re-reads the second page and
wants at most n tags without ``last`` (b5f09ebe compared the first page with itself).
Berth's own promise, byte order, is checked in addition and marked "[beyond Go]".
"""
from __future__ import annotations

import pytest

from .suite import (
    LOOP_SCOPE,
    ARTIFACT_TYPE_FILTER,
    DELETE_MANIFEST_BEFORE_BLOBS,
    OCI_INDEX,
    TEST_TAG_NAME,
    expect_2xx,
    expect_status,
    skip_if_disabled,
)

pytestmark = [pytest.mark.asyncio(loop_scope=LOOP_SCOPE), skip_if_disabled("content discovery")]

EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def _tags(resp) -> list[str]:
    """setup.go getTagList: the ``tags`` of a tag list body, [] when it does not parse."""
    try:
        return list(resp.json().get("tags") or [])
    except ValueError:
        return []


# ---- Setup ---------------------------------------------------------------------------


async def test_setup_populate_config_blob(reg):
    """Setup / Populate registry with test blob (configs[2])."""
    expect_2xx(await reg.push_blob(reg.content.configs[2].content), why="upload configs[2]")


async def test_setup_populate_layer(reg):
    """Setup / Populate registry with test layer."""
    expect_2xx(await reg.push_blob(reg.content.layer.content), why="upload layer")


async def test_setup_populate_tags(reg):
    """Setup / Populate registry with test tags (test0, TEST0 … test3, TEST3 → manifests[2]).

    The current suite pushes each tag in lower and upper case, so the listing's order
    (next test) is checked on names that sort differently by byte and by letter."""
    reg.state["num_tags"] = 4
    for i in range(reg.state["num_tags"]):
        for tag in (f"test{i}", f"TEST{i}"):
            r = await reg.put_manifest(tag, reg.content.manifests[2].content)
            expect_2xx(r, why=f"PUT tag {tag}")
    reg.state["tag_list"] = _tags(await reg.request("GET", f"/v2/{reg.name}/tags/list"))


async def test_setup_references(reg):
    """Setup / References setup (referrers to manifests[4], pushed before and after it, and to manifests[3])."""
    c = reg.content
    subject = c.manifests[4].digest
    assert c.empty_json.digest == EMPTY_JSON_DIGEST, "empty JSON descriptor digest"
    expect_2xx(await reg.push_blob(c.empty_json.content), why="upload empty JSON blob")
    # referrers pushed before their subject exists
    expect_2xx(await reg.push_blob(c.ref_blob_a.content), why="upload ref blob A")
    for label, m in (("A (config artifactType)", c.refs_manifest_a_config),
                     ("A (artifactType field)", c.refs_manifest_a_layer)):
        r = await reg.put_manifest(m.digest, m.content)
        expect_2xx(r, why=f"PUT referrer {label}")
        assert r.header("OCI-Subject") == subject, f"OCI-Subject of referrer {label}: {r.header('OCI-Subject')!r}"
    r = await reg.put_manifest(c.refs_index.digest, c.refs_index.content, OCI_INDEX)
    expect_2xx(r, why="PUT referrer index")
    assert r.header("OCI-Subject") == subject, f"OCI-Subject of referrer index: {r.header('OCI-Subject')!r}"
    # the subject itself
    expect_2xx(await reg.push_blob(c.configs[4].content), why="upload configs[4]")
    expect_2xx(await reg.push_blob(c.layer.content), why="upload layer")
    expect_2xx(await reg.put_manifest(TEST_TAG_NAME, c.manifests[4].content), why="PUT manifests[4]")
    # referrers pushed after their subject
    expect_2xx(await reg.push_blob(c.ref_blob_b.content), why="upload ref blob B")
    for label, m in (("B (config artifactType)", c.refs_manifest_b_config),
                     ("B (artifactType field)", c.refs_manifest_b_layer)):
        r = await reg.put_manifest(m.digest, m.content)
        expect_2xx(r, why=f"PUT referrer {label}")
        assert r.header("OCI-Subject") == subject, f"OCI-Subject of referrer {label}: {r.header('OCI-Subject')!r}"
    # a referrer whose subject is never pushed
    m = c.refs_manifest_c_layer
    r = await reg.put_manifest(m.digest, m.content)
    expect_2xx(r, why="PUT referrer C (subject not pushed)")
    assert r.header("OCI-Subject") == c.manifests[3].digest, f"OCI-Subject of referrer C: {r.header('OCI-Subject')!r}"


# ---- Test content discovery endpoints (listing tags) ---------------------------------


async def test_list_tags_200(reg):
    """Listing tags / GET request to list tags should yield 200 response and be in sorted order."""
    r = await reg.request("GET", f"/v2/{reg.name}/tags/list")
    expect_status(r, 200)
    tags = reg.state["tag_list"] = _tags(r)
    reg.state["num_tags"] = len(tags)
    # Go: lexical (case-insensitive, sort.SliceStable on strings.ToLower) or, as registries
    # historically sort, sort.Strings (byte order); either passes
    lexical = sorted(tags, key=str.lower)  # Python's sort is stable, as SliceStable
    assert tags in (lexical, sorted(tags)), f"tags not in sorted order: {tags}"
    # [beyond Go] Berth promises byte order (docs/api.md) on both databases
    assert tags == sorted(tags), f"[beyond Go] Berth lists tags in byte order: {tags}"


async def test_list_tags_limited_by_n(reg):
    """Listing tags / GET number of tags should be limitable by `n` query parameter."""
    n = reg.state["num_tags"] // 2
    r = await reg.request("GET", f"/v2/{reg.name}/tags/list", query={"n": str(n)})
    expect_status(r, 200)
    reg.state["tag_list"] = _tags(r)
    assert len(reg.state["tag_list"]) == n, f"n={n} gave {reg.state['tag_list']}"


async def test_list_tags_last(reg):
    """Listing tags / GET start of tag is set by `last` query parameter."""
    n = reg.state["num_tags"] // 2
    r = await reg.request("GET", f"/v2/{reg.name}/tags/list", query={"n": str(n)})
    expect_status(r, 200)
    first = _tags(r)
    assert len(first) >= n >= 1, f"first page {first} (n={n})"  # Go would panic indexing it
    last = first[n - 1]
    r = await reg.request("GET", f"/v2/{reg.name}/tags/list", query={"n": str(n), "last": last})
    expect_status(r, 200)
    # the current suite re-reads the second page: at most n tags, and not `last` itself
    page = _tags(r)
    assert len(page) <= n, f"at most n={n} tags after {last!r}: {page}"
    assert last not in page, f"the page after {last!r} repeats it: {page}"
    assert all(t > last for t in page), f"[beyond Go] tags after {last!r} only: {page}"
    assert page == sorted(page), f"[beyond Go] byte order: {page}"


# ---- Test content discovery endpoints (listing references) ---------------------------


def _index(r) -> dict:
    body = r.json()
    assert isinstance(body.get("manifests"), list), f"not an image index: {r}"
    return body


def _check_annotations(reg, manifests: list[dict]) -> None:
    key = reg.content.annotation_key
    for d in manifests:
        annotations = d.get("annotations") or {}
        assert len(annotations) == 1, f"annotations of {d['digest']}: {annotations}"
        assert annotations.get(key) == reg.content.annotation_values.get(d["digest"]), f"annotation of {d}"


async def test_referrers_of_unknown_digest_empty_200(reg):
    """Listing references / GET request to nonexistent blob should result in empty 200 response."""
    r = await reg.request("GET", f"/v2/{reg.name}/referrers/{reg.content.dummy_digest}")
    expect_status(r, 200)
    assert r.header("Content-Type") == OCI_INDEX, f"Content-Type: {r.headers}"
    assert len(_index(r)["manifests"]) == 0, f"referrers of an unknown digest: {r}"


async def test_referrers_of_subject_200(reg):
    """Listing references / GET request to existing blob should yield 200."""
    r = await reg.request("GET", f"/v2/{reg.name}/referrers/{reg.content.manifests[4].digest}")
    expect_status(r, 200)
    assert r.header("Content-Type") == OCI_INDEX, f"Content-Type: {r.headers}"
    manifests = _index(r)["manifests"]
    assert len(manifests) == 5, f"expected 5 referrers: {manifests}"
    assert manifests[0]["digest"] != manifests[1]["digest"], f"duplicate referrers: {manifests}"
    _check_annotations(reg, manifests)
    c = reg.content
    expected_types = {
        c.refs_manifest_a_config.digest: c.ref_artifact_type_a,  # from config.mediaType
        c.refs_manifest_a_layer.digest: c.ref_artifact_type_a,  # from the artifactType field
        c.refs_manifest_b_config.digest: c.ref_artifact_type_b,
        c.refs_manifest_b_layer.digest: c.ref_artifact_type_b,
        c.refs_index.digest: c.ref_artifact_type_index,
    }
    got = {d["digest"]: d.get("artifactType") for d in manifests}
    assert got == expected_types, f"[beyond Go] spec: descriptors MUST carry the artifactType: {manifests}"


async def test_referrers_filtered_by_artifact_type_200(reg):
    """Listing references / GET request to existing blob with filter should yield 200."""
    r = await reg.request("GET", f"/v2/{reg.name}/referrers/{reg.content.manifests[4].digest}",
                          query={"artifactType": reg.content.ref_artifact_type_a})
    expect_status(r, 200)
    assert r.header("Content-Type") == OCI_INDEX, f"Content-Type: {r.headers}"
    manifests = _index(r)["manifests"]
    # Go accepts an unfiltered answer (5 referrers + warning) without the header; Berth filters
    assert r.header("OCI-Filters-Applied") == ARTIFACT_TYPE_FILTER, f"OCI-Filters-Applied: {r.headers}"
    assert len(manifests) == 2, f"expected 2 referrers of type A: {manifests}"
    _check_annotations(reg, manifests)


async def test_referrers_of_missing_manifest_200(reg):
    """Listing references / GET request to missing manifest should yield 200."""
    r = await reg.request("GET", f"/v2/{reg.name}/referrers/{reg.content.manifests[3].digest}")
    expect_status(r, 200)
    assert r.header("Content-Type") == OCI_INDEX, f"Content-Type: {r.headers}"
    manifests = _index(r)["manifests"]
    assert len(manifests) == 1, f"expected 1 referrer: {manifests}"
    assert manifests[0]["digest"] == reg.content.refs_manifest_c_layer.digest, f"{manifests}"


# ---- Teardown ------------------------------------------------------------------------


async def _delete_created_manifests(reg):
    c = reg.content
    references = [
        c.refs_index.digest,
        c.manifests[2].digest,
        c.manifests[4].digest,
        c.refs_manifest_a_config.digest,
        c.refs_manifest_a_layer.digest,
        TEST_TAG_NAME,  # the Go suite passes the tag through WithDigest: a tag delete
        c.refs_manifest_b_config.digest,
        c.refs_manifest_b_layer.digest,
        c.refs_manifest_c_layer.digest,
    ]
    for ref in references:
        expect_2xx(await reg.delete("manifests", ref), 405, 404, why=f"DELETE manifest {ref}")


async def _delete_referrer_manifests(reg):
    c = reg.content
    for m in (c.refs_index, c.refs_manifest_a_config, c.refs_manifest_a_layer, c.manifests[4],
              c.refs_manifest_b_config, c.refs_manifest_b_layer):
        expect_2xx(await reg.delete("manifests", m.digest), 405, 404, why=f"DELETE manifest {m.digest}")


if DELETE_MANIFEST_BEFORE_BLOBS:
    async def test_teardown_delete_manifests_and_tags(reg):
        """Teardown / Delete created manifest & associated tags."""
        await _delete_created_manifests(reg)


async def test_teardown_delete_config_blob(reg):
    """Teardown / Delete config blob created in tests."""
    expect_2xx(await reg.delete("blobs", reg.content.configs[2].digest), 405, why="DELETE configs[2]")


async def test_teardown_delete_layer_blob(reg):
    """Teardown / Delete layer blob created in setup."""
    expect_2xx(await reg.delete("blobs", reg.content.layer.digest), 405, why="DELETE layer")


if not DELETE_MANIFEST_BEFORE_BLOBS:
    async def test_teardown_delete_manifests_and_tags_after_blobs(reg):
        """Teardown / Delete created manifest & associated tags."""
        await _delete_created_manifests(reg)


async def test_teardown_references(reg):
    """Teardown / References teardown."""
    c = reg.content
    if DELETE_MANIFEST_BEFORE_BLOBS:
        await _delete_referrer_manifests(reg)
    for label, blob in (("configs[4]", c.configs[4]), ("ref blob A", c.ref_blob_a),
                        ("ref blob B", c.ref_blob_b), ("empty JSON", c.empty_json)):
        expect_2xx(await reg.delete("blobs", blob.digest), 405, 404, why=f"DELETE {label}")
    if not DELETE_MANIFEST_BEFORE_BLOBS:
        await _delete_referrer_manifests(reg)
