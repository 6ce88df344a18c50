"""``berth gc`` from the shell, on the data directory of a running ``berth serve``.

Two images share a layer; one image's manifest is deleted; ``berth gc --grace 0`` must remove
exactly the blobs only that image used (from the catalog and from the bytes on disk), say so
on stdout, exit 0, and leave the other image pulling byte for byte.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import sha256
from tests.e2e.conftest import BerthServer, client_env

from .conftest import berth_executable, database_env

pytestmark = pytest.mark.process

OCTET = {"Content-Type": "application/octet-stream"}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def push_blob(server: BerthServer, repo: str, data: bytes) -> str:
    digest = sha256(data)
    res = server.request("POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", body=data, headers=OCTET)
    assert res.status == 201, res.body
    return digest


def push_image(server: BerthServer, repo: str, tag: str, config: bytes, layers: list[bytes]) -> tuple[str, bytes]:
    def desc(media_type: str, data: bytes) -> dict:
        return {"mediaType": media_type, "digest": push_blob(server, repo, data), "size": len(data)}

    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", config),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar", layer) for layer in layers],
    }).encode()
    res = server.request("PUT", f"/v2/{repo}/manifests/{tag}", body=manifest, headers={"Content-Type": OCI_MANIFEST})
    assert res.status == 201, res.body
    return sha256(manifest), manifest


def stored_digests(data_dir: Path) -> set[str]:
    """sha256 digests of every file under the data directory: which contents the store still
    holds, whatever its layout."""
    out = set()
    for p in data_dir.rglob("*"):
        if p.is_file() and p.suffix not in (".db", ".db-wal", ".db-shm", ".db-lock"):
            out.add("sha256:" + hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def run_gc(data_dir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([berth_executable(), "gc", "--data", str(data_dir), *args], capture_output=True, text=True,
                          timeout=120, env=client_env(env))


def test_gc_removes_what_only_the_deleted_image_used(servers, process_root, database_url):
    data = process_root / "data"
    env = database_env(database_url)
    server = servers(data, env=env)

    shared = b"a base layer both images use" * 100
    x_only = [b'{"image": "x"}', b"layer only x has" * 50, b"another layer only x has" * 70]
    y_only = [b'{"image": "y"}', b"layer only y has" * 60]
    x_digest, _ = push_image(server, "lib/x", "1", x_only[0], [shared, *x_only[1:]])
    y_digest, y_manifest = push_image(server, "lib/y", "1", y_only[0], [shared, y_only[1]])
    gone = [sha256(b) for b in x_only]
    kept = {sha256(b): b for b in (shared, *y_only)}

    res = server.request("DELETE", f"/v2/lib/x/manifests/{x_digest}")
    assert res.status == 202
    # until gc runs, lib/x still serves the blobs its deleted manifest used, and the bytes are stored
    for d in gone:
        assert server.request("GET", f"/v2/lib/x/blobs/{d}").status == 200
    assert set(gone) <= stored_digests(data)

    p = run_gc(data, env, "--grace", "0")
    assert p.returncode == 0, p.stderr
    m = re.search(r"removed (\d+) unreferenced blob links, (\d+) blobs \((\d+) bytes\) and (\d+) expired uploads",
                  p.stdout)
    assert m, p.stdout
    # lib/x's 4 links (config, 2 own layers, the shared layer); 3 blobs nobody else links
    assert tuple(map(int, m.groups())) == (4, 3, sum(map(len, x_only)), 0), p.stdout

    for d in gone:
        res = server.request("GET", f"/v2/lib/x/blobs/{d}")
        assert (res.status, res.json()["errors"][0]["code"]) == (404, "BLOB_UNKNOWN")
    assert not set(gone) & stored_digests(data), "gc left the deleted image's bytes in the store"
    # the other image, through the running server, byte for byte
    res = server.request("GET", f"/v2/lib/y/manifests/1", headers={"Accept": OCI_MANIFEST})
    assert (res.status, res.body, res.headers["docker-content-digest"]) == (200, y_manifest, y_digest)
    for d, blob in kept.items():
        res = server.request("GET", f"/v2/lib/y/blobs/{d}")
        assert (res.status, res.body) == (200, blob), d

    # a second run finds nothing left to do
    p = run_gc(data, env, "--grace", "0")
    assert p.returncode == 0, p.stderr
    assert "removed 0 unreferenced blob links, 0 blobs (0 bytes) and 0 expired uploads" in p.stdout, p.stdout
