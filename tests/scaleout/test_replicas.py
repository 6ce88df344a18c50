"""Three replicas behind a round-robin load balancer: one registry (issue 6, the recipe of
docs/operations.md "Scaling out").

The module starts, on 127.0.0.1: a PostgreSQL database (tests/postgres.py), a key prefix of
its own in the session's SeaweedFS bucket (tests/seaweed.py), three ``berth serve`` processes with auth on, each with its own
empty data directory, all with ``BERTH_DATABASE_URL``, ``BERTH_STORAGE_DRIVER=s3`` and
``BERTH_AUTH_REALM`` naming the balancer, and HAProxy in front (tests/haproxy.py: round robin,
no stickiness, health checks on /v2/). Nothing is shared between replicas but the database
and the bucket. The replicas are started at the same moment, so the once-only start-up (the
schema, the signing key, the bootstrap admin) is exercised racing.

Covered: the replicas agree on one signing key and a token from one verifies on all; skopeo,
podman and containerd push and pull multi-arch images through the balancer with identical
digests (and every replica serves them); a chunked upload whose PATCHes land on different
replicas (seen in each replica's access log); a robot revoked through one replica is refused
on the others within 6 s; the conformance port through the balancer with auth; a replica
SIGKILLed during a run of pushes, the clients' retries succeed and every acknowledged push
is complete.
"""
from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import haproxy as haproxy_mod
from tests.e2e.conftest import REPO_ROOT, BerthServer, CommandFailed, Creds, free_port, lower_tempdir
from tests.fixtures.images import OCI_INDEX, build_image, read_oci_layout, sha256

from .conftest import skip_or_fail

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "admin-" + secrets.token_hex(12)
REPLICAS = 3
REVOCATION_BOUND = 6.0  # seconds: PRINCIPAL_CACHE_TTL (5 s) + slack, as docs/operations.md says


@dataclass
class Cluster:
    replicas: list[BerthServer]
    front: BerthServer  # the balancer's address with BerthServer's HTTP helpers (never started)
    balancer: haproxy_mod.HAProxy
    admin: Creds
    env: dict[str, str]
    robots: dict[str, Creds] = field(default_factory=dict)

    def admin_api(self, method: str, path: str, body: dict | None = None, *, via: BerthServer | None = None,
                  status: int | None = None):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        res = (via or self.front).request(method, path, headers=headers, body=data, creds=self.admin)
        if status is not None:
            assert res.status == status, f"{method} {path} -> {res.status} {res.body[:500]!r}"
        return res

    def token(self, creds: Creds, *scopes: str, via: BerthServer | None = None) -> str:
        import urllib.parse

        query = urllib.parse.urlencode([("service", "berth")] + [("scope", s) for s in scopes])
        basic = "Basic " + base64.b64encode(str(creds).encode()).decode()
        res = (via or self.front).request("GET", f"/auth/token?{query}", headers={"Authorization": basic})
        assert res.status == 200, f"token: {res.status} {res.body[:300]!r}"
        return res.json()["token"]

    def access_lines(self, pattern: str) -> dict[int, list[str]]:
        """Replica index → access-log lines matching ``pattern``."""
        rx = re.compile(pattern)
        return {i: [ln for ln in r.log().splitlines() if "berth.access" in ln and rx.search(ln)]
                for i, r in enumerate(self.replicas)}


def _seaweed():
    try:
        from tests import seaweed  # noqa: PLC0415 - written on the s3 branch
    except ImportError:
        skip_or_fail("tests/seaweed.py (the SeaweedFS harness) is not in this tree")
    reason = seaweed.missing_reason()
    if reason:
        skip_or_fail(reason)
    return seaweed


@pytest.fixture(scope="module")
def cluster(postgres_cluster, e2e_root, request):
    reason = haproxy_mod.missing_reason()
    if reason:
        skip_or_fail(reason)
    _seaweed()
    s3 = request.getfixturevalue("seaweedfs")  # the session's SeaweedFS and bucket; a prefix of the cluster's own
    bucket = request.getfixturevalue("s3_bucket")
    root = lower_tempdir("scaleout-", e2e_root)
    balancer = None
    replicas: list[BerthServer] = []
    try:
        with postgres_cluster.database() as database_url:
            front_port = free_port()
            env = {
                "BERTH_DATABASE_URL": database_url,
                "BERTH_STORAGE_DRIVER": "s3",
                "BERTH_STORAGE_S3_ENDPOINT": s3.endpoint,
                "BERTH_STORAGE_S3_REGION": s3.region,
                "BERTH_STORAGE_S3_BUCKET": bucket,
                "BERTH_STORAGE_S3_PREFIX": f"scaleout-{os.urandom(4).hex()}",
                "BERTH_STORAGE_S3_ACCESS_KEY": s3.access_key,
                "BERTH_STORAGE_S3_SECRET_KEY": s3.secret_key,
                "BERTH_AUTH_REALM": f"http://127.0.0.1:{front_port}/auth/token",
                "BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "BERTH_ACCESS_LOG": "1",
            }
            replicas = [BerthServer(lower_tempdir(f"r{i + 1}-", root), auth=True, env=env) for i in range(REPLICAS)]
            with ThreadPoolExecutor(REPLICAS) as pool:  # all at once: the start-up must be race-free
                list(pool.map(lambda r: r.start(timeout=60), replicas))
            balancer = haproxy_mod.HAProxy(root / "haproxy", [("127.0.0.1", r.port) for r in replicas],
                                           port=front_port).start()
            for i in range(REPLICAS):
                balancer.wait_state(f"r{i + 1}", "UP")
            front = BerthServer(root / "front", auth=True, env=env, port=front_port)
            c = Cluster(replicas, front, balancer, front.admin, env)
            c.admin_api("POST", "/admin/tenants", {"name": "acme"}, status=201)
            made = c.admin_api("POST", "/admin/tenants/acme/robots", {"name": "ci", "actions": ["pull", "push"]},
                               status=201).json()
            c.robots["ci"] = Creds(made["username"], made["secret"])
            yield c
    finally:
        if balancer is not None:
            balancer.stop()
        for r in replicas:
            r.stop()


@pytest.fixture(autouse=True)
def _logs_on_failure(request):
    """A failed test prints what each replica and the balancer logged meanwhile."""
    if "cluster" not in request.fixturenames:
        yield
        return
    c = request.getfixturevalue("cluster")
    marks = [r.log_size() for r in c.replicas]
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for i, r in enumerate(c.replicas):
            sys.stdout.write(f"\n--- replica r{i + 1} ({r.url}) during {request.node.name} ---\n"
                             f"{r.log(marks[i])[-8000:]}\n")
        sys.stdout.write(f"\n--- haproxy ---\n{c.balancer.log()[-3000:]}\n")


# ---- one registry ------------------------------------------------------------------------------


def test_replicas_share_one_signing_key(cluster):
    jwks = [r.request("GET", "/auth/jwks.json").json() for r in cluster.replicas]
    assert jwks[0]["keys"] and all(j == jwks[0] for j in jwks)
    # the challenge names the balancer, whichever replica answers
    for r in cluster.replicas:
        challenge = r.request("GET", "/v2/", anonymous=True).headers["www-authenticate"]
        assert f'realm="{cluster.front.url}/auth/token"' in challenge
    # a token issued by one replica is accepted by every other
    for issuer in cluster.replicas:
        tok = cluster.token(cluster.admin, "repository:acme/app:pull", via=issuer)
        for r in cluster.replicas:
            res = r.request("GET", "/v2/acme/app/tags/list", headers={"Authorization": f"Bearer {tok}"})
            assert res.status == 404, (issuer.url, r.url, res.status, res.body[:200])
    # and one bootstrap admin was created, by exactly one replica
    assert sum(r.log().count("created admin user") for r in cluster.replicas) == 1


def test_skopeo_multiarch_push_pull_through_the_balancer(cluster, skopeo, workdir):
    creds, front = cluster.robots["ci"], cluster.front
    img = build_image(workdir / "src", media="oci", multi_arch=True, layer_size=256 * 1024)
    skopeo.copy(img.source, front.docker("acme/skopeo", "v1"), all=True, dest_creds=creds)
    assert front.describe("acme/skopeo", "v1", creds=creds) == img.digests
    for r in cluster.replicas:  # every replica serves every blob: they share the bucket and the database
        assert r.describe("acme/skopeo", "v1", creds=creds) == img.digests
    dest = workdir / "pulled"
    skopeo.copy(front.docker("acme/skopeo", "v1"), f"oci:{dest}:back", all=True, src_creds=creds)
    pulled, blobs = read_oci_layout(dest, "back")
    assert pulled == img.digests
    assert blobs == {d: img.blobs[d] for d in img.digests.blobs()}


def test_podman_multiarch_push_pull_through_the_balancer(cluster, podman, workdir):
    creds, front = cluster.robots["ci"], cluster.front
    img = build_image(workdir / "src", media="oci", multi_arch=True)
    lst = f"localhost/scaleout-list-{secrets.token_hex(4)}"
    digestfile = workdir / "digest"
    podman("manifest", "create", lst)
    try:
        podman("manifest", "add", "--all", lst, img.source)
        podman("manifest", "push", "--all", "--tls-verify=false", "--format", "oci", "--digestfile", digestfile,
               lst, front.docker("acme/podman", "v1"), creds=creds)
    finally:
        podman("manifest", "rm", lst)
    pushed = digestfile.read_text().strip()
    served = front.describe("acme/podman", "v1", creds=creds)
    assert served.digest == pushed
    # the children, configs and layers are the ones built (an OCI push is byte-identical)
    assert served.manifests == img.digests.manifests
    arm = img.manifest("linux/arm/v7")
    got = podman("pull", "--tls-verify=false", "--platform", "linux/arm/v7", front.docker("acme/podman", "v1"),
                 creds=creds).strip().splitlines()[-1]
    assert got == arm.config.split(":")[1]
    podman("rmi", "-f", got)


def test_containerd_pull_and_push_through_the_balancer(cluster, skopeo, containerd, workdir):
    creds, front = cluster.robots["ci"], cluster.front
    img = build_image(workdir / "src", media="oci", multi_arch=True)
    skopeo.copy(img.source, front.docker("acme/ctr-src", "v1"), all=True, dest_creds=creds)
    ref = front.ref("acme/ctr-src", "v1")
    containerd.ctr("images", "pull", "--plain-http", "--all-platforms", ref, creds=creds)
    assert containerd.image_target(ref) == (OCI_INDEX, img.digest)
    new_ref = front.ref("acme/ctr-pushed", "v2")
    containerd.ctr("images", "tag", ref, new_ref)
    containerd.ctr("images", "push", "--plain-http", new_ref, creds=creds)
    assert front.describe("acme/ctr-pushed", "v2", creds=creds) == img.digests
    assert front.get_manifest("acme/ctr-pushed", "v2", creds=creds).body == img.top
    containerd.ctr("images", "rm", ref, new_ref)


def test_chunked_upload_whose_requests_hit_different_replicas(cluster):
    front, admin = cluster.front, cluster.admin
    repo = "acme/chunked"
    tok = cluster.token(admin, f"repository:{repo}:pull,push")
    auth = {"Authorization": f"Bearer {tok}"}
    chunks = [os.urandom(256 * 1024 + i) for i in range(6)]
    data = b"".join(chunks)
    digest = sha256(data)
    res = front.request("POST", f"/v2/{repo}/blobs/uploads/", headers=auth)
    assert res.status == 202, res
    location = res.headers["location"]
    upload_id = location.rstrip("/").split("/")[-1].split("?")[0]
    offset = 0
    for chunk in chunks:
        res = front.request("PATCH", location, body=chunk, headers={
            **auth, "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(chunk) - 1}", "Content-Length": str(len(chunk))})
        assert res.status == 202, (res.status, res.body[:300])
        offset += len(chunk)
        assert res.headers["range"] == f"0-{offset - 1}"
        location = res.headers["location"]
    sep = "&" if "?" in location else "?"
    res = front.request("PUT", f"{location}{sep}digest={digest}", headers={**auth, "Content-Length": "0"})
    assert res.status == 201, (res.status, res.body[:300])
    assert front.get_blob(repo, digest, creds=admin) == data
    # the PATCHes of that one upload were served by more than one replica
    patched = cluster.access_lines(rf'"method": "PATCH".*"path": "/v2/{repo}/blobs/uploads/{upload_id}')
    served_by = {i for i, lines in patched.items() if lines}
    assert sum(len(v) for v in patched.values()) == len(chunks), patched
    assert len(served_by) >= 2, patched


def test_robot_revoked_through_one_replica_is_refused_on_the_others(cluster):
    r1, others = cluster.replicas[0], cluster.replicas[1:]
    made = cluster.admin_api("POST", "/admin/tenants/acme/robots", {"name": "shortlived", "actions": ["pull"]},
                             via=r1, status=201).json()
    robot = Creds(made["username"], made["secret"])
    tok = cluster.token(robot, "repository:acme/skopeo:pull")
    bearer = {"Authorization": f"Bearer {tok}"}
    for r in cluster.replicas:  # every replica knows (and caches) the robot and accepts its token
        assert r.request("GET", "/v2/acme/skopeo/tags/list", headers=bearer).status in (200, 404)
        assert r.request("GET", "/v2/acme/skopeo/tags/list", creds=robot).status in (200, 404)
    cluster.admin_api("DELETE", "/admin/tenants/acme/robots/shortlived", via=r1, status=200)
    assert r1.request("GET", "/v2/acme/skopeo/tags/list", headers=bearer).status == 401  # at once where revoked
    deadline = time.monotonic() + REVOCATION_BOUND
    pending = list(others)
    while pending:
        pending = [r for r in pending if r.request("GET", "/v2/acme/skopeo/tags/list", headers=bearer).status != 401
                   or r.request("GET", "/v2/acme/skopeo/tags/list", creds=robot).status != 401]
        if pending:
            assert time.monotonic() < deadline, f"{[r.url for r in pending]} still accept the revoked robot"
            time.sleep(0.25)
    assert cluster.front.request("GET", "/v2/acme/skopeo/tags/list", creds=robot).status == 401


def test_conformance_through_the_balancer_with_auth(cluster, tmp_path):
    cluster.admin_api("POST", "/admin/tenants", {"name": "conf"}, status=201)
    env = {**os.environ, "OCI_ROOT_URL": cluster.front.url, "OCI_SHARED_REGISTRY": "1",
           "OCI_NAMESPACE": "conf/app", "OCI_CROSSMOUNT_NAMESPACE": "conf/mount",
           "OCI_USERNAME": cluster.admin.user, "OCI_PASSWORD": cluster.admin.password}
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--no-header", "-x",
           "tests/conformance/test_pull.py", "tests/conformance/test_push.py",
           "tests/conformance/test_discovery.py", "tests/conformance/test_management.py"]
    p = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    summary = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    assert p.returncode == 0, f"{summary}\n{p.stdout[-6000:]}\n{p.stderr[-2000:]}"
    assert "passed" in summary and "failed" not in summary, summary
    print(f"conformance through the balancer: {summary}")


def test_replica_killed_during_a_push_run(cluster, skopeo, workdir):
    """SIGKILL one replica while skopeo pushes image after image through the balancer: every push
    the client reports done (retrying as it does) is complete afterwards, on the survivors."""
    creds, front = cluster.robots["ci"], cluster.front
    images = [build_image(workdir / f"img{i}", media="oci", multi_arch=True, layer_size=512 * 1024)
              for i in range(8)]
    acknowledged: list[int] = []
    failures: dict[int, str] = {}
    first_done = threading.Event()

    def push_all() -> None:
        for i, img in enumerate(images):
            for attempt in range(3):  # the client's retries: skopeo's own, then a new copy, as a CI job would
                try:
                    skopeo.copy(img.source, front.docker("acme/killed", f"v{i}"), all=True, dest_creds=creds,
                                extra=("--retry-times", "3"))
                    acknowledged.append(i)
                    break
                except CommandFailed as e:
                    failures[i] = e.stderr[-1500:]
            first_done.set()

    pusher = threading.Thread(target=push_all)
    pusher.start()
    assert first_done.wait(300), "the first push did not finish"
    victim = cluster.replicas[1]
    victim.proc.kill()  # SIGKILL: no clean-up of any kind
    victim.proc.wait(10)
    pusher.join(900)
    assert not pusher.is_alive()
    try:
        assert sorted(acknowledged) == list(range(len(images))), failures
        for i in acknowledged:
            assert front.describe("acme/killed", f"v{i}", creds=creds) == images[i].digests
            for r in (cluster.replicas[0], cluster.replicas[2]):
                assert r.describe("acme/killed", f"v{i}", creds=creds) == images[i].digests
    finally:  # bring the replica back (same port, same empty-of-state data directory)
        victim.stop()
        victim.start(timeout=60)
        cluster.balancer.wait_state("r2", "UP")
    assert victim.describe("acme/killed", "v0", creds=creds) == images[0].digests
