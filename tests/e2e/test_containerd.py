"""containerd's resolver (`ctr`, what kubelet's pulls go through) against a real `berth serve`:
pull every platform of a multi-arch image, pull one platform, push back, in OCI and Docker types."""
from __future__ import annotations

import pytest

from tests.fixtures.images import build_image, sha256

pytestmark = pytest.mark.e2e

MEDIA = ["oci", "docker"]




@pytest.mark.parametrize("media", MEDIA)
def test_pull_all_platforms_then_push(skopeo, containerd, berth, workdir, repo, media):
    img = build_image(workdir / "src", media=media, multi_arch=True)
    skopeo.copy(img.source, berth.docker(repo, "v1"), all=True)
    ref = berth.ref(repo, "v1")

    containerd.ctr("images", "pull", "--plain-http", "--all-platforms", ref)
    media_type, digest = containerd.image_target(ref)
    assert (media_type, digest) == (img.digests.media_type, img.digest)
    # every manifest, config and layer landed in the content store, byte-identical
    expected = {img.digest} | {m.digest for m in img.digests.manifests.values()} | img.digests.blobs()
    assert expected <= containerd.digests()
    for d in (img.digest, img.manifest("linux/arm/v7").digest, img.manifest("linux/arm64").layers[0]):
        data = containerd.content(d)
        assert sha256(data) == d

    # containerd pushes what it has: HEAD each blob, POST + one PUT, child manifests by digest
    target = repo + "/pushed"
    new_ref = berth.ref(target, "v2")
    containerd.ctr("images", "tag", ref, new_ref)
    containerd.ctr("images", "push", "--plain-http", new_ref)
    assert berth.describe(target, "v2") == img.digests
    assert berth.get_manifest(target, "v2").body == img.top
    containerd.ctr("images", "rm", ref, new_ref)


@pytest.mark.parametrize("media", MEDIA)
def test_pull_one_platform(skopeo, containerd, berth, workdir, repo, media):
    img = build_image(workdir / "src", media=media, multi_arch=True)
    skopeo.copy(img.source, berth.docker(repo, "v1"), all=True)
    ref = berth.ref(repo, "v1")
    arm = img.manifest("linux/arm/v7")
    containerd.ctr("images", "pull", "--plain-http", "--platform", "linux/arm/v7", ref)
    assert containerd.image_target(ref) == (img.digests.media_type, img.digest)
    have = containerd.digests()
    assert {img.digest, arm.digest, arm.config, *arm.layers} <= have
    amd = img.manifest("linux/amd64")
    assert not ({amd.config, *amd.layers} & have)  # other platforms' blobs are not fetched
    containerd.ctr("images", "rm", ref)


def test_pull_single_image_by_digest(skopeo, containerd, berth, workdir, repo):
    img = build_image(workdir / "src", media="docker", platform="linux/arm64")
    skopeo.copy(img.source, berth.docker(repo, "v1"))
    ref = berth.ref(repo, img.digest)
    containerd.ctr("images", "pull", "--plain-http", "--platform", "linux/arm64", ref)
    assert {img.digest, *img.digests.blobs()} <= containerd.digests()
    containerd.ctr("images", "rm", ref)
