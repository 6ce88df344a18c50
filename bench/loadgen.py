"""The load generators in C the small-request rows use, so that the client is not the bottleneck.

- wrk (/usr/bin/wrk) with the Lua scripts of bench/lua/: each ends with one line
  ``BENCH_JSON {...}`` (requests, duration, errors, latency percentiles, and the counters of
  blob_push.lua); ``run_wrk`` returns it as a dict.
- ab (ApacheBench, /usr/bin/ab, ``-i -k``) for HEAD rows: wrk 4.1's HTTP parser does not know
  a HEAD response has no body and waits for Content-Length bytes forever. ``run_ab`` returns
  the same keys.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parent / "lua"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
AB = shutil.which("ab") or "/usr/bin/ab"


@dataclass
class WrkOptions:
    threads: int = 2
    connections: int = 16
    duration: float = 5.0  # seconds

    def argv(self) -> list[str]:
        return ["-t", str(self.threads), "-c", str(self.connections), "-d", f"{self.duration:g}s",
                "--timeout", "10s"]


async def run_wrk(opts: WrkOptions, script: str, url: str, env: dict[str, str]) -> dict:
    cmd = [WRK, *opts.argv(), "-s", str(LUA / script), url]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env={**os.environ, **env})
    out, err = await proc.communicate()
    text = out.decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("BENCH_JSON "):
            result = json.loads(line.removeprefix("BENCH_JSON "))
            result["seconds"] = result["duration_us"] / 1e6
            return result
    raise RuntimeError(f"wrk {url} (exit {proc.returncode}) gave no result:\n{text[-1500:]}\n{err.decode()[-500:]}")


async def run_ab_head(opts: WrkOptions, url: str, headers: dict[str, str]) -> dict:
    """HEAD url for opts.duration s over opts.connections keep-alive connections (one ab thread)."""
    cmd = [AB, "-i", "-k", "-q", "-c", str(opts.connections), "-t", f"{opts.duration:g}", "-n", "100000000",
           "-s", "10"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    proc = await asyncio.create_subprocess_exec(*cmd, url, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    text = out.decode(errors="replace")

    def field(pattern: str, default: float | None = None) -> float:
        m = re.search(pattern, text, re.M)
        if m is None:
            if default is None:
                raise RuntimeError(f"ab {url} (exit {proc.returncode}): no {pattern!r} in\n{text[-1500:]}"
                                   f"\n{err.decode()[-500:]}")
            return default
        return float(m.group(1))

    seconds = field(r"^Time taken for tests:\s+([\d.]+)")
    return {"requests": int(field(r"^Complete requests:\s+(\d+)")), "duration_us": int(seconds * 1e6),
            "seconds": seconds, "errors_connect": 0, "errors_read": 0, "errors_write": 0, "errors_timeout": 0,
            "errors_failed": int(field(r"^Failed requests:\s+(\d+)")),
            "keepalive_requests": int(field(r"^Keep-Alive requests:\s+(\d+)", 0)),
            "non_2xx_3xx": int(field(r"^Non-2xx responses:\s+(\d+)", 0)),
            "p50_us": int(field(r"^\s+50%\s+(\d+)") * 1000), "p99_us": int(field(r"^\s+99%\s+(\d+)") * 1000),
            "max_us": int(field(r"^\s+100%\s+(\d+)") * 1000)}


def wrk_errors(result: dict) -> int:
    keys = ("errors_connect", "errors_read", "errors_write", "errors_timeout", "errors_failed", "non_2xx_3xx")
    return sum(result.get(k, 0) for k in keys)


class BlobBatch:
    """The small blobs of one blob_push.lua run: a constant random block + a 16-digit index each,
    with every digest precomputed (the Lua side only concatenates)."""

    def __init__(self, size: int, count: int, threads: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-wrk-blobs-"))
        self.per_thread = count // threads
        block = os.urandom(size - 16)
        (self.dir / "block").write_bytes(block)
        with open(self.dir / "digests", "w") as f:
            for i in range(self.per_thread * threads):
                f.write("sha256:" + hashlib.sha256(block + b"%016d" % i).hexdigest() + "\n")

    def env(self, repo: str) -> dict[str, str]:
        return {"BENCH_REPO": repo, "BENCH_BLOCK": str(self.dir / "block"),
                "BENCH_DIGESTS": str(self.dir / "digests"), "BENCH_PER_THREAD": str(self.per_thread)}

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
