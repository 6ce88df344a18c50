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


class Berth(Server):
    name = "berth"
    src: Path | None = None  # another Berth tree to run instead (e.g. a before/after comparison)

    def command(self) -> list[str]:
        serve = ["serve", "--host", "127.0.0.1", "--port", str(self.port), "--data", str(self.workdir / "data"),
                 "--no-auth"]
        if self.src is not None:
            return [sys.executable, "-m", "registry.cli", *serve]
        exe = Path(sys.executable).parent / "berth"
        if not exe.exists():
            exe = Path(shutil.which("berth") or ROOT / ".venv" / "bin" / "berth")
        return [str(exe), *serve]

    def env(self) -> dict[str, str] | None:
        return None if self.src is None else {**os.environ, "PYTHONPATH": str(self.src)}

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

    def command(self) -> list[str]:
        cfg = self.workdir / "config.yml"
        cfg.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.workdir / 'data'}\n"
            "  delete:\n    enabled: true\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        return [DISTRIBUTION, "serve", str(cfg)]

    def version(self) -> str:
        try:
            out = subprocess.run([DISTRIBUTION, "--version"], capture_output=True, text=True, timeout=5).stdout
            return out.strip().removeprefix(DISTRIBUTION).strip()  # "github.com/docker/distribution 2.8.2+ds1"
        except (OSError, subprocess.SubprocessError):
            return ""
