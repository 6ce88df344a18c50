#!/usr/bin/env python3
"""Push (and pull) a large blob through `berth serve` on the s3 content driver into SeaweedFS.

Starts a throwaway SeaweedFS (tests/seaweed.py) and `berth serve --no-auth` with
BERTH_STORAGE_DRIVER=s3 on 127.0.0.1, then, --repeat times:

  one PATCH      POST, one streamed PATCH of the whole blob, PUT ?digest=
  PATCHes        POST, --chunk-sized PATCHes with Content-Range, PUT ?digest=
  pull           GET of the blob, streamed through Berth, sha256 verified

and prints, per phase, the wall time, the throughput and the server's RSS growth: VmHWM
is reset at each phase start (/proc/<pid>/clear_refs, "5") and a thread samples VmRSS
every 50 ms; growth = max(peak sampled, VmHWM) - VmRSS at the start. The blob is a 4 MiB
os.urandom block repeated, streamed as memoryview slices and hashed while sent.

    .venv/bin/python bench/s3_push.py --size 1G
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.seaweed import SeaweedFS  # noqa: E402

MiB = 1024 * 1024
BLOCK = bytearray(os.urandom(4 * MiB))  # its first bytes change per push: every push is a new digest


def size_arg(text: str) -> int:
    units = {"K": 1024, "M": MiB, "G": 1024 * MiB}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class RSSWatch:
    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __enter__(self):
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.start = status_kib(self.pid, "VmRSS")
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, status_kib(self.pid, "VmRSS"))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, status_kib(self.pid, "VmHWM"))

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.start) / 1024


def blob_chunks(size: int, hasher, piece: int = 256 * 1024):
    view = memoryview(BLOCK)
    sent = 0
    while sent < size:
        off = sent % len(BLOCK)
        n = min(piece, size - sent, len(BLOCK) - off)
        chunk = view[off:off + n]
        hasher.update(chunk)
        sent += n
        yield chunk


async def agen(gen):
    for x in gen:
        yield x


def blob_digest(size: int) -> str:
    h = hashlib.sha256()
    for _ in blob_chunks(size, h):
        pass
    return "sha256:" + h.hexdigest()


COMMIT_SECONDS: list[float] = []  # of each push's final PUT ?digest= (S3: complete + server-side copy)


async def finish(http, url: str) -> None:
    t = time.perf_counter()
    async with http.put(url) as r:
        assert r.status == 201, await r.text()
    COMMIT_SECONDS.append(time.perf_counter() - t)


async def push_one_patch(http, base, name, size, digest) -> None:
    async with http.post(f"{base}/v2/{name}/blobs/uploads/") as r:
        assert r.status == 202, await r.text()
        loc = r.headers["Location"]
    h = hashlib.sha256()
    async with http.patch(f"{base}{loc}" if loc.startswith("/") else loc, data=agen(blob_chunks(size, h)),
                          headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)}) as r:
        assert r.status == 202, await r.text()
        loc = r.headers["Location"]
    await finish(http, f"{base}{loc}?digest={digest}" if loc.startswith("/") else f"{loc}?digest={digest}")


async def push_patches(http, base, name, size, digest, chunk: int) -> None:
    async with http.post(f"{base}/v2/{name}/blobs/uploads/") as r:
        assert r.status == 202
        loc = r.headers["Location"]
    h = hashlib.sha256()
    stream = blob_chunks(size, h)
    offset = 0
    while offset < size:
        n = min(chunk, size - offset)

        def part(n=n):
            left = n
            for c in stream:
                yield c
                left -= len(c)
                if left <= 0:
                    return

        # blob_chunks' pieces divide the chunk size evenly for the sizes used here
        async with http.patch(f"{base}{loc}", data=agen(part()), headers={
                "Content-Type": "application/octet-stream", "Content-Length": str(n),
                "Content-Range": f"{offset}-{offset + n - 1}"}) as r:
            assert r.status == 202, await r.text()
            loc = r.headers["Location"]
        offset += n
    await finish(http, f"{base}{loc}?digest={digest}")


async def pull(http, base, name, digest, size) -> None:
    h = hashlib.sha256()
    got = 0
    async with http.get(f"{base}/v2/{name}/blobs/{digest}") as r:
        assert r.status == 200, await r.text()
        async for chunk in r.content.iter_chunked(MiB):
            h.update(chunk)
            got += len(chunk)
    assert got == size and "sha256:" + h.hexdigest() == digest


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=size_arg, default=size_arg("1G"))
    ap.add_argument("--chunk", type=size_arg, default=size_arg("16M"))
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="berth-s3-bench-"))
    weed = SeaweedFS(work / "seaweedfs")
    weed.start()
    weed.create_bucket("bench")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    env.update({
        "BERTH_STORAGE_DRIVER": "s3", "BERTH_STORAGE_S3_ENDPOINT": weed.endpoint, "BERTH_STORAGE_S3_BUCKET": "bench",
        "BERTH_STORAGE_S3_ACCESS_KEY": weed.access_key, "BERTH_STORAGE_S3_SECRET_KEY": weed.secret_key,
        "BERTH_STORAGE_S3_REGION": weed.region,
    })
    server = subprocess.Popen([sys.executable, "-m", "registry.cli", "serve", "--no-auth", "--port", str(port),
                               "--data", str(work / "data")], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=open(work / "berth.log", "wb"))  # noqa: SIM115
    base = f"http://127.0.0.1:{port}"
    rows = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            for _ in range(600):
                try:
                    async with http.get(f"{base}/v2/") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            await push_one_patch(http, base, "bench/warm", 16 * MiB, blob_digest(16 * MiB))  # clients, pools
            for i in range(args.repeat):
                BLOCK[:8] = f"mono{i:04d}".encode()[:8]
                mono = blob_digest(args.size)
                BLOCK[:8] = f"chnk{i:04d}".encode()[:8]
                chunked = blob_digest(args.size)
                for phase, run in (
                    ("push, one PATCH", lambda n=f"bench/mono{i}", d=mono: push_one_patch(http, base, n, args.size, d)),
                    (f"push, {args.chunk // MiB} MiB PATCHes",
                     lambda n=f"bench/chunked{i}", d=chunked: push_patches(http, base, n, args.size, d, args.chunk)),
                    ("pull, streamed", lambda n=f"bench/chunked{i}", d=chunked: pull(http, base, n, d, args.size)),
                ):
                    BLOCK[:8] = (f"mono{i:04d}" if "one" in phase else f"chnk{i:04d}").encode()[:8]
                    COMMIT_SECONDS.clear()
                    with RSSWatch(server.pid) as rss:
                        t = time.perf_counter()
                        await run()
                        dt = time.perf_counter() - t
                    commit = f"{COMMIT_SECONDS[0]:.1f}" if COMMIT_SECONDS else "-"
                    rows.append((phase, dt, commit, args.size / dt / 1e6, rss.start / 1024, rss.growth_mib))
    finally:
        server.terminate()
        server.wait(30)
        weed.stop()
    print(f"| phase ({args.size / MiB / 1024:.2f} GiB) | seconds | of which PUT ?digest= | MB/s "
          "| server RSS at start | RSS growth |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for phase, dt, commit, mbs, start, growth in rows:
        print(f"| {phase} | {dt:.1f} | {commit} | {mbs:.0f} | {start:.1f} MiB | {growth:.1f} MiB |")


if __name__ == "__main__":
    asyncio.run(main())
