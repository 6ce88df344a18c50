"""Progress of the long offline commands on a terminal (registry.progress): `berth gc`,
`berth fsck` and `berth db upgrade` draw one line on stderr when it is a TTY (a pty here), and
write nothing extra when it is not (scripts and tests parse their output)."""
from __future__ import annotations

import hashlib
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from registry import progress
from storage.paths import Layout

REPO_ROOT = Path(__file__).resolve().parents[2]


def berth(*args: str, tty: bool) -> tuple[int, str, str]:
    """Run ``berth *args``; stderr on a pty when ``tty``. (exit code, stdout, stderr)."""
    cmd = [sys.executable, "-m", "registry.cli", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    if not tty:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, env=env)
        return p.returncode, p.stdout, p.stderr
    leader, follower = pty.openpty()
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=follower, stdin=subprocess.DEVNULL,
                             cwd=REPO_ROOT, env=env)
        os.close(follower)
        follower = -1
        err = bytearray()
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            err += chunk
        out = p.stdout.read().decode()
        p.stdout.close()
        return p.wait(120), out, err.decode(errors="replace")
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)


@pytest.fixture
def data(tmp_path) -> Path:
    """A data directory with its database and three blobs no row knows (orphans: fsck lists
    them, gc --grace 0 removes them)."""
    data = tmp_path / "data"
    code, _, err = berth("db", "upgrade", "--data", str(data), tty=False)
    assert code == 0, err
    for i in range(3):
        body = f"orphan {i}".encode() * 100
        path = Layout(data).blob("sha256:" + hashlib.sha256(body).hexdigest())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return data


def test_db_upgrade_draws_its_migrations_on_a_terminal_only(tmp_path):
    code, out, err = berth("db", "upgrade", "--data", str(tmp_path / "a"), tty=True)
    assert code == 0
    assert "schema: empty ->" in out
    assert err.startswith("\rdb upgrade [") and "1/1 schema created at revision" in err and err.endswith("\r\n"), err
    code, out, err = berth("db", "upgrade", "--data", str(tmp_path / "b"), tty=False)
    assert (code, err) == (0, "")
    assert "schema: empty ->" in out


def test_fsck_draws_blobs_and_bytes_on_a_terminal_only(data):
    code, out, err = berth("fsck", "--data", str(data), tty=True)
    assert code == 0, err
    assert "\rfsck [" in err and "3/3 blobs 2.3 KiB/2.3 KiB" in err and err.endswith("\r\n"), err
    assert "3 orphaned" in out
    code, out, err = berth("fsck", "--data", str(data), tty=False)
    assert (code, err) == (0, "")
    assert "3 orphaned" in out
    code, out, err = berth("fsck", "--data", str(data), "--json", tty=True)  # JSON for a program: no line
    assert (code, err) == (0, "")


def test_gc_draws_its_counts_on_a_terminal_only(data, tmp_path):
    code, out, err = berth("gc", "--data", str(data), "--grace", "0", "--dry-run", tty=False)
    assert (code, err) == (0, "")
    assert "would remove 0 unreferenced blob links, 3 blobs (2400 bytes)" in out
    code, out, err = berth("gc", "--data", str(data), "--grace", "0", tty=True)
    assert code == 0, err
    assert err.startswith("\rgc: ") and err.endswith("\r\n"), err
    assert "gc: done: removed 0 uploads, 0 manifests, 0 links, 3 blobs (2.3 KiB)" in err, err
    assert "removed 0 unreferenced blob links, 3 blobs (2400 bytes)" in out
    code, out, err = berth("gc", "--data", str(data), "--grace", "0", tty=False)
    assert (code, err) == (0, "")
    assert "removed 0 unreferenced blob links, 0 blobs (0 bytes)" in out


def test_a_line_is_redrawn_in_place_and_ended_once(capsys):
    line = progress.Line(sys.stderr)
    line.show("a longer text")
    line.show("skipped: under the interval")
    line.show("short", final=True)
    line.close()
    line.close()
    assert capsys.readouterr().err == "\ra longer text\rshort        \n"
    assert progress.bar(0.5, 4) == "[##..]"
    assert [progress.human(n) for n in (512, 2048, 3 << 20, 5 << 40)] == ["512 B", "2.0 KiB", "3.0 MiB", "5.0 TiB"]
    assert progress.Line.for_stderr() is None  # pytest's stderr is no terminal
