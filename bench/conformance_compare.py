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
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from servers import DISTRIBUTION, Berth, Distribution, Server  # bench/servers.py

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# the Go runner's order (00_conformance_suite_test.go): pull, push, discovery, management
WORKFLOW_FILES = [f"tests/conformance/test_{m}.py" for m in ("pull", "push", "discovery", "management")]
WORKFLOW_SWITCHES = ("OCI_TEST_PULL", "OCI_TEST_PUSH", "OCI_TEST_CONTENT_DISCOVERY", "OCI_TEST_CONTENT_MANAGEMENT")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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
