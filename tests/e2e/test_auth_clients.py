"""Real clients against a `berth serve` WITH token auth on (issue 3): the client does the token
dance (401 challenge → realm → Bearer) by itself, with the credentials we hand it.

One server for the module, set up through the admin API (HTTP Basic as the bootstrap admin):

* tenant ``acme`` (private) with a writer user ``alice``, a push robot ``acme+ci`` (pull, push) and a
  pull robot ``acme+node`` (pull — what a kubelet gets);
* tenant ``other`` (private) holding a multi-arch image, pushed by its own robot ``other+ci``;
* tenant ``pub`` (public) holding a single image: anonymous pull, nothing else.

Covered: skopeo and podman push/pull with credentials (multi-arch `copy --all`, digests identical),
containerd's resolver (`ctr images pull --user --all-platforms`, kubelet's path) with the pull robot,
skopeo with `--authfile` = the `.dockerconfigjson` of a Secret from `POST …/pull-secrets` (auths key
``<host:port>/acme``, path-scoped), cross-tenant isolation with skopeo, podman and ctr (pull and
push), anonymous pull of a public tenant, and a revoked robot locked out at once.
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess

import pytest

from tests.e2e.conftest import CommandFailed, Creds, lower_tempdir
from tests.fixtures.images import OCI_INDEX, build_image, read_oci_layout, sha256

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "admin-" + secrets.token_hex(12)
# what clients print when the registry says 401/403 (containers/image, containerd); the server's
# own OCI error codes and messages come through as well
AUTH_FAILURE = re.compile(
    r"unauthorized|authentication required|insufficient_scope|denied|not authorized|authorization failed"
    r"|requested access to the resource is denied|\b401\b|\b403\b",
    re.IGNORECASE,
)
NETWORK_FAILURE = re.compile(r"connection refused|no such host|i/o timeout|connection reset|EOF\b", re.IGNORECASE)


# --- the authenticated registry -------------------------------------------------------------------


class AuthRegistry:
    """The module's auth-on server plus the principals made for it."""

    def __init__(self, server) -> None:
        self.server = server
        self.admin: Creds = server.admin
        self.principals: dict[str, Creds] = {}
        self.images: dict[str, object] = {}

    def admin_api(self, method: str, path: str, body: dict | None = None, *, status: int | None = None, raw: bool = False):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        res = self.server.request(method, path, headers=headers, body=data, creds=self.admin)
        if status is not None:
            assert res.status == status, f"{method} {path} -> {res.status} {res.body[:500]!r}"
        return res if raw else res.json()

    def robot(self, tenant: str, name: str, actions: list[str]) -> Creds:
        made = self.admin_api("POST", f"/admin/tenants/{tenant}/robots", {"name": name, "actions": actions}, status=201)
        assert made["username"] == f"{tenant}+{name}"
        assert len(made["secret"]) >= 32
        return Creds(made["username"], made["secret"])


@pytest.fixture(scope="module")
def reg(berth_factory, skopeo, e2e_root) -> AuthRegistry:
    server = berth_factory(auth=True, env={"BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD})
    r = AuthRegistry(server)
    # auth really is on: /v2/ challenges with a Bearer realm on this server
    probe = server.request("GET", "/v2/", anonymous=True)
    assert probe.status == 401, probe
    assert probe.headers["www-authenticate"].lower().startswith("bearer "), probe.headers

    r.admin_api("POST", "/admin/tenants", {"name": "acme"}, status=201)
    r.admin_api("POST", "/admin/tenants", {"name": "other"}, status=201)
    r.admin_api("POST", "/admin/tenants", {"name": "pub", "public": True}, status=201)
    alice = Creds("alice", "alice-" + secrets.token_hex(8))
    r.admin_api("POST", "/admin/users", {"username": alice.user, "password": alice.password}, status=201)
    r.admin_api("PUT", "/admin/tenants/acme/members/alice", {"role": "writer"}, status=200)
    r.principals.update(
        alice=alice,
        acme_ci=r.robot("acme", "ci", ["pull", "push"]),
        acme_node=r.robot("acme", "node", ["pull"]),
        other_ci=r.robot("other", "ci", ["pull", "push"]),
    )

    # seed: other/app (multi-arch, Docker types) by other's own robot; pub/app by the admin;
    # acme/base (multi-arch OCI) by alice — the images the pull-only tests read
    seed = lower_tempdir("seed-", e2e_root)
    other = build_image(seed / "other", media="docker", multi_arch=True)
    skopeo.copy(other.source, server.docker("other/app", "v1"), all=True, dest_creds=r.principals["other_ci"])
    pub = build_image(seed / "pub", media="oci", platform="linux/arm64")
    skopeo.copy(pub.source, server.docker("pub/app", "v1"), dest_creds=r.admin)
    base = build_image(seed / "base", media="oci", multi_arch=True)
    skopeo.copy(base.source, server.docker("acme/base", "v1"), all=True, dest_creds=alice)
    r.images.update(other=other, pub=pub, base=base)
    return r



def assert_auth_failure(fn, *args, **kwargs) -> str:
    """Run a client command that must fail because of auth (not the network); return its stderr."""
    with pytest.raises(CommandFailed) as info:
        fn(*args, **kwargs)
    err = info.value.stderr + info.value.stdout
    assert AUTH_FAILURE.search(err), f"expected an auth failure, got:\n{err[-3000:]}"
    assert not NETWORK_FAILURE.search(err), f"expected an auth failure, not a network error:\n{err[-3000:]}"
    return err


def inspect_with_authfile(skopeo, ref: str, authfile) -> bytes:
    """`skopeo inspect --raw --authfile F`: the raw manifest, credentials looked up in F."""
    cmd = [skopeo.binary, *skopeo._global(), "inspect", "--raw", "--tls-verify=false", "--authfile", str(authfile), ref]
    p = subprocess.run(cmd, capture_output=True, env=skopeo.env, timeout=skopeo.timeout)
    if p.returncode != 0:
        raise CommandFailed(cmd, p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))
    return p.stdout




# --- push and pull with credentials ---------------------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "acme_ci"])
def test_skopeo_multiarch_push_pull_with_credentials(reg, skopeo, workdir, who):
    """A writer user and a push robot: `skopeo copy --all` in and out, every digest identical."""
    creds = reg.principals[who]
    server = reg.server
    repo = f"acme/skopeo-{who.replace('_', '-')}"
    img = build_image(workdir / "src", media="oci", multi_arch=True)
    skopeo.copy(img.source, server.docker(repo, "v1"), all=True, dest_creds=creds)

    assert server.describe(repo, "v1", creds=creds) == img.digests
    assert skopeo.inspect_raw(server.docker(repo, "v1"), creds=creds) == img.top
    assert skopeo.list_tags(server.docker(repo, "v1").rsplit(":", 1)[0], creds=creds) == ["v1"]

    dest = workdir / "pulled"
    skopeo.copy(server.docker(repo, "v1"), f"oci:{dest}:back", all=True, src_creds=creds)
    pulled, blobs = read_oci_layout(dest, "back")
    assert pulled == img.digests
    assert blobs == {d: img.blobs[d] for d in img.digests.blobs()}

    # and without credentials the same repository is closed
    assert_auth_failure(skopeo.inspect_raw, server.docker(repo, "v1"))


def test_podman_push_pull_with_robot(reg, podman, workdir):
    """podman push (--format oci, --digestfile) and pull back with the push robot; pull one platform
    of a multi-arch image with the pull robot."""
    server, ci, node = reg.server, reg.principals["acme_ci"], reg.principals["acme_node"]
    img = build_image(workdir / "src", media="oci", platform="linux/arm64")
    (plat, m), = img.digests.manifests.items()
    local = podman("pull", img.source).strip().splitlines()[-1]
    assert local == m.config.split(":")[1]

    digestfile = workdir / "digest"
    podman("push", "--tls-verify=false", "--format", "oci", "--digestfile", digestfile, local,
           server.docker("acme/podman", "v1"), creds=ci)
    pushed = digestfile.read_text().strip()
    described = server.describe("acme/podman", "v1", creds=ci)
    assert described.digest == pushed
    assert described.manifests[plat].config == m.config
    podman("rmi", "-f", local)

    back = podman("pull", "--tls-verify=false", server.docker("acme/podman", pushed), creds=node).strip().splitlines()[-1]
    assert back == local
    assert json.loads(podman("image", "inspect", back))[0]["Digest"] == pushed
    podman("rmi", "-f", back)

    # one platform out of a multi-arch index, pull robot
    base = reg.images["base"]
    arm = base.manifest("linux/arm/v7")
    got = podman("pull", "--tls-verify=false", "--platform", "linux/arm/v7", server.docker("acme/base", "v1"),
                 creds=node).strip().splitlines()[-1]
    assert got == arm.config.split(":")[1]
    podman("rmi", "-f", got)

    # the pull robot cannot push
    img2 = build_image(workdir / "src2", media="oci")
    local2 = podman("pull", img2.source).strip().splitlines()[-1]
    try:
        assert_auth_failure(podman, "push", "--tls-verify=false", local2, server.docker("acme/podman-denied", "v1"), creds=node)
    finally:
        podman("rmi", "-f", local2)
    assert server.request("GET", "/v2/acme/podman-denied/tags/list", creds=reg.admin).status == 404


def test_containerd_pull_all_platforms_with_pull_robot(reg, containerd):
    """kubelet's path: containerd's resolver does the token dance (POST realm, then GET fallback)."""
    server, node = reg.server, reg.principals["acme_node"]
    base = reg.images["base"]
    ref = server.ref("acme/base", "v1")
    containerd.ctr("images", "pull", "--plain-http", "--all-platforms", ref, creds=node)
    assert containerd.image_target(ref) == (OCI_INDEX, base.digest)
    expected = {base.digest} | {m.digest for m in base.digests.manifests.values()} | base.digests.blobs()
    assert expected <= containerd.digests()
    for d in (base.digest, base.manifest("linux/arm/v7").digest, base.manifest("linux/arm64").layers[0]):
        assert sha256(containerd.content(d)) == d
    containerd.ctr("images", "rm", ref)

    # what kubelet holds for an imagePullSecret: the robot inside a `pull-secrets` Secret
    secret = reg.admin_api("POST", "/admin/tenants/acme/pull-secrets", {"namespace": "kube-node", "server": server.host},
                           status=201)
    entry = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"][f"{server.host}/acme"]
    arm = base.manifest("linux/arm/v7")
    containerd.ctr("images", "pull", "--plain-http", "--platform", "linux/arm/v7", ref,
                   creds=Creds(entry["username"], entry["password"]))
    assert containerd.image_target(ref) == (OCI_INDEX, base.digest)
    assert {arm.digest, arm.config, *arm.layers} <= containerd.digests()
    containerd.ctr("images", "rm", ref)

    # the same pull without credentials is refused
    assert_auth_failure(containerd.ctr, "images", "pull", "--plain-http", "--all-platforms", ref)


# --- Kubernetes pull Secret ------------------------------------------------------------------------


def test_skopeo_authfile_from_pull_secret(reg, skopeo, workdir):
    """The `.dockerconfigjson` of a `pull-secrets` Secret, keyed `<host:port>/acme`, used as-is by
    containers/image (the same JSON kubelet reads)."""
    server = reg.server
    secret = reg.admin_api("POST", "/admin/tenants/acme/pull-secrets", {"namespace": "team-a", "server": server.host},
                           status=201)
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"]["namespace"] == "team-a"
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert list(config["auths"]) == [f"{server.host}/acme"]
    entry = config["auths"][f"{server.host}/acme"]
    assert base64.b64decode(entry["auth"]).decode() == f"{entry['username']}:{entry['password']}"
    authfile = workdir / "dockerconfig.json"
    authfile.write_text(json.dumps(config))

    base = reg.images["base"]
    dest = workdir / "pulled"
    skopeo.copy(server.docker("acme/base", "v1"), f"oci:{dest}:back", all=True, extra=("--src-authfile", str(authfile)))
    assert read_oci_layout(dest, "back")[0] == base.digests
    assert inspect_with_authfile(skopeo, server.docker("acme/base", "v1"), authfile) == base.top

    # the key is path-scoped: the same credentials under `<host:port>/elsewhere` are not used for acme
    moved = workdir / "elsewhere.json"
    moved.write_text(json.dumps({"auths": {f"{server.host}/elsewhere": entry}}))
    assert_auth_failure(inspect_with_authfile, skopeo, server.docker("acme/base", "v1"), moved)

    # pull-only: the Secret's robot cannot push, and it sees nothing of other tenants
    img = build_image(workdir / "src", media="oci")
    assert_auth_failure(skopeo, "copy", "--dest-tls-verify=false", "--dest-authfile", str(authfile), img.source,
                        server.docker("acme/from-secret", "v1"))
    creds = Creds(entry["username"], entry["password"])
    assert_auth_failure(skopeo.inspect_raw, server.docker("other/app", "v1"), creds=creds)


# --- isolation between tenants --------------------------------------------------------------------


def test_robot_cannot_pull_other_tenant_skopeo(reg, skopeo, workdir):
    server, ci = reg.server, reg.principals["acme_ci"]
    ref = server.docker("other/app", "v1")
    assert_auth_failure(skopeo.inspect_raw, ref, creds=ci)
    dest = workdir / "stolen"
    dest.mkdir()
    assert_auth_failure(skopeo.copy, ref, f"dir:{dest}", all=True, src_creds=ci)
    assert_auth_failure(skopeo.list_tags, ref.rsplit(":", 1)[0], creds=ci)
    # a child manifest and a layer by digest are just as closed
    child = reg.images["other"].manifest("linux/arm64")
    assert_auth_failure(skopeo.inspect_raw, server.docker("other/app", child.digest), creds=ci)
    # …while other's own robot gets it (the image is there)
    assert skopeo.inspect_raw(ref, creds=reg.principals["other_ci"]) == reg.images["other"].top


def test_robot_cannot_pull_other_tenant_podman(reg, podman):
    server = reg.server
    for who in ("acme_ci", "acme_node", "alice"):
        assert_auth_failure(podman, "pull", "--tls-verify=false", server.docker("other/app", "v1"), creds=reg.principals[who])


def test_robot_cannot_pull_other_tenant_ctr(reg, containerd):
    server = reg.server
    ref = server.ref("other/app", "v1")
    for who in ("acme_node", "acme_ci"):
        assert_auth_failure(containerd.ctr, "images", "pull", "--plain-http", "--all-platforms", ref, creds=reg.principals[who])
    assert ref not in containerd.ctr("images", "ls", "-q").split()


def test_robot_cannot_push_into_other_tenant(reg, skopeo, workdir):
    """Neither a new repository nor an existing one (no overwrite of other/app:v1, no new tag)."""
    server, ci = reg.server, reg.principals["acme_ci"]
    img = build_image(workdir / "src", media="oci", multi_arch=True)
    assert_auth_failure(skopeo.copy, img.source, server.docker("other/evil", "v1"), all=True, dest_creds=ci)
    assert_auth_failure(skopeo.copy, img.source, server.docker("other/app", "v1"), all=True, dest_creds=ci)
    # a copy from acme into other (containers/image tries a cross-repository mount first)
    assert_auth_failure(skopeo.copy, server.docker("acme/base", "v1"), server.docker("other/app", "v2"), all=True,
                        src_creds=ci, dest_creds=ci)
    owner = reg.principals["other_ci"]
    assert server.request("GET", "/v2/other/evil/tags/list", creds=owner).status == 404
    assert server.request("GET", "/v2/other/app/tags/list", creds=owner).json()["tags"] == ["v1"]
    assert server.get_manifest("other/app", "v1", creds=owner).body == reg.images["other"].top


# --- public tenant ---------------------------------------------------------------------------------


def test_anonymous_pull_of_public_tenant(reg, skopeo, workdir):
    server, pub = reg.server, reg.images["pub"]
    # no credentials at all (the shared auth file is empty)
    assert skopeo.inspect_raw(server.docker("pub/app", "v1")) == pub.top
    dest = workdir / "pulled"
    skopeo.copy(server.docker("pub/app", "v1"), f"oci:{dest}:back")
    assert read_oci_layout(dest, "back")[0] == pub.digests
    # anonymous push is refused, to a new and to the existing repository
    img = build_image(workdir / "src", media="oci")
    assert_auth_failure(skopeo.copy, img.source, server.docker("pub/anon", "v1"))
    assert_auth_failure(skopeo.copy, img.source, server.docker("pub/app", "v1"))
    # so is a push by another tenant's robot: public means pull, nothing else
    assert_auth_failure(skopeo.copy, img.source, server.docker("pub/app", "v2"), dest_creds=reg.principals["acme_ci"])
    assert server.get_manifest("pub/app", "v1", creds=reg.admin).body == pub.top
    assert server.request("GET", "/v2/pub/anon/tags/list", creds=reg.admin).status == 404
    # and anonymity does not reach the private tenants
    assert_auth_failure(skopeo.inspect_raw, server.docker("acme/base", "v1"))


# --- revocation ------------------------------------------------------------------------------------


def test_revoked_robot_cannot_pull(reg, skopeo, containerd):
    server = reg.server
    temp = reg.robot("acme", "temp-" + secrets.token_hex(3), ["pull"])
    ref = server.docker("acme/base", "v1")
    assert skopeo.inspect_raw(ref, creds=temp) == reg.images["base"].top
    # a token issued before the revocation
    challenge = server.request("GET", "/v2/acme/base/manifests/v1", anonymous=True)
    assert challenge.status == 401
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge.headers["www-authenticate"]))
    assert params["scope"] == "repository:acme/base:pull"
    token_res = server.request(
        "GET", f"{params['realm']}?service={params['service']}&scope=repository:acme/base:pull",
        headers={"Authorization": "Basic " + base64.b64encode(str(temp).encode()).decode()})
    assert token_res.status == 200, token_res
    token = token_res.json()["token"]
    bearer = {"Authorization": "Bearer " + token, "Accept": OCI_INDEX}
    assert server.request("GET", "/v2/acme/base/manifests/v1", headers=bearer).status == 200

    name = temp.user.split("+", 1)[1]
    reg.admin_api("DELETE", f"/admin/tenants/acme/robots/{name}", status=200)

    assert_auth_failure(skopeo.inspect_raw, ref, creds=temp)
    assert_auth_failure(containerd.ctr, "images", "pull", "--plain-http", "--all-platforms", server.ref("acme/base", "v1"), creds=temp)
    assert server.request("GET", "/v2/acme/base/manifests/v1", headers=bearer).status == 401
