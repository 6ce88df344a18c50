"""The registries the bench scripts start side by side: Berth and CNCF Distribution 2.8.2.

Each runs as a subprocess in its own process group on 127.0.0.1 and a free port, with a
fresh data directory under ``workdir``; ``start()`` waits until ``GET /v2/`` answers 200,
``stop()`` ends exactly what it started. Used by bench/run.py and bench/conformance_compare.py.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
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


class Server:
    name = "?"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{self.name}.log"

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
        with open(self.log_path, "wb") as out:
            # own process group: stop() signals exactly this server (and anything it forked)
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.workdir, env=self.env(), start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base + "/v2/", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer on {self.base}/v2/ within {timeout:.0f} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass

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

    def command(self) -> list[str]:
        serve = ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--data", str(self.workdir / "data"),
                 "--no-auth"]
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
