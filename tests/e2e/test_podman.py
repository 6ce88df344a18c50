"""podman (and buildah) against a real `berth serve`: push with --format oci|v2s2 and --digestfile,
pull by platform, multi-arch via `podman manifest`, and a tiny `buildah from scratch` image.

podman pushes from its own storage: layers are recompressed unless the destination already has
them (or can mount them from a repository the blob-info cache knows), so the checks here are
the ones that hold for any correct registry — digestfile == served digest, config digests and
diff_ids unchanged, children of a multi-arch push byte-identical.
"""
from __future__ import annotations

import json

import pytest

from tests.fixtures.images import (
    DOCKER_CONFIG,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    build_image,
    sha256,
)

pytestmark = pytest.mark.e2e

FORMATS = {
    "oci": (OCI_MANIFEST, OCI_INDEX, OCI_CONFIG),
    "v2s2": (DOCKER_MANIFEST, DOCKER_LIST, DOCKER_CONFIG),
}


def image_id(pull_output: str) -> str:
    """The image ID podman prints as the last line of `pull`."""
    return pull_output.strip().splitlines()[-1]


@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_push_with_digestfile_then_pull_back(podman, berth, workdir, repo, fmt):
    manifest_type, _, config_type = FORMATS[fmt]
    img = build_image(workdir / "src", media="oci")
    (plat, m), = img.digests.manifests.items()
    local = image_id(podman("pull", img.source))
    assert local == m.config.split(":")[1]  # podman's image ID is the config digest

    digestfile = workdir / "digest"
    podman("push", "--tls-verify=false", "--format", fmt, "--digestfile", digestfile, local, berth.docker(repo, "v1"))
    pushed = digestfile.read_text().strip()

    served = berth.get_manifest(repo, "v1")
    assert served.headers["docker-content-digest"] == pushed == sha256(served.body)
    assert served.headers["content-type"] == manifest_type
    doc = json.loads(served.body)
    assert doc["mediaType"] == manifest_type
    assert doc["config"] == {"mediaType": config_type, "digest": m.config, "size": len(img.blobs[m.config])}
    described = berth.describe(repo, "v1")  # every blob served and matching its digest
    assert described.manifests[plat].config == m.config
    config = json.loads(berth.get_blob(repo, m.config))
    assert tuple(config["rootfs"]["diff_ids"]) == img.diff_ids[plat]
    if fmt == "oci":
        assert described.digest == pushed

    # pull it back by digest into a clean store: same image ID, same digest
    podman("rmi", "-f", local)
    back = image_id(podman("pull", "--tls-verify=false", berth.docker(repo, pushed)))
    assert back == local
    info = json.loads(podman("image", "inspect", back))[0]
    assert info["Digest"] == pushed
    assert f"{berth.host}/{repo}@{pushed}" in info["RepoDigests"]
    podman("rmi", "-f", back)


def test_push_reuses_blobs_the_registry_already_has(skopeo, podman, berth, workdir, repo):
    """Pulled from repository A, pushed to B: containers/image mounts A's layers (or finds them),
    so layer digests survive the trip through podman's storage."""
    img = build_image(workdir / "src", media="oci")
    (plat, m), = img.digests.manifests.items()
    skopeo.copy(img.source, berth.docker(repo, "v1"))
    local = image_id(podman("pull", "--tls-verify=false", berth.docker(repo, "v1")))
    other = repo + "/again"
    digestfile = workdir / "digest"
    podman("push", "--tls-verify=false", "--format", "oci", "--digestfile", digestfile, local, berth.docker(other, "v1"))
    described = berth.describe(other, "v1")
    assert described.digest == digestfile.read_text().strip()
    assert described.manifests[plat].config == m.config
    assert described.manifests[plat].layers == m.layers
    podman("rmi", "-f", local)


@pytest.mark.parametrize("media", ["oci", "docker"])
def test_pull_by_platform(skopeo, podman, berth, workdir, repo, media):
    img = build_image(workdir / "src", media=media, multi_arch=True)
    skopeo.copy(img.source, berth.docker(repo, "v1"), all=True)
    arm = img.manifest("linux/arm/v7")
    out = podman("pull", "--tls-verify=false", "--platform", "linux/arm/v7", berth.docker(repo, "v1"))
    local = image_id(out)
    assert local == arm.config.split(":")[1]
    info = json.loads(podman("image", "inspect", local))[0]
    assert (info["Os"], info["Architecture"]) == ("linux", "arm")
    assert info["Digest"] in (arm.digest, img.digest)
    assert f"{berth.host}/{repo}@{arm.digest}" in info["RepoDigests"]
    podman("rmi", "-f", local)


def test_manifest_push_all_oci(podman, berth, workdir, repo):
    """`podman manifest` builds its own OCI index (new top digest); the children go byte for byte."""
    img = build_image(workdir / "src", media="oci", multi_arch=True)
    lst = f"localhost/{repo.replace('/', '-')}-list"
    podman("manifest", "create", lst)
    try:
        podman("manifest", "add", "--all", lst, img.source)
        digestfile = workdir / "digest"
        podman("manifest", "push", "--all", "--tls-verify=false", "--format", "oci", "--digestfile", digestfile,
               lst, berth.docker(repo, "v1"))
    finally:
        podman("manifest", "rm", lst)
    described = berth.describe(repo, "v1")
    assert described.digest == digestfile.read_text().strip()
    assert described.media_type == OCI_INDEX
    assert described.manifests == img.digests.manifests
    arm = img.manifest("linux/arm/v7")
    assert berth.get_manifest(repo, arm.digest).body == img.blobs[arm.digest]


def test_manifest_push_all_v2s2(skopeo, podman, berth, workdir, repo):
    """A Docker manifest list: podman re-serialises the list (compare children, not the top digest)."""
    img = build_image(workdir / "src", media="docker", multi_arch=True)
    source = repo + "/source"
    skopeo.copy(img.source, berth.docker(source, "v1"), all=True)
    lst = f"localhost/{repo.replace('/', '-')}-list"
    podman("manifest", "create", lst)
    try:
        podman("manifest", "add", "--all", "--tls-verify=false", lst, berth.docker(source, "v1"))
        digestfile = workdir / "digest"
        podman("manifest", "push", "--all", "--tls-verify=false", "--format", "v2s2", "--digestfile", digestfile,
               lst, berth.docker(repo, "v1"))
    finally:
        podman("manifest", "rm", lst)
    described = berth.describe(repo, "v1")
    assert described.digest == digestfile.read_text().strip()
    assert described.media_type == DOCKER_LIST
    assert described.manifests == img.digests.manifests


def test_buildah_from_scratch_push(buildah, berth, workdir, repo):
    payload = workdir / "hello.txt"
    payload.write_text("hello from buildah\n")
    ctr = buildah("from", "scratch").strip()
    try:
        buildah("copy", ctr, str(payload), "/hello.txt")
        buildah("config", "--arch", "arm64", "--os", "linux", "--cmd", "/hello", ctr)
        image = buildah("commit", "--format", "oci", ctr, f"localhost/{repo.replace('/', '-')}:v1").strip().splitlines()[-1]
    finally:
        buildah("rm", ctr)
    digestfile = workdir / "digest"
    buildah("push", "--tls-verify=false", "--digestfile", digestfile, image, berth.docker(repo, "v1"))
    described = berth.describe(repo, "v1")
    assert described.digest == digestfile.read_text().strip()
    assert list(described.manifests) == ["linux/arm64"]
    assert described.manifests["linux/arm64"].config.split(":")[1] == image
    buildah("rmi", "-f", image)
