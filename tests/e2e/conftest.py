"""End-to-end fixtures: a real `berth serve` process and real registry clients.

* ``berth`` — one session-wide server with ``--no-auth``; ``berth_factory`` starts more
  with options (auth on/off, environment, extra arguments) for auth tests.
* ``run`` — run a command with a timeout; returns stdout, raises ``CommandFailed`` with stderr.
  With ``auth=True`` and ``env={"BERTH_ADMIN_PASSWORD": pw}`` the server's ``admin`` is ``Creds``.
* ``BerthServer.request/get_manifest/get_blob/describe`` — plain HTTP checks of what the registry
  serves; with ``creds`` they answer a Bearer challenge through the token realm (Basic otherwise).
* ``skopeo``, ``podman``, ``buildah``, ``containerd`` (``.ctr(...)``) — client wrappers on private
  storage; every call takes optional ``creds=Creds(user, password)`` (``--creds``/``--src-creds``/
  ``--dest-creds``/``--user``, put before the last positional argument: ctr's parser stops at the
  first positional, so pass ctr commands one positional only when using creds).
* Missing client binaries: in CI (tests/ci.py: ``CI`` set to anything but false/0/no) the test
  fails, otherwise it is skipped with the reason.

Everything lives under temp directories whose paths are valid image-reference paths (podman
names images taken from ``oci:``/``dir:`` paths "localhost/<path>": no capitals, and no
component ending in "_" — tempfile.mkdtemp's names break it).
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.ci import skip_or_fail

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENT_TIMEOUT = 120  # seconds any single client command may take
_PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


# --- helpers ------------------------------------------------------------------------------------


def require(binary: str) -> str:
    """Path of a client binary; a missing one fails in CI and skips elsewhere (tests/ci.py)."""
    path = shutil.which(binary)
    if path:
        return path
    how = ("the docker CLI comes with the machine image (no engine is needed)" if binary == "docker"
           else "run .ci/install-clients as root")
    reason = f"{binary} is not installed ({how})"
    skip_or_fail(reason)


class CommandFailed(AssertionError):
    def __init__(self, cmd: list[str], returncode: int | None, stdout: str, stderr: str) -> None:
        self.cmd, self.returncode, self.stdout, self.stderr = cmd, returncode, stdout, stderr
        what = "timed out" if returncode is None else f"exited {returncode}"
        super().__init__(f"{' '.join(map(str, cmd))} {what}\n--- stderr ---\n{stderr[-6000:]}\n--- stdout ---\n{stdout[-2000:]}")


def client_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


def run(cmd: list, *, timeout: float = CLIENT_TIMEOUT, env: dict[str, str] | None = None, check: bool = True, input: str | None = None) -> str:
    """Run ``cmd``; return its stdout. Raise ``CommandFailed`` (with stderr) on failure or timeout."""
    cmd = [str(c) for c in cmd]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env or client_env(), input=input)
    except subprocess.TimeoutExpired as e:
        raise CommandFailed(cmd, None, _text(e.stdout), _text(e.stderr)) from None
    if check and p.returncode != 0:
        raise CommandFailed(cmd, p.returncode, p.stdout, p.stderr)
    return p.stdout


def _text(b) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


_REF_PATH = re.compile(r"^(/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+$")


def lower_tempdir(prefix: str, base: str | os.PathLike | None = None) -> Path:
    """A fresh directory whose path is a valid image-reference path: lower-case letters, digits and
    inner dashes only. podman names images taken from oci:/dir: paths after the path
    ("localhost/<path>") and rejects capitals, and also components that end in "_" or "-"."""
    base = Path(base or tempfile.gettempdir())
    if not _REF_PATH.match(str(base)):
        base = Path("/tmp")
    while True:
        path = base / f"{prefix.lower()}{os.urandom(4).hex()}"
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Creds:
    user: str
    password: str

    def __str__(self) -> str:  # the U:P form every client takes
        return f"{self.user}:{self.password}"


# --- the registry process -----------------------------------------------------------------------


@dataclass
class HTTPResult:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class BerthServer:
    """A `berth serve` subprocess on 127.0.0.1 with its own data directory."""

    def __init__(self, workdir: Path, *, auth: bool = False, env: dict[str, str] | None = None,
                 extra_args: tuple[str, ...] = (), port: int | None = None, admin_user: str = "admin") -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.log_path = workdir / "berth.log"
        self.auth = auth
        self.env = env or {}
        self.extra_args = tuple(extra_args)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self._log = None
        # the bootstrap admin, when auth is on and its password is given through the environment
        password = self.env.get("BERTH_ADMIN_PASSWORD")
        self.admin: Creds | None = Creds(admin_user, password) if auth and password else None

    @property
    def host(self) -> str:
        """host:port, as image references want it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def ref(self, repo: str, tag_or_digest: str = "latest") -> str:
        sep = "@" if ":" in tag_or_digest else ":"
        return f"{self.host}/{repo}{sep}{tag_or_digest}"

    def docker(self, repo: str, tag_or_digest: str = "latest") -> str:
        return "docker://" + self.ref(repo, tag_or_digest)

    def start(self, timeout: float = 30) -> "BerthServer":
        berth = REPO_ROOT / ".venv" / "bin" / "berth"
        cmd = [str(berth) if berth.exists() else shutil.which("berth") or "berth",
               "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data", str(self.data)]
        if not self.auth:
            cmd.append("--no-auth")
        cmd += list(self.extra_args)
        self._log = open(self.log_path, "ab")
        env = client_env({"BERTH_LOG_LEVEL": "INFO", **self.env})
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"berth exited with {self.proc.returncode} during start-up:\n{self.log()}")
            try:
                # /v2/ answers 200 with auth off and 401 (a challenge) with auth on: either means "up"
                if self.request("GET", "/v2/", anonymous=True).status in (200, 401):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"berth did not answer GET /v2/ within {timeout}s:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log:
            self._log.close()
            self._log = None

    def log(self, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    # --- plain HTTP, for checking what the registry serves ---

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes | None = None,
                creds: Creds | None = None, anonymous: bool = False) -> HTTPResult:
        """One HTTP request. With ``creds``, a 401 Bearer challenge is answered by fetching a token from
        the realm with Basic credentials (the registry token flow); Basic challenges get Basic."""
        headers = dict(headers or {})
        res = self._send(method, path, headers, body)
        if res.status == 401 and creds is not None and not anonymous:
            challenge = res.headers.get("www-authenticate", "")
            basic = "Basic " + base64.b64encode(str(creds).encode()).decode()
            if challenge.lower().startswith("bearer"):
                params = _parse_challenge(challenge)
                query = {k: v for k, v in params.items() if k in ("service", "scope")}
                token_res = self._send("GET", params["realm"] + "?" + urllib.parse.urlencode(query), {"Authorization": basic}, None)
                if token_res.status != 200:
                    return token_res
                doc = token_res.json()
                headers["Authorization"] = "Bearer " + (doc.get("token") or doc["access_token"])
            else:
                headers["Authorization"] = basic
            res = self._send(method, path, headers, body)
        return res

    def _send(self, method: str, path: str, headers: dict[str, str], body: bytes | None) -> HTTPResult:
        url = path if path.startswith("http") else self.url + path
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=30) as r:
                return HTTPResult(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
        except urllib.error.HTTPError as e:
            return HTTPResult(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())

    def get_manifest(self, repo: str, reference: str, *, accept: str | None = None, creds: Creds | None = None) -> HTTPResult:
        from tests.fixtures.images import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

        accept = accept or ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
        res = self.request("GET", f"/v2/{repo}/manifests/{reference}", headers={"Accept": accept}, creds=creds)
        assert res.status == 200, f"GET manifest {repo}:{reference} -> {res.status} {res.body[:500]!r}"
        return res

    def get_blob(self, repo: str, digest: str, *, creds: Creds | None = None) -> bytes:
        res = self.request("GET", f"/v2/{repo}/blobs/{digest}", creds=creds)
        assert res.status == 200, f"GET blob {repo}@{digest} -> {res.status} {res.body[:500]!r}"
        return res.body

    def describe(self, repo: str, reference: str, *, creds: Creds | None = None):
        """``ImageDigests`` of what the registry serves for repo:reference, every child and blob fetched
        over HTTP and checked against its digest."""
        from tests.fixtures.images import describe, sha256

        top = self.get_manifest(repo, reference, creds=creds)
        assert top.headers.get("docker-content-digest") == sha256(top.body), top.headers

        def fetch_manifest(digest: str) -> bytes:
            r = self.get_manifest(repo, digest, creds=creds)
            assert sha256(r.body) == digest and r.headers.get("docker-content-digest") == digest
            return r.body

        def fetch_blob(digest: str) -> bytes:
            data = self.get_blob(repo, digest, creds=creds)
            assert sha256(data) == digest, f"blob {digest} served with digest {sha256(data)}"
            return data

        digests = describe(top.body, fetch_manifest, fetch_blob)
        for d in digests.blobs():
            fetch_blob(d)
        return digests


def _parse_challenge(header: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


@pytest.fixture(scope="session")
def e2e_root() -> Path:
    root = lower_tempdir("berth-e2e-")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def berth_factory(e2e_root):
    """``berth_factory(auth=False, env=None, extra_args=())`` starts another server (stopped at session end)."""
    servers: list[BerthServer] = []

    def start(*, auth: bool = False, env: dict[str, str] | None = None, extra_args: tuple[str, ...] = (),
              admin_user: str = "admin") -> BerthServer:
        server = BerthServer(lower_tempdir("berth-", e2e_root), auth=auth, env=env, extra_args=extra_args,
                             admin_user=admin_user)
        servers.append(server)
        return server.start()

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def berth(berth_factory) -> BerthServer:
    """The shared registry for the e2e tests: auth off. Tests use their own repository names."""
    return berth_factory(auth=False)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(autouse=True)
def _berth_log_on_failure(request):
    """When a test that used a server fails, print what that server logged during the test:
    the shared `berth`, and a module's own auth-enabled server (its `reg` fixture's `.server`)."""
    watched = [request.getfixturevalue("berth")] if "berth" in request.fixturenames else []
    if "reg" in request.fixturenames:
        watched.append(request.getfixturevalue("reg").server)
    marks = {id(s): s.log_size() for s in watched}
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for s in watched:
            sys.stdout.write(f"\n--- berth log ({s.url}) during {request.node.name} ---\n{s.log(marks[id(s)])[-20000:]}\n")


@pytest.fixture
def workdir(e2e_root, request) -> Path:
    """A fresh lower-case directory for one test's images and pulls."""
    return lower_tempdir("t-", e2e_root)


@pytest.fixture
def repo(request) -> str:
    """A repository name unique to the test (lower-case, valid per the distribution-spec)."""
    import re

    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60].strip("-")
    return f"e2e/{base}-{os.urandom(3).hex()}"


# --- clients --------------------------------------------------------------------------------------


@dataclass
class Skopeo:
    binary: str
    env: dict[str, str]
    timeout: float = CLIENT_TIMEOUT

    def __call__(self, *args, timeout: float | None = None) -> str:
        return run([self.binary, *self._global(), *args], env=self.env, timeout=timeout or self.timeout)

    def _global(self) -> list[str]:
        policy = self.env.get("BERTH_E2E_POLICY")
        return ["--policy", policy] if policy else []

    def copy(self, src: str, dst: str, *, all: bool = False, preserve_digests: bool = True, src_creds: Creds | None = None,
             dest_creds: Creds | None = None, extra: tuple[str, ...] = ()) -> str:
        args = ["copy"]
        if all:
            args.append("--all")
        if preserve_digests:
            args.append("--preserve-digests")
        if src.startswith("docker://"):
            args.append("--src-tls-verify=false")
            if src_creds:
                args += ["--src-creds", str(src_creds)]
        if dst.startswith("docker://"):
            args.append("--dest-tls-verify=false")
            if dest_creds:
                args += ["--dest-creds", str(dest_creds)]
        return self(*args, *extra, src, dst)

    def inspect_raw(self, ref: str, *, creds: Creds | None = None, config: bool = False, override_arch: str | None = None,
                    override_variant: str | None = None, override_os: str | None = None) -> bytes:
        args = ["inspect", *(["--config"] if config else []), "--raw", "--tls-verify=false"]
        if override_os:
            args += ["--override-os", override_os]
        if override_arch:
            args += ["--override-arch", override_arch]
        if override_variant:
            args += ["--override-variant", override_variant]
        if creds:
            args += ["--creds", str(creds)]
        # bytes exactly as served: run without text decoding surprises
        cmd = [self.binary, *self._global(), *args, ref]
        p = subprocess.run(cmd, capture_output=True, env=self.env, timeout=self.timeout)
        if p.returncode != 0:
            raise CommandFailed(cmd, p.returncode, _text(p.stdout), _text(p.stderr))
        return p.stdout

    def list_tags(self, ref: str, *, creds: Creds | None = None) -> list[str]:
        args = ["list-tags", "--tls-verify=false"] + (["--creds", str(creds)] if creds else [])
        return json.loads(self(*args, ref))["Tags"]

    def delete(self, ref: str, *, creds: Creds | None = None) -> str:
        args = ["delete", "--tls-verify=false"] + (["--creds", str(creds)] if creds else [])
        return self(*args, ref)


@pytest.fixture(scope="session")
def containers_env(e2e_root) -> dict[str, str]:
    """Private containers/storage + containers.conf + auth file for podman, buildah and skopeo."""
    base = lower_tempdir("containers-", e2e_root)
    (base / "run").mkdir()
    (base / "tmp").mkdir()
    storage = base / "storage.conf"
    storage.write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{base}/run"\ngraphroot = "{base}/graph"\n'
    )
    conf = base / "containers.conf"
    conf.write_text(
        '[engine]\nevents_logger = "none"\ncgroup_manager = "cgroupfs"\n'
        f'tmp_dir = "{base}/tmp"\n'
    )
    auth = base / "auth.json"
    auth.write_text('{"auths":{}}')
    policy = base / "policy.json"
    policy.write_text('{"default":[{"type":"insecureAcceptAnything"}]}')
    return client_env({
        "CONTAINERS_STORAGE_CONF": str(storage),
        "CONTAINERS_CONF": str(conf),
        "REGISTRY_AUTH_FILE": str(auth),
        "TMPDIR": str(base / "tmp"),
        "BERTH_E2E_POLICY": str(policy),
    })


@pytest.fixture(scope="session")
def skopeo(containers_env) -> Skopeo:
    return Skopeo(require("skopeo"), containers_env)


@dataclass
class Podman:
    """podman or buildah with the private storage; ``creds`` adds ``--creds`` to commands that talk to a registry."""

    binary: str
    env: dict[str, str]
    timeout: float = CLIENT_TIMEOUT

    def __call__(self, *args, creds: Creds | None = None, timeout: float | None = None) -> str:
        args = list(args)
        if creds:
            args[-1:-1] = ["--creds", str(creds)]  # options precede the last positional in every command we use
        return run([self.binary, *args], env=self.env, timeout=timeout or self.timeout)


@pytest.fixture(scope="session")
def podman(containers_env) -> Podman:
    return Podman(require("podman"), containers_env)


@pytest.fixture(scope="session")
def buildah(containers_env) -> Podman:
    return Podman(require("buildah"), containers_env)


@dataclass
class Containerd:
    """A containerd started by hand under a temp dir; ``ctr(...)`` runs ctr against it."""

    root: Path
    proc: subprocess.Popen
    address: str
    namespace: str = "berth-e2e"
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    def ctr(self, *args, creds: Creds | None = None, timeout: float = CLIENT_TIMEOUT) -> str:
        args = list(args)
        if creds:
            args[-1:-1] = ["--user", str(creds)]
        return run([shutil.which("ctr") or "ctr", "-a", self.address, "-n", self.namespace, *args], env=self.env, timeout=timeout)

    def content(self, digest: str) -> bytes:
        """The bytes of one blob in the content store."""
        cmd = [shutil.which("ctr") or "ctr", "-a", self.address, "-n", self.namespace, "content", "get", digest]
        p = subprocess.run(cmd, capture_output=True, env=self.env, timeout=CLIENT_TIMEOUT)
        if p.returncode != 0:
            raise CommandFailed(cmd, p.returncode, "", _text(p.stderr))
        return p.stdout

    def digests(self) -> set[str]:
        """Digests in the content store (namespace-isolated)."""
        out = self.ctr("content", "ls", "-q")
        return {line.split()[0] for line in out.splitlines() if line.startswith("sha256:")}

    def image_target(self, ref: str) -> tuple[str, str]:
        """(media type, digest) containerd recorded for an image."""
        for line in self.ctr("images", "ls").splitlines()[1:]:
            cols = line.split()
            if cols and cols[0] == ref:
                return cols[1], cols[2]
        raise AssertionError(f"{ref} not in ctr images ls")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def start_containerd(base: Path, *, cri: bool = False, hosts_dir: Path | None = None) -> Containerd:
    require("containerd")
    require("ctr")
    sock = base / "containerd.sock"
    config = base / "config.toml"
    disabled = [] if cri else ['"io.containerd.grpc.v1.cri"']
    cri_conf = ""
    if cri:
        cri_conf = (
            '[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "native"\n'
            + (f'[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "{hosts_dir}"\n' if hosts_dir else "")
        )
    config.write_text(
        "version = 2\n"
        f'root = "{base}/root"\nstate = "{base}/state"\n'
        f"disabled_plugins = [{', '.join(disabled)}]\n"
        f'[grpc]\n  address = "{sock}"\n'
        f'[ttrpc]\n  address = "{sock}.ttrpc"\n'
        '[debug]\n  address = ""\n'
        '[metrics]\n  address = ""\n'
        f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{base}/opt"\n'
        '[plugins."io.containerd.metadata.v1.bolt"]\n  content_sharing_policy = "isolated"\n'
        + cri_conf
    )
    log_path = base / "containerd.log"
    log = open(log_path, "ab")
    proc = subprocess.Popen([shutil.which("containerd"), "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            env=client_env(), start_new_session=True)
    log.close()
    env = client_env({"CONTAINERD_SNAPSHOTTER": "native"})
    cd = Containerd(base, proc, str(sock), log_path=log_path, env=env)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"containerd exited with {proc.returncode}:\n{cd.log()[-5000:]}")
        if sock.exists():
            try:
                run([shutil.which("ctr"), "-a", str(sock), "version"], env=env, timeout=10)
                return cd
            except CommandFailed:
                pass
        if time.monotonic() > deadline:
            stop_containerd(cd)
            raise RuntimeError(f"containerd did not come up within 30s:\n{cd.log()[-5000:]}")
        time.sleep(0.2)


def stop_containerd(cd: Containerd) -> None:
    if cd.proc.poll() is None:
        cd.proc.terminate()
        try:
            cd.proc.wait(15)
        except subprocess.TimeoutExpired:
            cd.proc.kill()
            cd.proc.wait(5)


@pytest.fixture(scope="session")
def containerd(e2e_root) -> Containerd:
    require("containerd")
    require("ctr")
    cd = start_containerd(lower_tempdir("containerd-", e2e_root))
    yield cd
    stop_containerd(cd)
