"""`berth serve` with the s3 driver checks the store before serving: a missing bucket, refused
credentials or an unreachable endpoint is one clear line and exit code 2 (real SeaweedFS)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(tmp_path, seaweedfs, bucket: str, port: int, **overrides: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    env.update({
        "BERTH_STORAGE_DRIVER": "s3",
        "BERTH_STORAGE_S3_ENDPOINT": seaweedfs.endpoint,
        "BERTH_STORAGE_S3_REGION": seaweedfs.region,
        "BERTH_STORAGE_S3_BUCKET": bucket,
        "BERTH_STORAGE_S3_ACCESS_KEY": seaweedfs.access_key,
        "BERTH_STORAGE_S3_SECRET_KEY": seaweedfs.secret_key,
        "BERTH_STORAGE_S3_PREFIX": "serve-check",
    })
    env.update(overrides)
    return subprocess.Popen(
        [sys.executable, "-m", "registry.cli", "serve", "--no-auth", "--host", "127.0.0.1", "--port", str(port),
         "--data", str(tmp_path / "data")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.parametrize("case, override, expect", [
    ("missing bucket", {"BERTH_STORAGE_S3_BUCKET": "no-such-bucket"}, "the bucket does not exist"),
    ("wrong key", {"BERTH_STORAGE_S3_SECRET_KEY": "wrong"}, "access denied"),
    ("unreachable", {"BERTH_STORAGE_S3_ENDPOINT": None}, "cannot reach S3 endpoint"),
])
def test_serve_refuses_unusable_store(tmp_path, seaweedfs, s3_bucket, case, override, expect):
    if case == "unreachable":
        override = {"BERTH_STORAGE_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    port = free_port()
    proc = serve(tmp_path, seaweedfs, s3_bucket, port, **override)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("berth: storage: ") and expect in lines[0], lines[0]
    endpoint = override.get("BERTH_STORAGE_S3_ENDPOINT", seaweedfs.endpoint)
    bucket = override.get("BERTH_STORAGE_S3_BUCKET", s3_bucket)
    assert endpoint in lines[0] and bucket in lines[0]
    assert "serving on" not in out


def test_serve_rejects_invalid_settings(tmp_path, seaweedfs, s3_bucket):
    proc = serve(tmp_path, seaweedfs, s3_bucket, free_port(), BERTH_STORAGE_S3_ENDPOINT="localhost:8333")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.strip().startswith("berth: configuration: storage.s3.endpoint") and "Traceback" not in err


def test_serve_starts_with_a_usable_store(tmp_path, seaweedfs, s3_bucket):
    port = free_port()
    proc = serve(tmp_path, seaweedfs, s3_bucket, port)
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=5) as r:
                    status = r.status
                break
            except urllib.error.HTTPError as e:
                status = e.code
                break
            except OSError:
                time.sleep(0.2)
        assert status == 200, (status, proc.poll())
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert seaweedfs.keys(s3_bucket, "serve-check/_berth/") == []  # the probe object was removed
