"""skopeo (containers/image) against a real `berth serve`: byte-identical round trips of single and
multi-arch images in OCI and Docker media types, inspect with platform overrides, list-tags, delete."""
from __future__ import annotations

import json

import pytest

from tests.fixtures.images import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    build_image,
    read_dir_layout,
    read_oci_layout,
    sha256,
)

pytestmark = pytest.mark.e2e

CASES = [
    pytest.param("oci", False, OCI_MANIFEST, id="oci-single"),
    pytest.param("oci", True, OCI_INDEX, id="oci-multiarch"),
    pytest.param("docker", False, DOCKER_MANIFEST, id="docker-single"),
    pytest.param("docker", True, DOCKER_LIST, id="docker-multiarch"),
]


def push(skopeo, berth, img, repo: str, tag: str = "v1") -> None:
    skopeo.copy(img.source, berth.docker(repo, tag), all=img.digests.is_index)


@pytest.mark.parametrize("media, multi, top_type", CASES)
def test_copy_round_trip_keeps_every_digest(skopeo, berth, workdir, repo, media, multi, top_type):
    img = build_image(workdir / "src", media=media, multi_arch=multi)
    assert img.digests.media_type == top_type
    push(skopeo, berth, img, repo)

    # what the registry serves: the same bytes, the same digests, every child and blob reachable
    assert berth.describe(repo, "v1") == img.digests
    served = berth.get_manifest(repo, "v1")
    assert served.body == img.top
    assert served.headers["content-type"] == top_type
    head = berth.request("HEAD", f"/v2/{repo}/manifests/v1", headers={"Accept": top_type})
    assert head.status == 200
    assert head.headers["docker-content-digest"] == img.digest
    assert head.headers["content-type"] == top_type
    assert int(head.headers["content-length"]) == len(img.top)
    assert skopeo.inspect_raw(berth.docker(repo, "v1")) == img.top
    assert skopeo.inspect_raw(berth.docker(repo, img.digest)) == img.top

    # and back out again
    if media == "oci":
        dest = workdir / "pulled"
        skopeo.copy(berth.docker(repo, "v1"), f"oci:{dest}:back", all=multi)
        pulled, blobs = read_oci_layout(dest, "back")
    else:
        dest = workdir / "pulled"
        dest.mkdir()
        skopeo.copy(berth.docker(repo, "v1"), f"dir:{dest}", all=multi)
        pulled, blobs = read_dir_layout(dest)
    assert pulled == img.digests
    assert blobs == {d: img.blobs[d] for d in img.digests.blobs()}


@pytest.mark.parametrize("media", ["oci", "docker"])
def test_inspect_with_platform_override_picks_the_child(skopeo, berth, workdir, repo, media):
    img = build_image(workdir / "src", media=media, multi_arch=True)
    push(skopeo, berth, img, repo)
    ref = berth.docker(repo, "v1")
    arm = img.manifest("linux/arm/v7")

    # --raw is the index itself; --config resolves the platform through the index
    assert skopeo.inspect_raw(ref, override_arch="arm", override_variant="v7") == img.top
    config = skopeo.inspect_raw(ref, config=True, override_arch="arm", override_variant="v7")
    assert sha256(config) == arm.config
    assert json.loads(config)["variant"] == "v7"
    arm64 = skopeo.inspect_raw(ref, config=True, override_arch="arm64")
    assert sha256(arm64) == img.manifest("linux/arm64").config

    # the non-raw inspect reports the child's digest for the chosen platform
    out = json.loads(skopeo("inspect", "--tls-verify=false", "--override-arch", "arm", "--override-variant", "v7", ref))
    assert out["Architecture"] == "arm"
    assert out["Layers"] == list(arm.layers)

    # the child by digest, straight from the registry
    child = skopeo.inspect_raw(berth.docker(repo, arm.digest))
    assert sha256(child) == arm.digest


def test_list_tags_and_delete(skopeo, berth, workdir, repo):
    a = build_image(workdir / "a", media="oci")
    b = build_image(workdir / "b", media="docker", multi_arch=True)
    push(skopeo, berth, a, repo, "a1")
    skopeo.copy(berth.docker(repo, "a1"), berth.docker(repo, "a2"))  # a second tag on the same manifest
    push(skopeo, berth, b, repo, "b1")
    ref = berth.docker(repo, "a1").rsplit(":", 1)[0]
    assert sorted(skopeo.list_tags(ref)) == ["a1", "a2", "b1"]
    assert berth.request("GET", f"/v2/{repo}/tags/list").json() == {"name": repo, "tags": ["a1", "a2", "b1"]}

    # skopeo delete resolves the tag and deletes the manifest by digest: both of its tags go
    skopeo.delete(berth.docker(repo, "a1"))
    assert skopeo.list_tags(ref) == ["b1"]
    assert berth.request("GET", f"/v2/{repo}/manifests/{a.digest}").status == 404
    assert berth.describe(repo, "b1") == b.digests

    # deleting an index by digest leaves its children (still addressable by digest)
    skopeo.delete(berth.docker(repo, b.digest))
    assert skopeo.list_tags(ref) == []
    assert berth.request("GET", f"/v2/{repo}/manifests/b1").status == 404
    child = b.manifest("linux/arm64").digest
    assert berth.request("GET", f"/v2/{repo}/manifests/{child}").status == 200
    with pytest.raises(AssertionError):
        skopeo.inspect_raw(berth.docker(repo, "a1"))


@pytest.mark.parametrize("media", ["oci", "docker"])
def test_copy_between_repositories(skopeo, berth, workdir, repo, media):
    """registry → registry: containers/image mounts blobs across repositories (POST ?mount=&from=)."""
    img = build_image(workdir / "src", media=media, multi_arch=True)
    push(skopeo, berth, img, repo)
    other = repo + "/copy"
    skopeo.copy(berth.docker(repo, "v1"), berth.docker(other, "v2"), all=True)
    assert berth.describe(other, "v2") == img.digests
    assert skopeo.inspect_raw(berth.docker(other, "v2")) == img.top
