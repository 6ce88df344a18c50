"""The image built from the Dockerfile (`make image`: buildah bud on a debootstrap base, vfs
storage), run with podman as the Dockerfile promises: a non-root user, a read-only root
filesystem with only /data and /tmp writable, configuration from BERTH_* variables, the
HEALTHCHECK passing, and a multi-arch image pushed through it and pulled back with the
credentials of a pull Secret it made. `make image-test` (marker ``image``)."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from tests.e2e.conftest import BerthServer, CommandFailed, Creds, client_env, free_port, lower_tempdir, require, run
from tests.fixtures.images import build_image, read_oci_layout

from .spec import ROOT, env_names

pytestmark = pytest.mark.image
IMAGE = os.environ.get("BERTH_IMAGE", "localhost/berth:dev")


@pytest.fixture(scope="module")
def podman_env():
    require("podman")
    require("buildah")
    out = run(["bash", ROOT / "tests" / "deploy" / "image.sh", "env"])
    env = client_env(dict(re.findall(r"(\w+)='?([^' ]*)'?", out.split("export", 1)[1])))
    try:
        run(["podman", "image", "exists", IMAGE], env=env)
    except CommandFailed:
        pytest.fail(f"{IMAGE} is not built: run `make image` first (`make image-test` does)", pytrace=False)
    return env


def inspect(env) -> dict:
    return json.loads(run(["podman", "image", "inspect", IMAGE], env=env))[0]


def test_image_config_keeps_the_dockerfile_promises(podman_env):
    cfg = inspect(podman_env)["Config"]
    assert cfg["User"] == "10001:10001"
    assert cfg["Entrypoint"] == ["berth"] and cfg["Cmd"] == ["serve"]
    assert "/data" in cfg["Volumes"] and "5000/tcp" in cfg["ExposedPorts"]
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert {k for k in env if k.startswith("BERTH_")} <= env_names()
    health = inspect(podman_env)["Healthcheck"]  # kept by --format docker (OCI configs have no field)
    assert health and "/healthz" in " ".join(health["Test"])


@pytest.fixture
def container(podman_env, request):
    """A container of the image as config/kubernetes/berth.yaml runs it: on the host network,
    read-only root, /data bind-mounted, /tmp a tmpfs, `serve --config /etc/berth/berth.yaml` with
    the ConfigMap's file, the signing key of the Secret mounted read-only where it says."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from .spec import manifests

    docs = {(d.kind, d.name): d.body for d in manifests() if d.file == "berth.yaml"}
    deploy = docs[("Deployment", "berth")]
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    root = lower_tempdir("berth-image-")
    data = root / "data"
    data.mkdir()
    os.chown(data, 10001, 10001)
    (root / "config").mkdir()
    (root / "config" / "berth.yaml").write_text(docs[("ConfigMap", "berth-config")]["data"]["berth.yaml"])
    key = ec.generate_private_key(ec.SECP256R1())
    (root / "keys").mkdir()
    (root / "keys" / "signing-key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(root / "keys" / "signing-key.pem", 0o440)
    os.chown(root / "keys" / "signing-key.pem", 0, 10001)  # as the Secret volume: defaultMode 0440, fsGroup
    port = free_port()
    name = f"berth-test-{os.urandom(3).hex()}"
    password = "image-test-admin-pw"

    def cleanup():
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print(subprocess.run(["podman", "logs", name], capture_output=True, text=True, env=podman_env).stdout[-5000:])
        subprocess.run(["podman", "rm", "-f", "-t", "5", name], capture_output=True, env=podman_env)
        shutil.rmtree(root, ignore_errors=True)

    request.addfinalizer(cleanup)
    # --health-interval=disable: no systemd timer here; the test runs the check itself
    run(["podman", "run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
         "--health-interval=disable",
         "-v", f"{data}:/data", "-v", f"{root / 'config'}:/etc/berth:ro", "-v", f"{root / 'keys'}:/etc/berth-keys:ro",
         "-e", f"BERTH_PORT={port}", "-e", f"BERTH_ADMIN_PASSWORD={password}", IMAGE, *args], env=podman_env)
    server = BerthServer(root, auth=True, env={"BERTH_ADMIN_PASSWORD": password}, port=port)
    deadline = time.monotonic() + 60
    while True:
        try:
            if server.request("GET", "/v2/", anonymous=True).status == 401:
                break
        except OSError:
            pass
        state = run(["podman", "inspect", "--format", "{{.State.Status}}", name], env=podman_env).strip()
        assert state == "running", run(["podman", "logs", name], env=podman_env, check=False)
        assert time.monotonic() < deadline, "the container did not answer GET /v2/ within 60 s"
        time.sleep(0.5)
    server.signing_public_key = key.public_key()
    return name, server, data


def test_runs_non_root_on_a_read_only_root(container, podman_env):
    name, server, data = container
    assert run(["podman", "exec", name, "id", "-u"], env=podman_env).strip() == "10001"
    with pytest.raises(CommandFailed):
        run(["podman", "exec", name, "touch", "/opt/berth/x"], env=podman_env)
    assert (data / "berth.db").exists() and (data / "berth.db").stat().st_uid == 10001
    run(["podman", "healthcheck", "run", name], env=podman_env)  # the HEALTHCHECK command passes


def test_tokens_are_signed_with_the_mounted_key(container):
    import jwt

    _, server, _ = container
    basic = "Basic " + base64.b64encode(str(server.admin).encode()).decode()
    res = server.request("GET", "/auth/token?service=berth&scope=registry:catalog:*", headers={"Authorization": basic})
    assert res.status == 200, res.body
    claims = jwt.decode(res.json()["token"], server.signing_public_key, algorithms=["ES256"], audience="berth")
    assert claims["sub"] == "admin"


def test_push_a_multi_arch_image_and_pull_it_with_a_pull_secret(container, podman_env, tmp_path):
    name, server, _ = container
    skopeo = require("skopeo")
    admin = server.admin
    basic = "Basic " + base64.b64encode(str(admin).encode()).decode()
    json_headers = {"Content-Type": "application/json", "Authorization": basic}
    assert server.request("POST", "/admin/tenants", body=b'{"name":"acme"}', headers=json_headers).status == 201
    image = build_image(lower_tempdir("src-", tmp_path), multi_arch=True)
    run([skopeo, "copy", "--all", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", str(admin),
         image.source, server.docker("acme/app", "1.0")])
    res = server.request("POST", "/admin/tenants/acme/pull-secrets", headers=json_headers,
                         body=json.dumps({"namespace": "shop", "server": server.host}).encode())
    assert res.status == 201, res.body
    secret = res.json()
    doc = secret.get("secret", secret)
    authfile = tmp_path / "auth.json"
    authfile.write_bytes(base64.b64decode(doc["data"][".dockerconfigjson"]))
    dest = lower_tempdir("pulled-", tmp_path)
    run([skopeo, "copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--authfile", authfile,
         server.docker("acme/app", "1.0"), f"oci:{dest}:1.0"])
    pulled, _ = read_oci_layout(dest, "1.0")
    assert pulled == image.digests
    assert len(pulled.manifests) > 1
    # the pull robot may not push
    with pytest.raises(CommandFailed):
        run([skopeo, "copy", "--dest-tls-verify=false", "--authfile", authfile, image.source,
             server.docker("acme/other", "1.0")])
