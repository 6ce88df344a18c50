"""The registries the bench scripts start side by side: Berth and CNCF Distribution 2.8.2.

Each runs as a subprocess in its own process group on 127.0.0.1 and a free port, with a
fresh data directory under ``workdir``; ``start()`` waits until ``GET /v2/`` answers (200,
or 401 with auth on), ``stop()`` ends exactly what it started. Used by bench/run.py and
bench/conformance_compare.py.

With ``auth = True`` (bench/run.py's default) both registries require bearer tokens:
Berth runs its own realm (admin ``admin`` with a generated password, tenant ``bench``);
Distribution gets ``auth: token:`` pointing at bench/tokenserver.py, started as a second
process (user ``bench``), which signs ES256 JWTs with an ``x5c`` chain to a CA in
Distribution's ``rootcertbundle``. ``user`` / ``password`` are what a client logs in with.
``External`` is a registry somebody else runs (``bench/run.py --target``).
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "/usr/bin/docker-registry"  # Debian's package docker-registry (Distribution 2.8.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_process(command: list[str], log_path: Path, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    with open(log_path, "wb") as out:
        # own process group: stop_process() signals exactly this process (and anything it forked)
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, env=env, start_new_session=True)


def stop_process(proc: subprocess.Popen | None) -> None:
    if not proc or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def http_status(url: str, timeout: float = 2) -> int | None:
    """The status of GET url (None when nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


class Server:
    name = "?"
    auth = False  # class default: conformance_compare.py runs both without auth
    user = ""
    password = ""
    managed = True  # started and stopped here (False: External)

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{self.name}.log"
        if self.auth:
            self.password = secrets.token_urlsafe(18)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def version(self) -> str:
        return ""

    def start(self, timeout: float = 30) -> None:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        self.proc = start_process(self.command(), self.log_path, self.workdir, self.env())
        ready = (200, 401) if self.auth else (200,)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early ({self.proc.returncode}):\n{self.log_tail()}")
            if http_status(self.base + "/v2/") in ready:
                self.after_start()
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer on {self.base}/v2/ within {timeout:.0f} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.1)

    def after_start(self) -> None:
        """Set-up once the server answers (Berth: the bench tenant)."""

    def stop(self) -> None:
        stop_process(self.proc)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class S3Target:
    """Where the S3-backed registries keep their bytes: one SeaweedFS (tests/seaweed.py), one bucket,
    a prefix each (a second bucket is a second SeaweedFS collection, which may find no free volume)."""

    BUCKET = "bench"

    def __init__(self, workdir: Path) -> None:
        sys.path.insert(0, str(ROOT))
        from tests.seaweed import SeaweedFS, missing_reason  # noqa: PLC0415 - only when --storage s3

        reason = missing_reason()
        if reason:
            raise RuntimeError(reason)
        self.seaweed = SeaweedFS(workdir)

    def start(self) -> "S3Target":
        self.seaweed.start()
        self.seaweed.create_bucket(self.BUCKET)
        return self

    def stop(self) -> None:
        self.seaweed.stop()


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (a Berth started with --workers N is a supervisor and N workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


class Berth(Server):
    name = "berth"
    src: Path | None = None  # another Berth tree to run instead (e.g. a before/after comparison)
    workers = 1  # berth serve --workers N
    s3: S3Target | None = None  # set: BERTH_STORAGE_DRIVER=s3, under a prefix of its own
    bench_env: dict[str, str] = {}  # extra BERTH_* settings (bench/run.py: rate limits off, access log off)
    TENANT = "bench"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        if self.auth:
            self.user = "admin"

    def after_start(self) -> None:
        if self.auth:
            self.create_tenant(self.TENANT)

    def create_tenant(self, name: str) -> None:
        basic = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        req = urllib.request.Request(self.base + "/admin/tenants", data=json.dumps({"name": name}).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Basic {basic}"})
        try:
            with urllib.request.urlopen(req, timeout=10):
                pass
        except urllib.error.HTTPError as e:
            if e.code != 409:  # already there
                raise RuntimeError(f"berth: creating tenant {name!r}: {e.code} {e.read()[:300]!r}") from e

    def command(self) -> list[str]:
        serve = ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--data", str(self.workdir / "data")]
        if not self.auth:
            serve.append("--no-auth")
        if self.workers != 1:
            serve += ["--workers", str(self.workers)]
        if self.src is not None:
            return [sys.executable, "-m", "registry.cli", *serve]
        exe = Path(sys.executable).parent / "berth"
        if not exe.exists():
            exe = Path(shutil.which("berth") or ROOT / ".venv" / "bin" / "berth")
        return [str(exe), *serve]

    def env(self) -> dict[str, str] | None:
        env = dict(os.environ)
        if self.src is not None:
            env["PYTHONPATH"] = str(self.src)
        if self.auth:
            # the alias too: trees older than the configuration of issue 8 (--berth-src) know only it
            env["BERTH_AUTH_ADMIN_PASSWORD"] = env["BERTH_ADMIN_PASSWORD"] = self.password
        env.update(self.bench_env)
        if self.s3 is not None:
            sw = self.s3.seaweed
            env.update(BERTH_STORAGE_DRIVER="s3", BERTH_STORAGE_S3_ENDPOINT=sw.endpoint,
                       BERTH_STORAGE_S3_REGION=sw.region, BERTH_STORAGE_S3_BUCKET=self.s3.BUCKET,
                       BERTH_STORAGE_S3_PREFIX=f"berth-{self.port}",
                       BERTH_STORAGE_S3_ACCESS_KEY=sw.access_key, BERTH_STORAGE_S3_SECRET_KEY=sw.secret_key)
        return env

    def version(self) -> str:
        if self.src is not None:
            return f"tree {self.src}"
        try:
            rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True, timeout=5).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "registry", "storage"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return f"git {rev}{' (+local changes)' if dirty else ''}"
        except (OSError, subprocess.SubprocessError):
            return ""


class Distribution(Server):
    name = "distribution"
    s3: S3Target | None = None  # set: Distribution's own s3 driver, under a prefix of its own
    SERVICE = "distribution"
    ISSUER = "bench-token-server"
    token_header = "x5c"  # or "kid" (bench/tokenserver.py): how Distribution finds the signing key

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.token_port = free_port()
        self.token_proc: subprocess.Popen | None = None
        if self.auth:
            self.user = "bench"

    def start(self, timeout: float = 30) -> None:
        if self.auth:
            self.start_token_server(timeout)
        super().start(timeout)

    def start_token_server(self, timeout: float) -> None:
        from tokenserver import write_keys  # noqa: PLC0415 - bench/tokenserver.py, only with auth

        keys = self.workdir / "token-keys"
        keys.mkdir(exist_ok=True)
        self.keys = write_keys(keys)
        self.token_proc = start_process(
            [sys.executable, str(Path(__file__).with_name("tokenserver.py")), "--port", str(self.token_port),
             "--keys", str(keys), "--issuer", self.ISSUER, "--service", self.SERVICE, "--user", self.user,
             "--password", self.password, "--header", self.token_header],
            self.workdir / "tokenserver.log", self.workdir)
        deadline = time.monotonic() + timeout
        while http_status(f"http://127.0.0.1:{self.token_port}/token") != 401:
            if self.token_proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the bench token server did not start: "
                                   + (self.workdir / "tokenserver.log").read_text(errors="replace")[-2000:])
            time.sleep(0.1)

    def stop(self) -> None:
        super().stop()
        stop_process(self.token_proc)

    def auth_config(self) -> str:
        if not self.auth:
            return ""
        return ("auth:\n  token:\n"
                f"    realm: http://127.0.0.1:{self.token_port}/token\n"
                f"    service: {self.SERVICE}\n    issuer: {self.ISSUER}\n"
                f"    rootcertbundle: {self.keys['ca' if self.token_header == 'x5c' else 'cert']}\n")

    def command(self) -> list[str]:
        cfg = self.workdir / "config.yml"
        if self.s3 is None:
            storage = f"  filesystem:\n    rootdirectory: {self.workdir / 'data'}\n"
        else:  # docs: /work/shared/notes/scale-out.md; path-style requests to the endpoint
            sw = self.s3.seaweed
            storage = ("  s3:\n"
                       f"    accesskey: {sw.access_key}\n    secretkey: {sw.secret_key}\n    region: {sw.region}\n"
                       f"    regionendpoint: \"{sw.endpoint}\"\n    bucket: {self.s3.BUCKET}\n"
                       f"    secure: false\n    v4auth: true\n    rootdirectory: /dist-{self.port}\n"
                       "  redirect:\n    disable: true\n")
        cfg.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            "storage:\n"
            + storage +
            "  delete:\n    enabled: true\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
            + self.auth_config()
        )
        # this machine sets AWS_CA_BUNDLE; Distribution's Go SDK panics on it with a plain-http endpoint
        return [DISTRIBUTION, "serve", str(cfg)] if self.s3 is None else \
            ["env", "-u", "AWS_CA_BUNDLE", DISTRIBUTION, "serve", str(cfg)]

    def version(self) -> str:
        try:
            out = subprocess.run([DISTRIBUTION, "--version"], capture_output=True, text=True, timeout=5).stdout
            return out.strip().removeprefix(DISTRIBUTION).strip()  # "github.com/docker/distribution 2.8.2+ds1"
        except (OSError, subprocess.SubprocessError):
            return ""


class External(Server):
    """A registry already running somewhere (bench/run.py --target NAME=URL[,user=..,password=..]):
    never started or stopped here, and no process to measure (server CPU and RSS are unknown)."""

    managed = False

    def __init__(self, name: str, base: str, user: str = "", password: str = "") -> None:
        self.name, self.base = name, base.rstrip("/")
        self.user, self.password = user, password
        self.auth = bool(user)
        self.proc = None
        self.workdir = Path(tempfile.gettempdir())

    @property
    def pid(self) -> int | None:  # type: ignore[override]
        return None

    def start(self, timeout: float = 30) -> None:
        status = http_status(self.base + "/v2/", timeout=timeout)
        if status not in (200, 401):
            raise RuntimeError(f"{self.name}: GET {self.base}/v2/ answered {status}")

    def stop(self) -> None:
        pass

    @staticmethod
    def parse(spec: str) -> "External":
        """``NAME=URL[,user=U,password=P]``"""
        name, _, rest = spec.partition("=")
        url, *options = rest.split(",")
        opts = dict(o.split("=", 1) for o in options if "=" in o)
        if not name or not url.startswith(("http://", "https://")):
            raise ValueError(f"--target {spec!r}: expected NAME=http://HOST:PORT[,user=U,password=P]")
        return External(name, url, opts.get("user", ""), opts.get("password", ""))
