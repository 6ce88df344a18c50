#!/usr/bin/env python3
"""Side-by-side benchmark: Berth vs CNCF Distribution 2.8.2 (Debian's docker-registry).

Each registry is started as a subprocess on 127.0.0.1 with a fresh temporary
data directory, then driven through the same phases by an aiohttp client:

  push-mono     POST, then ONE streamed PATCH of the whole blob, then PUT ?digest=
  push-chunked  POST, then PATCH 16 MiB chunks with Content-Range, then PUT ?digest=
  pull          GET of the blob, streamed, digest verified
  small-blobs   --small-count small blobs (POST + PUT ?digest= with body), a few connections
  manifests     push one manifest, then --requests GET/HEAD of it over a few connections

The three large-blob phases run --repeat times (median shown, range kept); each
pushed blob file is deleted from the data directory once measured, and 3 x size
is written and deleted before the first server, so that no push pays this VM's
first-touch cost for fresh page-cache memory (it is ~10x the recycled cost and
would otherwise penalise whichever server runs first). Before each phase the
bench waits (--wait-idle s at most) for the machine to be quiet, and reports the
CPU time the rest of the machine used meanwhile.

While each phase runs, a thread samples the server's VmRSS from /proc every
~50 ms; VmHWM is reset at each phase start (/proc/<pid>/clear_refs, "5") and read
at its end. Blob data is a repeating block of os.urandom bytes streamed as
memoryview slices (never the whole blob in memory); the client hashes it while
sending, so the client's own memory stays flat too.

``--workers N`` starts Berth with ``berth serve --workers N`` (CPU and RSS are then summed
over the supervisor and its workers). ``--storage s3`` starts one SeaweedFS
(tests/seaweed.py) with one bucket, a prefix per registry: Berth with its s3 driver
(``BERTH_STORAGE_DRIVER=s3``), Distribution with its own ``s3`` driver (path-style
``regionendpoint``, ``v4auth``, redirects off, started without ``AWS_CA_BUNDLE``).

Output: a markdown table on stdout and JSON in bench/results/.  Only 127.0.0.1.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urljoin

import aiohttp

from servers import DISTRIBUTION, S3Target, Server, tree_pids  # bench/servers.py: starting and stopping the registries
from servers import Berth as BerthServer
from servers import Distribution as DistributionServer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MiB = 1 << 20
BLOCK = 4 * MiB  # size of the repeating random block the blob is made of
SLICE = 1 * MiB  # size of each piece handed to the socket
REPO = "bench/big"
SMALL_REPO = "bench/small"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


# ---------------------------------------------------------------------------- helpers
def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 1G, 256M, 1048576)")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2)]
    return int(float(m.group(1)) * mult)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in bytes (0 when the process is gone)."""
    out = {"VmRSS": 0, "VmHWM": 0}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in out:
                    out[key] = int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def proc_cpu(pid: int, kernel_only: bool = False) -> float:
    """utime + stime (or stime alone) of a process in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[12]) + (0 if kernel_only else int(fields[11]))
        return ticks / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def busy_cpu() -> float:
    """Non-idle CPU seconds of the whole machine so far (all CPUs, from /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def wait_idle(max_wait: float, threshold: float = 0.3) -> float:
    """Wait (at most max_wait s) until the machine uses < threshold CPUs; return the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_wait:
        b0, w0 = busy_cpu(), time.monotonic()
        await asyncio.sleep(0.5)
        if (busy_cpu() - b0) / (time.monotonic() - w0) < threshold:
            break
    return round(time.monotonic() - t0, 1)


def tree_status(pid: int) -> dict[str, int]:
    """proc_status summed over a server and its children (berth serve --workers N)."""
    out = {"VmRSS": 0, "VmHWM": 0}
    for p in tree_pids(pid):
        st = proc_status(p)
        out["VmRSS"] += st["VmRSS"]
        out["VmHWM"] += st["VmHWM"]
    return out


def tree_cpu(pid: int, kernel_only: bool = False) -> float:
    return sum(proc_cpu(p, kernel_only) for p in tree_pids(pid))


def reset_hwm(pid: int) -> bool:
    ok = True
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


def client_rss() -> int:
    return proc_status(os.getpid())["VmRSS"]


class RSSSampler(threading.Thread):
    """Samples a pid's VmRSS every `interval` s; `mark()` starts a new window."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self._stop_evt = threading.Event()
        self._lock = threading.Lock()
        self.peak = 0
        self.samples = 0

    def mark(self) -> int:
        rss = tree_status(self.pid)["VmRSS"]
        with self._lock:
            self.peak, self.samples = rss, 1
        return rss

    def run(self) -> None:
        while not self._stop_evt.wait(self.interval):
            rss = tree_status(self.pid)["VmRSS"]
            with self._lock:
                self.peak = max(self.peak, rss)
                self.samples += 1

    def stop(self) -> None:
        self._stop_evt.set()


class Phase:
    """Context manager measuring one phase: wall time, server RSS (sampled + HWM), server CPU."""

    def __init__(self, server: "Server", name: str) -> None:
        self.server, self.name = server, name
        self.result: dict = {"phase": name}

    def __enter__(self) -> dict:
        pid = self.server.pid
        self.hwm_reset = reset_hwm(pid)
        self.rss_start = self.server.sampler.mark()
        self.cpu0 = tree_cpu(pid)
        self.sys0 = tree_cpu(pid, kernel_only=True)
        self.ccpu0 = proc_cpu(os.getpid())
        self.busy0 = busy_cpu()
        self.t0 = time.perf_counter()
        return self.result

    def __exit__(self, *exc) -> None:
        elapsed = time.perf_counter() - self.t0
        pid = self.server.pid
        server_cpu = tree_cpu(pid) - self.cpu0
        client_cpu = proc_cpu(os.getpid()) - self.ccpu0
        other_cpu = busy_cpu() - self.busy0 - server_cpu - client_cpu
        time.sleep(0.06)  # one more sample after the last response
        st = tree_status(pid)
        peak = max(self.server.sampler.peak, st["VmRSS"])
        self.result.update(
            seconds=round(elapsed, 3),
            server_cpu_s=round(server_cpu, 2),
            server_sys_s=round(tree_cpu(pid, kernel_only=True) - self.sys0, 2),
            client_cpu_s=round(client_cpu, 2),
            other_cpu_s=round(max(other_cpu, 0.0), 2),  # kernel threads + anything else running meanwhile
            rss_start=self.rss_start,
            rss_peak=peak,
            rss_end=st["VmRSS"],
            hwm=st["VmHWM"] if self.hwm_reset else None,
            rss_samples=self.server.sampler.samples,
            rss_growth=max(peak, st["VmHWM"] if self.hwm_reset else 0) - self.rss_start,
            rss_growth_vs_baseline=max(peak, st["VmHWM"] if self.hwm_reset else 0) - self.server.baseline_rss,
            client_rss=client_rss(),
        )


# ---------------------------------------------------------------------------- servers
class Measured:
    """A registry of bench/servers.py whose RSS is sampled from the moment it answers."""

    sampler: RSSSampler | None = None
    baseline_rss = 0

    async def start(self) -> None:
        await asyncio.to_thread(super().start)
        self.sampler = RSSSampler(self.pid)
        self.sampler.start()
        await asyncio.sleep(0.5)
        self.baseline_rss = tree_status(self.pid)["VmRSS"]

    def stop(self) -> None:
        if self.sampler:
            self.sampler.stop()
        super().stop()


class Berth(Measured, BerthServer):
    pass


class Distribution(Measured, DistributionServer):
    pass


# ---------------------------------------------------------------------------- data
class BlobSource:
    """A blob of `size` bytes: a random block repeated, streamed in slices, hashed as it goes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.block = memoryview(os.urandom(BLOCK))
        self.digest: str | None = None

    def pieces(self, start: int, end: int):
        """memoryview slices covering [start, end)."""
        pos = start
        while pos < end:
            off = pos % BLOCK
            n = min(SLICE, BLOCK - off, end - pos)
            yield self.block[off:off + n]
            pos += n


async def stream(src: BlobSource, start: int, end: int, hasher):
    for piece in src.pieces(start, end):
        hasher.update(piece)
        yield piece


def drop_big_files(root: Path, min_size: int) -> None:
    """Unlink the large blobs a repetition left behind (both servers alike).

    On this kind of VM, writing into page-cache pages the guest has never touched
    costs ~10x more kernel time than writing into recycled ones; freeing each
    repetition's 2 x size keeps every push on recycled pages and the dirty-page
    total far below the writeback thresholds.
    """
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            try:
                if p.stat().st_size >= min_size:
                    p.unlink()
            except OSError:
                pass


def warm_page_cache(where: Path, nbytes: int) -> float:
    """Write and delete `nbytes` of zeros so later file writes reuse already-faulted memory."""
    t0 = time.perf_counter()
    zeros = bytes(8 * MiB)
    fd, name = tempfile.mkstemp(prefix="bench-warm-", dir=where)
    try:
        with os.fdopen(fd, "wb") as f:
            for _ in range(0, nbytes, len(zeros)):
                f.write(zeros)
    finally:
        os.unlink(name)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------- phases
def check(resp: aiohttp.ClientResponse, *ok: int) -> None:
    if resp.status not in ok:
        raise RuntimeError(f"{resp.method} {resp.url} -> {resp.status} (expected {ok})")


async def expect(resp: aiohttp.ClientResponse, *ok: int) -> None:
    if resp.status not in ok:
        body = (await resp.read())[:500]
        raise RuntimeError(f"{resp.method} {resp.url} -> {resp.status} (expected {ok}): {body!r}")


async def push_big(s: aiohttp.ClientSession, base: str, src: BlobSource, chunk: int | None) -> str:
    """POST, PATCH (one whole-body PATCH when chunk is None, else Content-Range chunks), PUT ?digest=."""
    async with s.post(f"{base}/v2/{REPO}/blobs/uploads/") as r:
        await expect(r, 202)
        loc = urljoin(base + "/", r.headers["Location"])
    hasher = hashlib.sha256()
    step = chunk or src.size
    pos = 0
    while pos < src.size:
        end = min(pos + step, src.size)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(end - pos)}
        if chunk:
            headers["Content-Range"] = f"{pos}-{end - 1}"
        async with s.patch(loc, data=stream(src, pos, end, hasher), headers=headers) as r:
            await expect(r, 202)
            loc = urljoin(base + "/", r.headers["Location"])
        pos = end
    digest = "sha256:" + hasher.hexdigest()
    src.digest = digest
    sep = "&" if "?" in loc else "?"
    async with s.put(f"{loc}{sep}digest={digest}", headers={"Content-Length": "0"}) as r:
        await expect(r, 201)
        if r.headers.get("Docker-Content-Digest", digest) != digest:
            raise RuntimeError(f"server digest {r.headers.get('Docker-Content-Digest')} != {digest}")
    return digest


async def pull_big(s: aiohttp.ClientSession, base: str, digest: str, size: int) -> None:
    hasher = hashlib.sha256()
    got = 0
    async with s.get(f"{base}/v2/{REPO}/blobs/{digest}") as r:
        await expect(r, 200)
        async for piece in r.content.iter_chunked(SLICE):
            hasher.update(piece)
            got += len(piece)
    if got != size or "sha256:" + hasher.hexdigest() != digest:
        raise RuntimeError(f"pull: got {got} bytes with sha256:{hasher.hexdigest()}, expected {size} {digest}")


async def push_small(s: aiohttp.ClientSession, base: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    async with s.post(f"{base}/v2/{repo}/blobs/uploads/") as r:
        await expect(r, 202)
        loc = urljoin(base + "/", r.headers["Location"])
    sep = "&" if "?" in loc else "?"
    async with s.put(f"{loc}{sep}digest={digest}", data=data,
                     headers={"Content-Type": "application/octet-stream"}) as r:
        await expect(r, 201)
    return digest


def aggregate(runs: list[dict]) -> dict:
    """Median time/throughput/CPU over repeated runs; the worst RSS figures; every run kept."""
    med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    out = {
        "phase": runs[0]["phase"],
        "bytes": runs[0]["bytes"],
        "repeat": len(runs),
        "seconds": round(med("seconds"), 3),
        "MBps": round(med("MBps"), 1),
        "MBps_best": max(r["MBps"] for r in runs),
        "MBps_worst": min(r["MBps"] for r in runs),
        "server_cpu_s": round(med("server_cpu_s"), 2),
        "server_sys_s": round(med("server_sys_s"), 2),
        "client_cpu_s": round(med("client_cpu_s"), 2),
        "other_cpu_s": round(med("other_cpu_s"), 2),
        "rss_start": runs[0]["rss_start"],
        "rss_peak": max(r["rss_peak"] for r in runs),
        "hwm": max((r["hwm"] for r in runs if r["hwm"] is not None), default=None),
        "rss_growth": max(r["rss_growth"] for r in runs),
        "rss_growth_vs_baseline": max(r["rss_growth_vs_baseline"] for r in runs),
        "client_rss": max(r["client_rss"] for r in runs),
        "runs": runs,
    }
    return out


def latency_stats(lat: list[float], elapsed: float) -> dict:
    lat = sorted(lat)
    q = (lambda p: lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))]) if lat else (lambda p: 0.0)
    return {
        "count": len(lat),
        "per_s": round(len(lat) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(q(0.50) * 1000, 2),
        "p99_ms": round(q(0.99) * 1000, 2),
        "max_ms": round((lat[-1] if lat else 0.0) * 1000, 2),
        "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else 0.0,
    }


async def run_pool(count: int, concurrency: int, time_limit: float, op) -> tuple[list[float], float]:
    """Run op(i) for i < count over `concurrency` workers, stopping early after time_limit s."""
    lat: list[float] = []
    nxt = 0
    t0 = time.perf_counter()
    deadline = t0 + time_limit

    async def worker():
        nonlocal nxt
        while nxt < count and time.perf_counter() < deadline:
            i = nxt
            nxt += 1
            a = time.perf_counter()
            await op(i)
            lat.append(time.perf_counter() - a)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat, time.perf_counter() - t0


async def bench_server(server: Server, args, log) -> dict:
    res: dict = {"server": server.name, "version": server.version(), "phases": {}}
    await server.start()
    res["baseline_rss"] = server.baseline_rss
    log(f"[{server.name}] pid {server.pid} on {server.base}, baseline RSS {human(server.baseline_rss)}")
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)
    try:
        # big blobs: one connection, like a single layer push/pull
        conn = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout, auto_decompress=False) as s:
            runs: dict[str, list[dict]] = {"push-mono": [], "push-chunked": [], "pull": []}
            for rep in range(args.repeat):
                # chunked first and dropped at once, so each push writes into recycled page cache
                for name, chunk in (("push-chunked", args.chunk), ("push-mono", None)):
                    src = BlobSource(args.size)
                    waited = await wait_idle(args.wait_idle)
                    with Phase(server, name) as r:
                        digest = await push_big(s, server.base, src, chunk)
                    r.update(bytes=args.size, digest=digest, MBps=round(args.size / 1e6 / r["seconds"], 1),
                             waited_for_idle_s=waited)
                    runs[name].append(r)
                    log(f"[{server.name}] {name} #{rep + 1}: {r['MBps']} MB/s in {r['seconds']} s, "
                        f"CPU {r['server_cpu_s']} s, RSS {human(r['rss_start'])} -> peak {human(r['rss_peak'])} "
                        f"(+{human(r['rss_growth'])})")
                    if name == "push-mono":
                        mono_digest = digest
                    else:
                        drop_big_files(server.workdir / "data", args.size)
                waited = await wait_idle(args.wait_idle)
                with Phase(server, "pull") as r:
                    await pull_big(s, server.base, mono_digest, args.size)
                r.update(bytes=args.size, digest=mono_digest, MBps=round(args.size / 1e6 / r["seconds"], 1),
                         waited_for_idle_s=waited)
                runs["pull"].append(r)
                log(f"[{server.name}] pull #{rep + 1}: {r['MBps']} MB/s in {r['seconds']} s, "
                    f"RSS peak {human(r['rss_peak'])} (+{human(r['rss_growth'])})")
                drop_big_files(server.workdir / "data", args.size)
            for name, rs in runs.items():
                res["phases"][name] = aggregate(rs)

        # many small operations over a few connections
        conn = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
            seed = os.urandom(16)
            blobs = [seed + i.to_bytes(4, "big") + os.urandom(args.small_size - 20) for i in range(args.small_count)]
            digests: list[str] = [""] * len(blobs)

            async def push_one(i: int) -> None:
                digests[i] = await push_small(s, server.base, SMALL_REPO, blobs[i])

            await wait_idle(args.wait_idle)
            with Phase(server, "small-blobs") as r:
                lat, elapsed = await run_pool(len(blobs), args.concurrency, args.time_limit, push_one)
            r.update(latency_stats(lat, elapsed), blob_bytes=args.small_size, concurrency=args.concurrency,
                     requests_per_op=2)
            res["phases"]["small-blobs"] = r
            log(f"[{server.name}] small-blobs: {r['count']} pushes, {r['per_s']}/s, "
                f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms")
            del blobs

            # a manifest referencing two of the small blobs (config + layer)
            done = [d for d in digests if d]
            cfg_d, layer_d = done[0], done[1]
            manifest = json.dumps({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": cfg_d, "size": args.small_size},
                "layers": [{"mediaType": OCI_LAYER, "digest": layer_d, "size": args.small_size}],
            }, separators=(",", ":")).encode()
            async with s.put(f"{server.base}/v2/{SMALL_REPO}/manifests/latest", data=manifest,
                             headers={"Content-Type": OCI_MANIFEST}) as resp:
                await expect(resp, 201)
                mdigest = resp.headers.get("Docker-Content-Digest")
            accept = {"Accept": OCI_MANIFEST}

            async def get_or_head(i: int) -> None:
                ref = "latest" if i % 4 < 2 else mdigest
                url = f"{server.base}/v2/{SMALL_REPO}/manifests/{ref}"
                if i % 2:
                    async with s.head(url, headers=accept) as resp:
                        check(resp, 200)
                else:
                    async with s.get(url, headers=accept) as resp:
                        body = await resp.read()
                        check(resp, 200)
                        if len(body) != len(manifest):
                            raise RuntimeError("manifest body differs")

            await wait_idle(args.wait_idle)
            with Phase(server, "manifests") as r:
                lat, elapsed = await run_pool(args.requests, args.concurrency, args.time_limit, get_or_head)
            r.update(latency_stats(lat, elapsed), concurrency=args.concurrency, mix="GET/HEAD by tag and digest")
            res["phases"]["manifests"] = r
            log(f"[{server.name}] manifests: {r['count']} requests, {r['per_s']}/s, "
                f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms")
    finally:
        res["process_hwm"] = tree_status(server.pid)["VmHWM"]
        server.stop()
    return res


# ---------------------------------------------------------------------------- report
def table(results: list[dict], args) -> str:
    by = {r["server"]: r for r in results}
    names = [n for n in ("berth", "distribution") if n in by]
    lines = []

    def row(cells):
        lines.append("| " + " | ".join(cells) + " |")

    row(["phase", "metric"] + names)
    row(["---", "---"] + ["---:"] * len(names))

    def get(n, phase, key):
        return by[n]["phases"].get(phase, {}).get(key)

    def mb(v):
        return "—" if v is None else f"{v / MiB:.1f} MiB"

    size = human(args.size)
    for phase, label in (("push-mono", f"push {size}, one PATCH"),
                         ("push-chunked", f"push {size}, {human(args.chunk)} PATCHes"),
                         ("pull", f"pull {size} (GET)")):
        row([label, f"throughput, median of {args.repeat} (range)"]
            + [f"**{get(n, phase, 'MBps')} MB/s** ({get(n, phase, 'MBps_worst')}–{get(n, phase, 'MBps_best')})"
               for n in names])
        row(["", "CPU s: server / client / rest of machine"]
            + [f"{get(n, phase, 'server_cpu_s')} / {get(n, phase, 'client_cpu_s')} / {get(n, phase, 'other_cpu_s')}"
               for n in names])
        row(["", "RSS start → peak (worst run)"] + [f"{mb(get(n, phase, 'rss_start'))} → {mb(get(n, phase, 'rss_peak'))}"
                                       for n in names])
        row(["", "RSS growth (peak/HWM − start)"] + [mb(get(n, phase, "rss_growth")) for n in names])
    for phase, label, unit in (("small-blobs", f"{args.small_count} × {human(args.small_size)} blob pushes "
                                                f"(POST+PUT), c={args.concurrency}", "blobs/s"),
                               ("manifests", f"{args.requests} manifest GET/HEAD, c={args.concurrency}", "req/s")):
        row([label, "rate"] + [f"{get(n, phase, 'per_s')} {unit} ({get(n, phase, 'count')} in "
                               f"{get(n, phase, 'seconds')} s)" for n in names])
        row(["", "latency p50 / p99"] + [f"{get(n, phase, 'p50_ms')} / {get(n, phase, 'p99_ms')} ms" for n in names])
        row(["", "CPU s: server / client / rest of machine"]
            + [f"{get(n, phase, 'server_cpu_s')} / {get(n, phase, 'client_cpu_s')} / {get(n, phase, 'other_cpu_s')}"
               for n in names])
        row(["", "RSS growth (peak/HWM − start)"] + [mb(get(n, phase, "rss_growth")) for n in names])
    row(["whole run", "baseline RSS (idle, after start)"] + [mb(by[n]["baseline_rss"]) for n in names])
    row(["", "process peak (VmHWM at exit)"] + [mb(by[n]["process_hwm"]) for n in names])
    return "\n".join(lines)


async def main_async(args) -> int:
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    servers = [c for c in (Berth, Distribution) if args.only in (None, c.name)]
    if Distribution in servers and not os.access(DISTRIBUTION, os.X_OK):
        log(f"{DISTRIBUTION} not found: `make clients` installs Debian's docker-registry")
        return 2
    tmp_root = Path(args.tmpdir or tempfile.gettempdir())
    need = 3 * args.size
    free = shutil.disk_usage(tmp_root).free
    if free < need:
        log(f"only {human(free)} free in {tmp_root}; need about {human(need)}")
        return 2
    load_start = os.getloadavg()
    load = load_start[0]
    if load > 0.5:
        log(f"warning: load average {load:.2f} before start; other work on this machine skews the figures")
    if args.warm:
        log(f"warming the page cache: {human(3 * args.size)} written and deleted in "
            f"{warm_page_cache(tmp_root, 3 * args.size):.1f} s")
    results = []
    Berth.workers = args.workers
    s3 = None
    if args.storage == "s3":  # one SeaweedFS for both registries, a bucket each
        s3_dir = Path(tempfile.mkdtemp(prefix="bench-seaweedfs-", dir=tmp_root))
        s3 = S3Target(s3_dir)
        await asyncio.to_thread(s3.start)
        Berth.s3 = Distribution.s3 = s3
        log(f"SeaweedFS S3 on {s3.seaweed.endpoint} (data in {s3_dir})")
    try:
        for cls in servers:
            workdir = Path(tempfile.mkdtemp(prefix=f"bench-{cls.name}-", dir=tmp_root))
            try:
                results.append(await bench_server(cls(workdir), args, log))
            finally:
                if args.keep:
                    log(f"[{cls.name}] data kept in {workdir}")
                else:
                    shutil.rmtree(workdir, ignore_errors=True)
    finally:
        if s3 is not None:
            s3.stop()
            if not args.keep:
                shutil.rmtree(s3_dir, ignore_errors=True)

    ru = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
                    "aiohttp": aiohttp.__version__},
        "params": {"size": args.size, "chunk": args.chunk, "repeat": args.repeat, "small_count": args.small_count,
                   "small_size": args.small_size, "requests": args.requests, "concurrency": args.concurrency,
                   "time_limit": args.time_limit, "wait_idle": args.wait_idle, "workers": args.workers,
                   "storage": args.storage},
        "client_peak_rss": ru.ru_maxrss * 1024,
        "loadavg_at_start": load_start,
        "loadavg_at_end": os.getloadavg(),
        "results": results,
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"bench-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"## Berth vs Distribution — {report['date']}\n")
    print(f"`{report['command']}` · {os.cpu_count()} CPUs · Python {platform.python_version()} · "
          f"aiohttp {aiohttp.__version__}\n")
    for r in results:
        extra = f", {args.workers} workers" if r["server"] == "berth" and args.workers != 1 else ""
        print(f"- {r['server']}: {r['version']}{extra}, storage {args.storage}")
    print()
    print(table(results, args))
    print(f"\nclient peak RSS: {human(report['client_peak_rss'])} · JSON: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=parse_size, default=parse_size("1G"), help="large blob size (default 1G)")
    p.add_argument("--chunk", type=parse_size, default=parse_size("16M"), help="PATCH size for chunked push (16M)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each large-blob phase; the median is shown (3)")
    p.add_argument("--only", choices=["berth", "distribution"], help="benchmark one registry only")
    p.add_argument("--small-count", type=int, default=200, help="small blobs to push (default 200)")
    p.add_argument("--small-size", type=parse_size, default=parse_size("4K"), help="size of each small blob (4K)")
    p.add_argument("--requests", type=int, default=2000, help="manifest GET/HEAD requests (default 2000)")
    p.add_argument("--concurrency", type=int, default=4, help="connections for the small-operation phases (4)")
    p.add_argument("--time-limit", type=float, default=60.0, help="cap in seconds for each small-operation loop (60)")
    p.add_argument("--no-warm", dest="warm", action="store_false",
                   help="skip writing+deleting 3 x size first (VM first-touch page cost skews the first server)")
    p.add_argument("--workers", type=int, default=1, help="berth serve --workers N (default 1)")
    p.add_argument("--storage", choices=["filesystem", "s3"], default="filesystem",
                   help="s3: both registries store in one bucket of a SeaweedFS the bench starts "
                        "(Berth's s3 driver, Distribution's own s3 driver)")
    p.add_argument("--berth-src", type=Path, help="run Berth from this source tree instead (PYTHONPATH, same venv)")
    p.add_argument("--wait-idle", type=float, default=10.0,
                   help="before each phase wait up to N s for the machine to go quiet (<0.3 CPU busy) (10)")
    p.add_argument("--tmpdir", help="where the temporary data directories go (default: $TMPDIR or /tmp)")
    p.add_argument("--out", default=str(HERE / "results"), help="directory for the JSON results")
    p.add_argument("--keep", action="store_true", help="keep the temporary data directories")
    args = p.parse_args(argv)
    if args.small_size < 32:
        p.error("--small-size must be at least 32 bytes")
    if args.small_count < 2:
        p.error("--small-count must be at least 2 (the manifest references two blobs)")
    if args.berth_src is not None:
        Berth.src = args.berth_src.resolve()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
