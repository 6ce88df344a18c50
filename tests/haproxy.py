"""A real round-robin load balancer for multi-replica tests: HAProxy (Debian's ``haproxy``).

``HAProxy(workdir, backends)`` writes the configuration of docs/operations.md ("Scaling
out"): HTTP mode, round robin with no stickiness (HAProxy balances each request, even on
one keep-alive connection), health checks on ``GET /v2/`` expecting 200 or 401 every
second, ``retries 3`` + ``option redispatch`` so a connection refused by a dead replica is
retried on another. ``start()`` validates it (``haproxy -c``), runs ``haproxy -db`` in the
foreground on a free 127.0.0.1 port and waits for the front to answer; ``stop()`` ends it
by its PID. ``servers()`` reads each backend's state from the admin socket.

With ``CI`` set, a missing haproxy is a failure, never a skip (``missing_reason`` says why).
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def missing_reason() -> str | None:
    if shutil.which("haproxy") is None:
        return "haproxy is not installed (apt-get install haproxy, or .ci/install-clients as root)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_text(port: int, backends: list[tuple[str, int]], admin_socket: Path | None = None,
                check_interval: str = "1s") -> str:
    servers = "\n".join(f"  server r{i + 1} {host}:{p} check inter {check_interval} fall 2 rise 1"
                        for i, (host, p) in enumerate(backends))
    stats = f"global\n  stats socket {admin_socket} mode 600 level admin\n" if admin_socket else ""
    return f"""{stats}defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  retries 3
  option redispatch
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  balance roundrobin
  option httpchk GET /v2/
  http-check expect status 200,401
{servers}
"""


class HAProxy:
    def __init__(self, workdir: Path, backends: list[tuple[str, int]], port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.backends = list(backends)
        self.port = port or _free_port()
        self.config = self.workdir / "haproxy.cfg"
        self.socket = self.workdir / "haproxy.sock"
        self.log_path = self.workdir / "haproxy.log"
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self, timeout: float = 30) -> "HAProxy":
        binary = shutil.which("haproxy")
        if binary is None:
            raise RuntimeError(missing_reason())
        self.config.write_text(config_text(self.port, self.backends, self.socket))
        check = subprocess.run([binary, "-c", "-f", str(self.config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c rejected {self.config}:\n{check.stdout}{check.stderr}")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([binary, "-f", str(self.config), "-db"], stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.proc.returncode}:\n{self.log()}")
            if self._front_answers():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"haproxy did not answer within {timeout}s:\n{self.log()}")
            time.sleep(0.1)

    def _front_answers(self) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.url + "/v2/", timeout=5) as r:
                return r.status == 200
        except urllib.error.HTTPError as e:
            return e.code == 401
        except OSError:
            return False

    def servers(self) -> dict[str, str]:
        """Backend server name → operational state ("UP", "DOWN", …) from the admin socket."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.socket))
            s.sendall(b"show servers state be\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        states = {"0": "STOPPED", "1": "STARTING", "2": "UP", "3": "DOWN"}
        out = {}
        for line in data.decode().splitlines():
            cols = line.split()
            if len(cols) > 5 and cols[0].isdigit() and cols[1] == "be":
                out[cols[3]] = states.get(cols[5], cols[5])
        return out

    def wait_state(self, server: str, state: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.servers().get(server) != state:
            if time.monotonic() > deadline:
                raise AssertionError(f"haproxy: {server} not {state} after {timeout}s: {self.servers()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
