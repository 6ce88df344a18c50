#!/usr/bin/env python3
"""OCI conformance, side by side: Berth vs CNCF Distribution 2.8.2 (Debian's docker-registry).

Starts each registry as a subprocess on 127.0.0.1 (a free port, a fresh temporary data
directory; Berth: ``berth serve --no-auth``; Distribution: ``/usr/bin/docker-registry``
with a generated config: filesystem storage, delete enabled, no auth), runs the pytest
port of the distribution-spec conformance suite (tests/conformance) against it over real
HTTP (``OCI_ROOT_URL``, ``OCI_SHARED_REGISTRY=1``: one registry, one namespace, the four
workflows in the Go order, like one full Go run with all ``OCI_TEST_*`` switches on), and
prints a markdown table of passed / failed / skipped checks per registry and the failing
checks of each with the first line of their assertion. Both registries get the same
checks and the same expectations (Berth's); a failure whose message carries
"[beyond Go]" is one the Go suite itself would not report.

    make conformance-compare
    .venv/bin/python bench/conformance_compare.py --only distribution --keep

Bounded in time (--timeout per pytest run, 30 s per start-up); kills what it started.
Exit status: 0 when Berth fails no check, 1 otherwise, 2 when a registry could not run.
"""
from __future__ import annotations

import argparse
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
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# the Go runner's order (00_conformance_suite_test.go): pull, push, discovery, management
WORKFLOW_FILES = [f"tests/conformance/test_{m}.py" for m in ("pull", "push", "discovery", "management")]
WORKFLOW_SWITCHES = ("OCI_TEST_PULL", "OCI_TEST_PUSH", "OCI_TEST_CONTENT_DISCOVERY", "OCI_TEST_CONTENT_MANAGEMENT")
DISTRIBUTION = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Server:
    name = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def version(self) -> str:
        return ""

    def start(self, timeout: float = 30) -> None:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as out:
            # own process group: stop() signals exactly this server (and anything it forked)
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir, start_new_session=True)
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

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Berth(Server):
    name = "berth"

    def command(self) -> list[str]:
        exe = Path(sys.executable).parent / "berth"
        if not exe.exists():
            exe = Path(shutil.which("berth") or ROOT / ".venv" / "bin" / "berth")
        return [str(exe), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--data", str(self.workdir / "data"), "--no-auth"]

    def version(self) -> str:
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


@dataclass
class Result:
    registry: str
    version: str = ""
    passed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (check, first line of the reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    error: str = ""  # the run itself did not complete

    @property
    def total(self) -> int:
        return len(self.passed) + len(self.failed) + len(self.skipped)


def _check_name(case: ET.Element) -> str:
    module = case.get("classname", "").rsplit(".", 1)[-1].removeprefix("test_")
    return f"{module}::{case.get('name', '')}"


def _reason(elem: ET.Element) -> str:
    text = (elem.get("message") or elem.text or "").strip()
    for line in text.splitlines():
        line = line.strip()
        if line:
            text = line
            break
    text = text.removeprefix("AssertionError: ")
    # upload URLs carry long opaque state (Distribution's _state=...): keep its first characters
    text = re.sub(r"([?&][^=\s]+=)([^&\s']{12})[^&\s']{8,}", r"\1\2…", text)
    return text if len(text) <= 220 else text[:217] + "..."


def parse_junit(path: Path, result: Result) -> None:
    for case in ET.parse(path).getroot().iter("testcase"):
        name = _check_name(case)
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        skip = case.find("skipped")
        if bad is not None:
            result.failed.append((name, _reason(bad)))
        elif skip is not None:
            result.skipped.append((name, _reason(skip)))
        else:
            result.passed.append(name)


def run_suite(server: Server, workdir: Path, timeout: float, pytest_args: list[str]) -> Result:
    result = Result(server.name)
    try:
        server.start()
        result.version = server.version()
        junit = workdir / "junit.xml"
        env = {**os.environ, "OCI_ROOT_URL": server.base, "OCI_SHARED_REGISTRY": "1",
               **{v: "1" for v in WORKFLOW_SWITCHES}}
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--no-header",
               f"--junitxml={junit}", "-o", "junit_family=xunit1", *pytest_args, *WORKFLOW_FILES]
        log(f"== {server.name} on {server.base}: {' '.join(cmd[1:])}")
        with open(workdir / "pytest.log", "wb") as out:
            try:
                proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                      timeout=timeout)
            except subprocess.TimeoutExpired:
                result.error = f"pytest did not finish within {timeout:.0f} s"
                return result
        if not junit.exists():
            result.error = f"pytest exited {proc.returncode} without a report:\n" + \
                (workdir / "pytest.log").read_text(errors="replace")[-2000:]
            return result
        parse_junit(junit, result)
    except RuntimeError as e:
        result.error = str(e)
    finally:
        server.stop()
    return result


def report(results: list[Result]) -> str:
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    lines = [f"OCI distribution-spec conformance (pytest port, tests/conformance), {today}", "",
             "| registry | version | checks | passed | failed | skipped |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in results:
        if r.error:
            lines.append(f"| {r.registry} | {r.version} | – | – | – | – |")
        else:
            lines.append(f"| {r.registry} | {r.version} | {r.total} | {len(r.passed)} | {len(r.failed)} "
                         f"| {len(r.skipped)} |")
    for r in results:
        lines.append("")
        if r.error:
            lines.append(f"{r.registry}: did not run: {r.error}")
            continue
        lines.append(f"{r.registry}: {len(r.failed)} failing" + (":" if r.failed else ""))
        for name, why in r.failed:
            lines.append(f"  - {name}: {why}")
        if r.skipped:
            lines.append(f"{r.registry}: {len(r.skipped)} skipped: " + ", ".join(n for n, _ in r.skipped))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=("berth", "distribution"), help="run against one registry only")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per pytest run (default 300)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (logs, junit.xml) and print where")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = ap.parse_args()

    wanted = [Berth, Distribution]
    if args.only:
        wanted = [c for c in wanted if c.name == args.only]
    if Distribution in wanted and not os.access(DISTRIBUTION, os.X_OK):
        log(f"{DISTRIBUTION} not found: `make clients` installs Debian's docker-registry")
        return 2

    results = []
    top = Path(tempfile.mkdtemp(prefix="berth-conformance-"))
    try:
        for cls in wanted:
            workdir = top / cls.name
            workdir.mkdir()
            server = cls(workdir)
            try:
                results.append(run_suite(server, workdir, args.timeout, args.pytest_args))
            finally:
                server.stop()
    finally:
        if args.keep:
            log(f"logs and junit.xml kept in {top}")
        else:
            shutil.rmtree(top, ignore_errors=True)
    print(report(results))
    if any(r.error for r in results):
        return 2
    berth = next((r for r in results if r.registry == "berth"), None)
    return 1 if berth is not None and berth.failed else 0


if __name__ == "__main__":
    sys.exit(main())
