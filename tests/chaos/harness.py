"""The chaos harness: a real ``berth serve`` that is SIGKILLed and restarted, and a load of
concurrent pushes of random shapes that records every acknowledged (201/202) write.

* ``Killable`` — one ``berth serve --no-auth`` process on a fixed port and data directory
  (and, through ``env``, a PostgreSQL database or the S3 driver: ``BERTH_DATABASE_URL``,
  ``BERTH_STORAGE_*``); ``kill()`` sends SIGKILL, ``start()`` brings it back on the same data.
* ``Load`` — ``workers`` asyncio tasks (aiohttp), each owning its repositories, doing at random:
  an image pushed monolithically (``POST ?digest=``), chunk by chunk (``PATCH`` with
  ``Content-Range``, the last chunk sometimes in the ``PUT``), or by ``POST`` then ``PUT`` with
  the body; manifests by tag; multi-platform indexes (children by digest, then the index by
  tag); tag moves; cross-repository mounts; manifest deletes. A request cut off by the kill
  (connection refused/reset, no status) is *uncertain*: it may or may not have happened, so
  nothing is expected of it, and an interrupted chunked upload is resumed from the ``Range``
  the server reports after the restart. Every ``201``/``202`` is recorded in ``Expected``.
* ``verify`` pulls every acknowledged manifest, tag and blob and compares bytes.

The random choices come from ``CHAOS_SEED`` (printed), so a failing run can be replayed as far
as the scheduling allows.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.e2e.conftest import REPO_ROOT, client_env, free_port

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCTET = {"Content-Type": "application/octet-stream"}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def berth() -> str:
    local = REPO_ROOT / ".venv" / "bin" / "berth"
    return str(local) if local.exists() else "berth"


class Killable:
    """``berth serve --no-auth`` on one port and data directory, killed and restarted at will."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.data = workdir / "data"
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "berth.log"
        self.starts = 0

    def start(self, timeout: float = 60) -> None:
        cmd = [berth(), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data", str(self.data), "--no-auth"]
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts} ---\n".encode())
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                         env=client_env({"BERTH_LOG_LEVEL": "INFO", **self.env}),
                                         start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + timeout
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"berth exited with {self.proc.returncode} at start:\n{self.log()[-3000:]}")
            try:
                with opener.open(self.url + "/v2/", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"berth did not come up in {timeout}s:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, nothing is flushed."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the server and nothing else
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        try:
            return self.log_path.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """A ``berth`` command (fsck, gc) on the same data directory and database."""
        return subprocess.run([berth(), *args, "--data", str(self.data)], capture_output=True, text=True,
                              timeout=timeout, env=client_env(self.env), cwd=self.workdir)


class Lost(Exception):
    """The request got no answer (the server died under it): its outcome is unknown."""


@dataclass
class Expected:
    """What the registry acknowledged, and must therefore still serve."""
    blobs: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (repo, digest) → bytes (201)
    manifests: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (repo, digest) → bytes (201)
    tags: dict[tuple[str, str], str | None] = field(default_factory=dict)  # (repo, tag) → digest; None = uncertain
    children: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (repo, index digest) → children
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n

    def forget_manifest(self, repo: str, digest: str, *, deleted: bool = True) -> None:
        """Stop expecting ``digest`` in ``repo``. ``deleted=False``: its delete was lost, so it may
        still be there, and an index that may still be there still lists its children."""
        self.manifests.pop((repo, digest), None)
        if deleted:
            self.children.pop((repo, digest), None)
        for key, d in list(self.tags.items()):
            if key[0] == repo and d == digest:
                del self.tags[key]

    def listed(self, repo: str, digest: str) -> bool:
        return any(r == repo and digest in kids for (r, _), kids in self.children.items())


class Load:
    """Concurrent pushes of random shapes against ``url``, recording what was acknowledged."""

    def __init__(self, url: str, workers: int, seed: int, *, sizes: str = "small") -> None:
        self.url = url
        self.workers = workers
        self.rng = random.Random(seed)
        self.expected = Expected()
        self.stop = asyncio.Event()
        self.up = asyncio.Event()
        self.up.set()
        self.big = sizes != "small"
        self.retries = 0

    # ---- HTTP with "lost" ---------------------------------------------------------------------
    async def req(self, s: aiohttp.ClientSession, method: str, path: str, **kw) -> tuple[int, dict, bytes]:
        url = path if path.startswith("http") else self.url + path
        try:
            async with s.request(method, url, allow_redirects=False, **kw) as r:
                return r.status, dict(r.headers), await r.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as e:
            raise Lost(f"{method} {path}: {e!r}") from None

    def _size(self, rng: random.Random) -> int:
        roll = rng.random()
        if roll < 0.3:
            return rng.randint(0, 2048)
        if roll < 0.9 or not self.big:
            return rng.randint(2048, 256 * 1024)
        return rng.randint(1 << 20, 4 << 20)

    # ---- blobs -------------------------------------------------------------------------------
    async def push_blob(self, s, rng, repo: str, data: bytes) -> None:
        digest = sha256(data)
        how = rng.choice(["monolithic", "chunked", "chunked", "post-put", "mount"])
        if how == "mount":
            sources = [r for (r, d) in self.expected.blobs if d == digest and r != repo]
            if sources:
                st, _, _ = await self.req(s, "POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={sources[0]}")
                if st == 201:
                    self.expected.blobs[(repo, digest)] = data
                    self.expected.count("mounts")
                    return
            how = "monolithic"
        if how == "monolithic":
            st, _, body = await self.req(s, "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data=data, headers=OCTET)
            assert st == 201, (st, body)
        elif how == "post-put":
            st, h, body = await self.req(s, "POST", f"/v2/{repo}/blobs/uploads/")
            assert st == 202, (st, body)
            loc = h["Location"]
            st, _, body = await self.req(s, "PUT", f"{loc}{'&' if '?' in loc else '?'}digest={digest}", data=data,
                                         headers=OCTET)
            assert st == 201, (st, body)
        elif len(data) < 2:  # a resumed session's "Range: 0-0" would not say whether 0 or 1 byte is in
            st, _, body = await self.req(s, "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data=data,
                                         headers=OCTET)
            assert st == 201, (st, body)
        else:
            await self.push_chunked(s, rng, repo, data, digest)
        self.expected.blobs[(repo, digest)] = data
        self.expected.count(f"blobs-{how}")

    async def push_chunked(self, s, rng, repo: str, data: bytes, digest: str) -> None:
        st, h, body = await self.req(s, "POST", f"/v2/{repo}/blobs/uploads/")
        assert st == 202, (st, body)
        loc = h["Location"]
        offset = 0
        last_in_put = rng.random() < 0.3 and len(data) > 0
        end = len(data)
        resumed = False
        while True:
            try:
                chunk_end = end if not last_in_put else max(0, end - rng.randint(1, max(1, end // 3)))
                while offset < chunk_end:
                    n = min(chunk_end - offset, rng.randint(4096, 192 * 1024))
                    chunk = data[offset:offset + n]
                    st, h, body = await self.req(
                        s, "PATCH", loc, data=chunk,
                        headers={**OCTET, "Content-Range": f"{offset}-{offset + n - 1}", "Content-Length": str(n)})
                    if st == 404 and resumed:
                        # a killed PUT that carried a last chunk had placed the upload as the blob
                        # before its link: the session cannot go on; start over (nothing acked lost)
                        self.expected.count("uploads-restarted")
                        return await self.push_chunked(s, rng, repo, data, digest)
                    assert st == 202, (st, body)
                    assert h["Range"] == f"0-{offset + n - 1}", h
                    loc = h["Location"]
                    offset += n
                rest = data[offset:]
                headers = dict(OCTET)
                if rest:
                    headers["Content-Range"] = f"{offset}-{len(data) - 1}"
                st, _, body = await self.req(s, "PUT", f"{loc}{'&' if '?' in loc else '?'}digest={digest}", data=rest,
                                             headers=headers)
                if st == 404 and resumed and rest:
                    # the killed PUT (carrying this last chunk) had committed the upload before its
                    # link: a last chunk cannot be appended to a placed upload; start over (the
                    # spec's answer), nothing acknowledged was lost
                    self.expected.count("uploads-restarted")
                    return await self.push_chunked(s, rng, repo, data, digest)
                assert st == 201, (st, body)
                return
            except Lost:
                # the server died under a PATCH or the PUT: after the restart, ask where the
                # session stands and go on from there (an acknowledged chunk is never lost)
                await self.wait_up()
                st, h, body = await self.req(s, "GET", loc)
                if st == 404:  # the PUT had completed (the session is gone): is the blob there?
                    st2, _, got = await self.req(s, "GET", f"/v2/{repo}/blobs/{digest}")
                    if st2 == 200 and got == data:
                        return
                    raise Lost("session gone, blob not placed") from None
                assert st == 204, (st, body)
                last = int(h["Range"].split("-")[1]) if "Range" in h else -1
                committed = last + 1 if last > 0 or offset > 0 else 0  # "0-0": nothing yet (chunks are ≥ 2 bytes)
                assert committed >= offset - 0, (committed, offset)  # acknowledged chunks survive
                # (a chunk cut off before its 202 may have been recorded: the server is the truth)
                offset = committed
                resumed = True
                loc = h.get("Location", loc)
                self.expected.count("uploads-resumed")

    # ---- manifests -----------------------------------------------------------------------------
    async def put_manifest(self, s, repo: str, ref: str, body: bytes, media_type: str) -> str:
        digest = sha256(body)
        try:
            st, h, text = await self.req(s, "PUT", f"/v2/{repo}/manifests/{ref}", data=body,
                                         headers={"Content-Type": media_type})
        except Lost:
            if not ref.startswith("sha256:"):
                self.expected.tags[(repo, ref)] = None  # it may or may not have moved
            raise
        if st == 400 and b"MANIFEST_BLOB_UNKNOWN" in text:
            raise Retry(text.decode())
        assert st == 201, (st, text)
        assert h.get("Docker-Content-Digest") == digest
        self.expected.manifests[(repo, digest)] = body
        if not ref.startswith("sha256:"):
            self.expected.tags[(repo, ref)] = digest
        return digest

    async def image(self, s, rng, repo: str, tag: str | None) -> tuple[str, bytes]:
        config = json.dumps({"architecture": rng.choice(["amd64", "arm64"]), "os": "linux",
                             "nonce": rng.getrandbits(64)}).encode()
        layers = [rng.randbytes(self._size(rng)) for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.3 and self.expected.blobs:  # share a layer another image has
            (_, d), data = rng.choice(list(self.expected.blobs.items()))
            layers.append(data)
        body = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256(b), "size": len(b)} for b in layers],
        }).encode()
        for attempt in range(4):
            for b in (config, *layers):
                await self.push_blob(s, rng, repo, b)
            try:
                digest = await self.put_manifest(s, repo, tag or sha256(body), body, OCI_MANIFEST)
                break
            except Retry:
                # a collector with grace 0 dropped a link no manifest referenced yet: push the
                # blobs again and retry, as a client would (after 4 tries, give up on this image)
                self.retries += 1
                if attempt == 3:
                    raise
        self.expected.count("images")
        return digest, body

    async def index(self, s, rng, repo: str, tag: str) -> None:
        kids = [await self.image(s, rng, repo, None) for _ in range(rng.randint(2, 3))]
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": d, "size": len(b), "platform": {"os": "linux", "architecture": "amd64"}}
            for d, b in kids]}).encode()
        # recorded before the PUT: a PUT lost to a kill may still have stored the index, and then
        # its children stay listed (the delete of a listed child is refused) for the rest of the run
        key = (repo, sha256(body))
        self.expected.children[key] = {d for d, _ in kids}
        try:
            await self.put_manifest(s, repo, tag, body, OCI_INDEX)
        except Retry:
            self.expected.children.pop(key, None)  # refused: not stored
            raise
        self.expected.count("indexes")

    async def retag(self, s, rng, repo: str) -> None:
        mine = [(d, b) for (r, d), b in self.expected.manifests.items() if r == repo]
        if not mine:
            return
        d, body = rng.choice(mine)
        media = json.loads(body)["mediaType"]
        await self.put_manifest(s, repo, rng.choice(["latest", "stable", f"t{rng.randint(0, 3)}"]), body, media)
        self.expected.count("tag-moves")

    async def delete(self, s, rng, repo: str) -> None:
        mine = [d for (r, d) in self.expected.manifests if r == repo and not self.expected.listed(r, d)]
        if not mine:
            return
        d = rng.choice(mine)
        try:
            st, _, text = await self.req(s, "DELETE", f"/v2/{repo}/manifests/{d}")
        except Lost:
            self.expected.forget_manifest(repo, d, deleted=False)  # it may be gone, or not
            raise
        assert st == 202, (st, text)
        self.expected.forget_manifest(repo, d)
        self.expected.count("deletes")

    # ---- the workers ---------------------------------------------------------------------------
    async def wait_up(self) -> None:
        await self.up.wait()

    async def worker(self, i: int) -> None:
        rng = random.Random(self.rng.getrandbits(64))
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(force_close=True)) as s:
            while not self.stop.is_set():
                repo = f"chaos/w{i}-r{rng.randint(0, 2)}"
                op = rng.choices(["image", "index", "retag", "delete"], weights=[5, 2, 2, 2])[0]
                try:
                    if op == "image":
                        await self.image(s, rng, repo, rng.choice(["latest", "v1", "v2", None]))
                    elif op == "index":
                        await self.index(s, rng, repo, rng.choice(["multi", "latest"]))
                    elif op == "retag":
                        await self.retag(s, rng, repo)
                    else:
                        await self.delete(s, rng, repo)
                except Lost:
                    self.expected.count("lost-requests")
                    await self.wait_up()
                except Retry:
                    self.expected.count("images-given-up")  # links collected before the manifest, 4 times

    async def run_workers(self) -> list[asyncio.Task]:
        return [asyncio.create_task(self.worker(i)) for i in range(self.workers)]


class Retry(Exception):
    """The manifest PUT found a blob gone (garbage collection with grace 0): push it again."""


async def verify(url: str, expected: Expected, *, blobs: bool = True) -> dict[str, int]:
    """Every acknowledged manifest, tag and (with ``blobs``) blob is served byte for byte. Returns
    counts; raises AssertionError listing every loss."""
    lost: list[str] = []
    n = {"manifests": 0, "tags": 0, "blobs": 0}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
        async def get(path: str, **kw) -> tuple[int, bytes, dict]:
            async with s.get(url + path, **kw) as r:
                return r.status, await r.read(), dict(r.headers)

        accept = {"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
        for (repo, digest), body in expected.manifests.items():
            st, got, _ = await get(f"/v2/{repo}/manifests/{digest}", headers=accept)
            if st != 200 or got != body:
                lost.append(f"manifest {repo}@{digest}: {st}")
            n["manifests"] += 1
            doc = json.loads(body)
            refs = [doc["config"]["digest"], *(layer["digest"] for layer in doc.get("layers", []))] if "config" in doc else []
            for d in refs:  # every image acknowledged is complete
                st, got, _ = await get(f"/v2/{repo}/blobs/{d}")
                if st != 200 or sha256(got) != d:
                    lost.append(f"blob {repo}@{d} of manifest {digest}: {st}")
                n["blobs"] += 1
        for (repo, tag), digest in expected.tags.items():
            if digest is None:
                continue
            st, got, h = await get(f"/v2/{repo}/manifests/{tag}", headers=accept)
            if st != 200 or sha256(got) != digest:
                lost.append(f"tag {repo}:{tag} → {digest}: {st} {sha256(got) if st == 200 else ''}")
            n["tags"] += 1
        if blobs:
            for (repo, digest), data in expected.blobs.items():
                st, got, _ = await get(f"/v2/{repo}/blobs/{digest}")
                if st != 200 or got != data:
                    lost.append(f"blob {repo}@{digest}: {st}")
                n["blobs"] += 1
    assert not lost, f"{len(lost)} acknowledged writes lost:\n" + "\n".join(lost[:50])
    return n


async def age_pins(server: Killable, seconds: float) -> None:
    """Move every blob row's ``last_used_at`` ``seconds`` into the past: what waiting that long
    does for garbage collection (every delay is in the database), without waiting."""
    from sqlalchemy import update  # noqa: PLC0415

    from storage import db  # noqa: PLC0415
    from storage.models import Blob  # noqa: PLC0415
    from storage.paths import Layout  # noqa: PLC0415

    url = server.env.get("BERTH_DATABASE_URL") or db.default_url(Layout(server.data))
    database = db.Database(url)
    try:
        await database.write(lambda c: c.execute(update(Blob).values(last_used_at=Blob.last_used_at - seconds)))
    finally:
        await database.dispose()


LEFTOVERS = ("orphan-content", "unlinked-blob", "row-without-content")
