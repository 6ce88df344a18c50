"""The docker CLI against a `berth serve` with token auth on — no Docker engine needed: `docker
login`, `docker logout` and `docker manifest create|push|inspect --insecure` talk to the registry
by themselves.

One server for the module, set up through the admin API: tenant ``acme`` with a writer user
``alice``, tenant ``other`` with a writer user ``bob``. alice pushes two single-platform images
(Docker types, linux/amd64 and linux/arm64) with skopeo; the docker CLI then builds a manifest list
from them and pushes it.

What the docker CLI does on the wire, and what is checked here:

* `docker login` on 127.0.0.1: docker treats 127.0.0.0/8 as an insecure registry — it tries https,
  gets a plain-HTTP answer and falls back to http. It asks ``offline_token=true`` and stores the
  ``refresh_token`` it gets as ``identitytoken`` in ``$DOCKER_CONFIG/config.json`` — with the user
  name but **no password** (``auth`` is base64 of ``"alice:"``). Every later command must therefore
  get its tokens with ``POST /auth/token grant_type=refresh_token``: the pushes and inspects below
  only work if that path does, and a tampered identity token is refused.
* `docker manifest create` keeps the list in ``$DOCKER_CONFIG/manifests``; `docker manifest inspect`
  answers from that local copy when one exists, so the push uses ``--purge`` and the inspect really
  reads the registry.
* `docker manifest push`: cross-repository mount POSTs (``?from=…&mount=…``) for every config and
  layer, HEAD of each mounted blob, the children PUT **by digest**, then the list PUT by tag.
"""
from __future__ import annotations

import base64
import json
import re
import time
import secrets

import pytest

from tests.e2e.conftest import CommandFailed, Creds, client_env, lower_tempdir, require, run
from tests.fixtures.images import DOCKER_LIST, DOCKER_MANIFEST, build_image, sha256

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "admin-" + secrets.token_hex(12)
AUTH_FAILURE = re.compile(r"denied|unauthorized|authentication required|insufficient_scope|\b401\b|\b403\b", re.IGNORECASE)
NETWORK_FAILURE = re.compile(r"connection refused|no such host|i/o timeout|connection reset", re.IGNORECASE)
PLATFORMS = {"amd64": "linux/amd64", "arm64": "linux/arm64"}


class DockerCLI:
    """The docker CLI with a private DOCKER_CONFIG directory."""

    def __init__(self, binary: str, config_dir) -> None:
        self.binary = binary
        self.config_dir = config_dir
        self.env = client_env({"DOCKER_CONFIG": str(config_dir), "DOCKER_CLI_HINTS": "false"})

    def __call__(self, *args, input: str | None = None) -> str:
        return run([self.binary, *args], env=self.env, input=input, timeout=60)

    def login(self, host: str, creds: Creds) -> str:
        return self("login", host, "-u", creds.user, "--password-stdin", input=creds.password + "\n")

    @property
    def config_path(self):
        return self.config_dir / "config.json"

    def config(self) -> dict:
        return json.loads(self.config_path.read_text())


def jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def assert_auth_failure(fn, *args) -> str:
    with pytest.raises(CommandFailed) as info:
        fn(*args)
    err = info.value.stderr + info.value.stdout
    assert AUTH_FAILURE.search(err), f"expected an auth failure, got:\n{err[-3000:]}"
    assert not NETWORK_FAILURE.search(err), f"expected an auth failure, not a network error:\n{err[-3000:]}"
    return err


# --- the registry and its principals ---------------------------------------------------------------


class Registry:
    def __init__(self, server) -> None:
        self.server = server
        self.host = server.host
        self.users: dict[str, Creds] = {}
        self.images: dict[str, object] = {}

    def admin_api(self, method: str, path: str, body: dict, status: int) -> dict:
        res = self.server.request(method, path, headers={"Content-Type": "application/json"},
                                  body=json.dumps(body).encode(), creds=self.server.admin)
        assert res.status == status, f"{method} {path} -> {res.status} {res.body[:500]!r}"
        return res.json()

    def access_log(self, since: int) -> list[dict]:
        """The JSON access-log entries (registry.logs) written since ``since``. The server writes
        its log from a thread, in batches: read once the log has stopped growing (≤ 3 s)."""
        text, deadline = self.server.log(since), time.monotonic() + 3
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.server.log(since)
            if now == text:
                break
            text = now
        out = []
        for line in text.splitlines():
            if '"logger": "berth.access"' in line:
                out.append(json.loads(line[line.index("{"):]))
        return out


def hit(log: list[dict], method: str, path: str, status: int, *, prefix: bool = False) -> bool:
    """Some request ``method path`` (or, with ``prefix``, a path starting so) was answered ``status``."""
    return any(e["method"] == method and e["status"] == status
               and (e["path"].startswith(path) if prefix else e["path"] == path) for e in log)


@pytest.fixture(scope="module")
def docker_bin() -> str:
    return require("docker")


@pytest.fixture(scope="module")
def reg(berth_factory, skopeo, e2e_root, docker_bin) -> Registry:
    server = berth_factory(auth=True, env={"BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD, "BERTH_ACCESS_LOG": "1"})
    r = Registry(server)
    assert server.request("GET", "/v2/", anonymous=True).status == 401
    for tenant, user in (("acme", "alice"), ("other", "bob")):
        creds = Creds(user, f"{user}-" + secrets.token_hex(8))
        r.admin_api("POST", "/admin/tenants", {"name": tenant}, 201)
        r.admin_api("POST", "/admin/users", {"username": creds.user, "password": creds.password}, 201)
        r.admin_api("PUT", f"/admin/tenants/{tenant}/members/{user}", {"role": "writer"}, 200)
        r.users[user] = creds
    seed = lower_tempdir("docker-seed-", e2e_root)
    for arch, platform in PLATFORMS.items():
        img = build_image(seed / arch, media="docker", platform=platform)
        skopeo.copy(img.source, server.docker(f"acme/img-{arch}", "1"), dest_creds=r.users["alice"])
        r.images[arch] = img
    bob_img = build_image(seed / "bob", media="docker", platform="linux/amd64")
    skopeo.copy(bob_img.source, server.docker("other/app", "1"), dest_creds=r.users["bob"])
    r.images["bob"] = bob_img
    return r



@pytest.fixture(scope="module")
def alice(reg, docker_bin, e2e_root) -> DockerCLI:
    """alice's docker CLI, logged in (identity token stored)."""
    cli = DockerCLI(docker_bin, lower_tempdir("docker-alice-", e2e_root))
    mark = reg.server.log_size()
    out = cli.login(reg.host, reg.users["alice"])
    assert "Login Succeeded" in out
    cli.login_log = reg.access_log(mark)
    return cli


@pytest.fixture(scope="module")
def pushed_list(reg, alice) -> dict:
    """`docker manifest create` + `docker manifest push --purge` of acme/multi:1 as alice."""
    h = reg.host
    mark = reg.server.log_size()
    out = alice("manifest", "create", "--insecure", f"{h}/acme/multi:1", f"{h}/acme/img-amd64:1", f"{h}/acme/img-arm64:1")
    assert "Created manifest list" in out, out
    out = alice("manifest", "push", "--insecure", "--purge", f"{h}/acme/multi:1")
    digest = out.strip().splitlines()[-1].strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"docker manifest push printed {out!r}"
    return {"digest": digest, "log": reg.access_log(mark), "stdout": out}


# --- tests -----------------------------------------------------------------------------------------


def test_login_stores_an_identity_token_not_the_password(reg, alice):
    entry = alice.config()["auths"][reg.host]
    token = entry.get("identitytoken")
    assert token, f"docker stored no identity token: {entry}"
    # the user name is kept (in "auth"), the password is not — anywhere in the file
    assert base64.b64decode(entry.get("auth", "")).decode() == "alice:", entry
    assert reg.users["alice"].password not in alice.config_path.read_text()
    claims = jwt_claims(token)
    assert claims["sub"] == "alice", claims
    # login asked the token realm for a refresh token (offline_token=true): the identity token is
    # one (its audience is the service's refresh audience), and the realm answered it (the JSON
    # access log names routes, never query strings, which may carry credentials)
    assert claims["aud"].endswith("#refresh"), claims
    assert any(e["route"] == "/auth/token" and e["status"] == 200 for e in alice.login_log), alice.login_log


def test_manifest_push_builds_a_list_of_the_exact_children(reg, alice, skopeo, pushed_list):
    server, amd, arm = reg.server, reg.images["amd64"], reg.images["arm64"]
    # what the registry serves for the tag is the list docker said it pushed
    res = server.get_manifest("acme/multi", "1", creds=reg.users["alice"])
    assert res.headers["docker-content-digest"] == pushed_list["digest"] == sha256(res.body)
    doc = res.json()
    assert doc["mediaType"] == DOCKER_LIST and res.headers["content-type"] == DOCKER_LIST
    refs = {(d["platform"]["os"] + "/" + d["platform"]["architecture"]): (d["digest"], d["size"], d["mediaType"])
            for d in doc["manifests"]}
    assert refs == {
        "linux/amd64": (amd.digest, len(amd.top), DOCKER_MANIFEST),
        "linux/arm64": (arm.digest, len(arm.top), DOCKER_MANIFEST),
    }
    # the children were put into acme/multi by digest, byte for byte, with their blobs mounted
    for img in (amd, arm):
        child = server.get_manifest("acme/multi", img.digest, creds=reg.users["alice"])
        assert child.body == img.top
        for blob in img.digests.blobs():
            assert server.get_blob("acme/multi", blob, creds=reg.users["alice"]) == img.blobs[blob]
    # skopeo, as the same user, reads the same bytes and resolves one platform to its child
    assert skopeo.inspect_raw(server.docker("acme/multi", "1"), creds=reg.users["alice"]) == res.body
    for arch, img in (("amd64", amd), ("arm64", arm)):
        cfg = skopeo.inspect_raw(server.docker("acme/multi", "1"), creds=reg.users["alice"], config=True, override_arch=arch)
        assert sha256(cfg) == img.manifest(f"linux/{arch}").config

    # the wire: cross-repository mounts answered 201, children PUT by digest, the list PUT by tag
    log = pushed_list["log"]
    mounts = [e for e in log if e["method"] == "POST" and e["path"].startswith("/v2/acme/multi/blobs/uploads/?")
              and "mount=" in e["path"]]
    assert mounts and all(e["status"] == 201 for e in mounts), mounts
    for img in (amd, arm):
        assert hit(log, "PUT", f"/v2/acme/multi/manifests/{img.digest}", 201), log
    assert hit(log, "PUT", "/v2/acme/multi/manifests/1", 201), log
    # tokens came from POST /auth/token (grant_type=refresh_token: docker holds no password) — never a Basic GET
    assert hit(log, "POST", "/auth/token", 200), log
    assert not any(e["method"] == "GET" and e["route"] == "/auth/token" for e in log), log


def test_manifest_inspect_shows_both_platforms_from_the_registry(reg, alice, pushed_list):
    # --purge removed the local copy: this is what the registry serves
    assert not (alice.config_dir / "manifests").exists() or not any((alice.config_dir / "manifests").iterdir())
    mark = reg.server.log_size()
    doc = json.loads(alice("manifest", "inspect", "--insecure", f"{reg.host}/acme/multi:1"))
    assert hit(reg.access_log(mark), "GET", "/v2/acme/multi/manifests/1", 200), reg.access_log(mark)
    assert doc["mediaType"] == DOCKER_LIST
    got = {(d["platform"]["os"], d["platform"]["architecture"]): d["digest"] for d in doc["manifests"]}
    assert got == {("linux", "amd64"): reg.images["amd64"].digest, ("linux", "arm64"): reg.images["arm64"].digest}
    # --verbose resolves every child through the registry as well
    verbose = json.loads(alice("manifest", "inspect", "--insecure", "--verbose", f"{reg.host}/acme/multi:1"))
    assert {v["Descriptor"]["digest"] for v in verbose} == set(got.values())


def test_tampered_identity_token_is_refused(reg, alice, pushed_list, docker_bin, e2e_root):
    """docker really authenticates with the identity token: break its signature and it is locked out."""
    cli = DockerCLI(docker_bin, lower_tempdir("docker-tampered-", e2e_root))
    config = alice.config()
    token = config["auths"][reg.host]["identitytoken"]
    head, payload, sig = token.split(".")
    config["auths"][reg.host]["identitytoken"] = ".".join((head, payload, sig[::-1]))
    cli.config_path.write_text(json.dumps(config))
    mark = reg.server.log_size()
    assert_auth_failure(cli, "manifest", "inspect", "--insecure", f"{reg.host}/acme/multi:1")
    assert hit(reg.access_log(mark), "POST", "/auth/token", 401), reg.access_log(mark)


def test_other_tenant_cannot_inspect_acme_list(reg, docker_bin, e2e_root, pushed_list):
    bob = DockerCLI(docker_bin, lower_tempdir("docker-bob-", e2e_root))
    bob.login(reg.host, reg.users["bob"])
    assert bob.config()["auths"][reg.host].get("identitytoken")
    # bob's login works for his own tenant...
    own = json.loads(bob("manifest", "inspect", "--insecure", f"{reg.host}/other/app:1"))
    assert own["config"]["digest"] == reg.images["bob"].manifest("linux/amd64").config
    # ...and not for acme's list, nor a child by digest
    assert_auth_failure(bob, "manifest", "inspect", "--insecure", f"{reg.host}/acme/multi:1")
    assert_auth_failure(bob, "manifest", "inspect", "--insecure", f"{reg.host}/acme/multi@{reg.images['amd64'].digest}")


def test_logout_forgets_the_credentials(reg, docker_bin, e2e_root, pushed_list):
    cli = DockerCLI(docker_bin, lower_tempdir("docker-logout-", e2e_root))
    cli.login(reg.host, reg.users["alice"])
    assert json.loads(cli("manifest", "inspect", "--insecure", f"{reg.host}/acme/multi:1"))["mediaType"] == DOCKER_LIST
    cli("logout", reg.host)
    assert reg.host not in cli.config().get("auths", {})
    assert "identitytoken" not in cli.config_path.read_text()
    # anonymous now: acme is private
    assert_auth_failure(cli, "manifest", "inspect", "--insecure", f"{reg.host}/acme/multi:1")
