"""umoci unpacks what Berth serves into a runtime bundle: proof that a pulled image is usable (layers
that decompress into the right files, diff_ids that match, a config a runtime can use), not only that
digests round-trip.

A multi-arch OCI image (fixture builder: every layer is a gzip'd tar holding one random file
``berth/<os>-<arch>[-<variant>]-<n>.bin``) is pushed to the no-auth server with `skopeo copy --all`,
then pulled back into OCI layouts with skopeo and unpacked with `umoci unpack --rootless`.

umoci needs a tag that names ONE image manifest: on a tag naming an index it fails with
"tag is ambiguous". Two ways to get one are covered: skopeo picking a platform while pulling
(`--override-arch/--override-variant`, no `--all`), and a full `--all` pull where each child manifest
of the index gets a tag of its own in index.json.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.e2e.conftest import CommandFailed, lower_tempdir, require, run
from tests.fixtures.images import OCI_INDEX, OCI_MANIFEST, build_image, read_oci_layout, split_platform

pytestmark = pytest.mark.e2e

REF_NAME = "org.opencontainers.image.ref.name"


@pytest.fixture(scope="module")
def umoci() -> str:
    return require("umoci")


@pytest.fixture(scope="module")
def pushed(berth, skopeo, e2e_root, umoci):
    """A multi-arch OCI image in Berth: (repository, built image)."""
    img = build_image(lower_tempdir("umoci-src-", e2e_root), media="oci", multi_arch=True)
    repo = f"e2e/umoci-{os.urandom(3).hex()}"
    skopeo.copy(img.source, berth.docker(repo, "v1"), all=True)
    assert berth.describe(repo, "v1") == img.digests
    return repo, img


def layer_files(img, platform: str) -> dict[str, bytes]:
    """path -> content of every regular file the fixture put into the platform's layers."""
    files: dict[str, bytes] = {}
    for digest in img.manifest(platform).layers:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(img.blobs[digest]))) as tar:
            for member in tar.getmembers():
                assert member.isfile(), member
                files[member.name] = tar.extractfile(member).read()
    return files


def rootfs_tree(rootfs: Path) -> tuple[set[str], dict[str, bytes]]:
    """(directories, path -> content of regular files) under a bundle's rootfs; anything else fails."""
    dirs, files = set(), {}
    for path in sorted(rootfs.rglob("*")):
        rel = path.relative_to(rootfs).as_posix()
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            raise AssertionError(f"unexpected non-regular entry {rel} in {rootfs}")
        if path.is_dir():
            dirs.add(rel)
        else:
            files[rel] = path.read_bytes()
            assert path.stat().st_mode & 0o777 == 0o644, f"{rel} mode {oct(path.stat().st_mode)}"
    return dirs, files


def unpack_and_check(umoci: str, layout: Path, tag: str, bundle: Path, img, platform: str) -> None:
    run([umoci, "unpack", "--rootless", "--image", f"{layout}:{tag}", bundle])
    expected = layer_files(img, platform)
    dirs, files = rootfs_tree(bundle / "rootfs")
    assert files == expected, f"rootfs of {platform}: {sorted(files)} != {sorted(expected)}"
    assert dirs == {"berth"}
    # the runtime config comes from the image config served by Berth
    process = json.loads((bundle / "config.json").read_text())["process"]
    assert process["args"] == ["/bin/true"]
    assert "PATH=/usr/bin:/bin" in process["env"]

    # umoci stat: one history entry per layer, with the layer digests and diff_ids of the image
    stat = json.loads(run([umoci, "stat", "--image", f"{layout}:{tag}", "--json"]))
    history = stat["history"]
    assert [h["created_by"] for h in history] == [f"berth e2e layer {i}" for i in range(len(history))]
    assert [h["layer"]["digest"] for h in history] == list(img.manifest(platform).layers)
    assert tuple(h["diff_id"] for h in history) == img.diff_ids[platform]
    table = run([umoci, "stat", "--image", f"{layout}:{tag}"])
    for digest in img.manifest(platform).layers:
        assert digest in table, table


@pytest.mark.parametrize("platform", ["linux/arm64", "linux/arm/v7"])
def test_umoci_unpacks_a_platform_pulled_by_skopeo(berth, skopeo, umoci, pushed, workdir, platform):
    repo, img = pushed
    p = split_platform(platform)
    extra = ("--override-os", p["os"], "--override-arch", p["architecture"])
    if "variant" in p:
        extra += ("--override-variant", p["variant"])
    layout, tag = workdir / "layout", "one"
    skopeo.copy(berth.docker(repo, "v1"), f"oci:{layout}:{tag}", extra=extra)
    pulled, _ = read_oci_layout(layout, tag)
    assert pulled.media_type == OCI_MANIFEST and pulled.digest == img.manifest(platform).digest
    unpack_and_check(umoci, layout, tag, workdir / "bundle", img, platform)


def test_umoci_unpacks_every_child_of_the_pulled_index(berth, skopeo, umoci, pushed, workdir):
    repo, img = pushed
    layout = workdir / "layout"
    skopeo.copy(berth.docker(repo, "v1"), f"oci:{layout}:multi", all=True)
    pulled, _ = read_oci_layout(layout, "multi")
    assert pulled == img.digests and pulled.media_type == OCI_INDEX

    # the tag names an index: umoci refuses it
    with pytest.raises(CommandFailed) as info:
        run([umoci, "unpack", "--rootless", "--image", f"{layout}:multi", workdir / "ambiguous"])
    assert "ambiguous" in info.value.stderr + info.value.stdout

    # give every child manifest a tag of its own, then unpack each platform
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    tags = {}
    for n, (platform, child) in enumerate(sorted(img.digests.manifests.items())):
        tags[platform] = f"child{n}"
        size = (layout / "blobs" / "sha256" / child.digest.split(":")[1]).stat().st_size
        index["manifests"].append({"mediaType": OCI_MANIFEST, "digest": child.digest, "size": size,
                                   "annotations": {REF_NAME: tags[platform]}})
    index_path.write_text(json.dumps(index))
    assert set(tags) == {"linux/amd64", "linux/arm64", "linux/arm/v7"}
    for platform, tag in tags.items():
        unpack_and_check(umoci, layout, tag, workdir / f"bundle-{tag}", img, platform)
