"""The rows of the bench: what each measures, and how.

A row has three steps per sample: ``prepare`` (untimed: a fresh token through the 401 flow,
test data), ``measure`` (timed, returns ``{"value": ..}`` in the row's unit, higher is better)
and ``cleanup``. bench/run.py runs every row for every registry, interleaved, ``--repeat`` times.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

import client
from client import MANIFEST_ACCEPT, Auth, BlobSource, Image, MiB, repo_scope
from loadgen import BlobBatch, WrkOptions, run_ab_head, run_wrk, wrk_errors
from measure import ProcessTree, RSSSampler
from servers import Server

BIG_REPO = "bench/big"
SMALL_REPO = "bench/small"
FLEET_REPO = "bench/fleet"
PUSH_REPO = "bench/pushes"


@dataclass
class Settings:
    size: int
    chunk: int
    small_size: int
    pull_clients: int
    fleet_clients: int
    fleet_layers: int
    fleet_layer_size: int
    skopeo_layers: int
    skopeo_layer_size: int
    load: WrkOptions
    tmp: Path
    fleet_image: Image | None = None  # made once, pushed to every registry


@dataclass
class Target:
    """One registry under test, with what the set-up pushed into it."""
    server: Server
    tree: ProcessTree
    sampler: RSSSampler | None
    auth: Auth
    session: aiohttp.ClientSession
    state: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.server.name

    async def bearer(self, scope: str) -> dict[str, str]:
        return await self.auth.headers(self.session, scope)

    async def auth_value(self, scope: str) -> str:
        return (await self.bearer(scope)).get("Authorization", "")


def drop_big_files(root: Path, min_size: int, keep: str) -> None:
    """Unlink the large blobs a push left behind, except the one the pull rows read (`keep`: its hex).

    On this kind of VM, writing into page-cache pages the guest has never touched costs ~10x
    more kernel time than writing into recycled ones; freeing each pushed blob keeps every push
    on recycled pages and the dirty-page total far below the writeback thresholds.
    """
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            try:
                if keep not in str(p) and p.stat().st_size >= min_size:
                    p.unlink()
            except OSError:
                pass


async def set_up(t: Target, cfg: Settings) -> None:
    """What the rows read: a small image (manifest rows, blob HEAD), the fleet image, one large blob."""
    headers = await t.bearer(repo_scope(SMALL_REPO))
    small = client.make_image(2, cfg.small_size)
    await client.push_image(t.session, t.server.base, SMALL_REPO, small, headers)
    t.state.update(manifest_digest=client.sha256(small.manifest), small_blob=small.layer_digests[0],
                   realm=await t.auth.realm_url(t.session, repo_scope(SMALL_REPO)) or "")
    fleet = cfg.fleet_image
    await client.push_image(t.session, t.server.base, FLEET_REPO, fleet, await t.bearer(repo_scope(FLEET_REPO)))
    src = BlobSource(cfg.size)
    digest = await client.push_big(t.session, t.server.base, BIG_REPO, src, None,
                                   await t.bearer(repo_scope(BIG_REPO)))
    t.state["pull_blob"] = digest


# ---------------------------------------------------------------------------- rows
class Row:
    key = ""
    label = ""
    unit = ""
    target_ratio: float | None = None  # the goal for berth / distribution, if any
    load_generator = ""  # what drives it (for the docs and the table)

    def describe(self, cfg: Settings) -> None:
        """Set the label from the settings (sizes, client counts)."""

    def applies(self, t: Target) -> bool:
        return True

    async def prepare(self, t: Target, cfg: Settings, rep: int) -> dict:
        return {}

    async def measure(self, t: Target, cfg: Settings, ctx: dict) -> dict:
        raise NotImplementedError

    async def cleanup(self, t: Target, cfg: Settings, ctx: dict) -> None:
        pass


class PushBig(Row):
    unit = "MB/s"
    load_generator = "aiohttp, 1 connection"

    def __init__(self, chunked: bool) -> None:
        self.chunked = chunked
        self.key = "push-chunked" if chunked else "push-mono"

    def describe(self, cfg: Settings) -> None:
        self.label = (f"push {cfg.size / MiB:.0f} MiB, {cfg.chunk / MiB:.0f} MiB PATCHes" if self.chunked
                      else f"push {cfg.size / MiB:.0f} MiB, one PATCH")

    async def prepare(self, t, cfg, rep):
        return {"auth": await t.bearer(repo_scope(PUSH_REPO)), "src": BlobSource(cfg.size)}

    async def measure(self, t, cfg, ctx):
        t0 = time.perf_counter()
        await client.push_big(t.session, t.server.base, PUSH_REPO, ctx["src"], cfg.chunk if self.chunked else None,
                              ctx["auth"])
        return {"value": cfg.size / 1e6 / (time.perf_counter() - t0)}

    async def cleanup(self, t, cfg, ctx):
        if t.server.managed:
            drop_big_files(t.server.workdir / "data", cfg.size, t.state["pull_blob"].removeprefix("sha256:"))


class PullBig(Row):
    unit = "MB/s"
    load_generator = "curl to /dev/null"

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.key = "pull" if clients == 1 else "pull-concurrent"

    def describe(self, cfg: Settings) -> None:
        what = f"pull {cfg.size / MiB:.0f} MiB"
        self.label = what if self.clients == 1 else f"{what}, {self.clients} concurrent (sum)"

    async def prepare(self, t, cfg, rep):
        return {"auth": await t.bearer(f"repository:{BIG_REPO}:pull")}

    async def measure(self, t, cfg, ctx):
        url = f"{t.server.base}/v2/{BIG_REPO}/blobs/{t.state['pull_blob']}"
        t0 = time.perf_counter()
        await asyncio.gather(*(client.curl_get(url, ctx["auth"], cfg.size) for _ in range(self.clients)))
        return {"value": self.clients * cfg.size / 1e6 / (time.perf_counter() - t0)}


class FleetPull(Row):
    key = "fleet-pull"
    unit = "images/s"
    load_generator = "aiohttp, one session per client"

    def describe(self, cfg: Settings) -> None:
        self.label = (f"fleet: {cfg.fleet_clients} clients pull a {cfg.fleet_layers} × "
                      f"{cfg.fleet_layer_size / 1024:.0f} KiB-layer image, token each")

    async def measure(self, t, cfg, ctx):
        deadline = time.perf_counter() + cfg.load.duration
        done = 0

        async def node() -> None:
            nonlocal done
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
                while time.perf_counter() < deadline:
                    await client.pull_image(s, t.server.base, FLEET_REPO, t.auth)
                    done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(node() for _ in range(cfg.fleet_clients)))
        return {"value": done / (time.perf_counter() - t0), "images": done}


class Skopeo(Row):
    unit = "MB/s"
    load_generator = "skopeo copy"
    images: dict[int, Path] = {}  # rep → OCI layout, the same image for every registry in a repetition

    def __init__(self, push: bool) -> None:
        self.push = push
        self.key = "skopeo-push" if push else "skopeo-pull"

    def describe(self, cfg: Settings) -> None:
        what = f"{cfg.skopeo_layers} × {cfg.skopeo_layer_size / MiB:.0f} MiB layers"
        self.label = f"skopeo copy oci: → registry ({what})" if self.push else f"skopeo copy registry → dir: ({what})"

    @classmethod
    def layout(cls, cfg: Settings, rep: int) -> Path:
        if rep not in cls.images:
            d = Path(tempfile.mkdtemp(prefix=f"bench-skopeo-{rep}-", dir=cfg.tmp))
            image = client.make_image(cfg.skopeo_layers, cfg.skopeo_layer_size)
            client.write_oci_layout(image, d)
            cls.images[rep] = d
            (d / "size").write_text(str(image.size))
        return cls.images[rep]

    async def prepare(self, t, cfg, rep):
        layout = self.layout(cfg, rep)
        ref = f"docker://{t.server.base.split('://', 1)[1]}/bench/skopeo-{rep}:latest"
        out = Path(tempfile.mkdtemp(prefix="bench-skopeo-out-", dir=cfg.tmp))
        return {"layout": layout, "ref": ref, "out": out, "size": int((layout / "size").read_text())}

    async def measure(self, t, cfg, ctx):
        creds = [f"{t.server.user}:{t.server.password}"] if t.server.user else []
        if self.push:
            argv = ["--dest-tls-verify=false", *(["--dest-creds", *creds] if creds else []),
                    f"oci:{ctx['layout']}:latest", ctx["ref"]]
        else:
            argv = ["--src-tls-verify=false", *(["--src-creds", *creds] if creds else []),
                    ctx["ref"], f"dir:{ctx['out'] / 'image'}"]
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec("skopeo", "copy", "-q", *argv, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"skopeo copy {' '.join(argv[-2:])}: exit {proc.returncode}: {err.decode()[-800:]}")
        return {"value": ctx["size"] / 1e6 / elapsed}

    async def cleanup(self, t, cfg, ctx):
        shutil.rmtree(ctx["out"], ignore_errors=True)

    @classmethod
    def remove_layouts(cls) -> None:
        for d in cls.images.values():
            shutil.rmtree(d, ignore_errors=True)
        cls.images.clear()


class Load(Row):
    """A small request repeated by wrk (GET) or ab (HEAD) over --connections for --duration."""
    unit = "req/s"
    scope = f"repository:{SMALL_REPO}:pull"
    method = "GET"

    def __init__(self, key: str, label: str, target_ratio: float | None, path: str, method: str = "GET",
                 accept: str = "") -> None:
        self.key, self.label, self.target_ratio = key, label, target_ratio
        self.path, self.method, self.accept = path, method, accept
        self.load_generator = "wrk" if method == "GET" else "ab -k (HEAD)"

    async def prepare(self, t, cfg, rep):
        return {"authorization": await t.auth_value(self.scope),
                "path": self.path.format(**t.state, repo=SMALL_REPO)}

    async def measure(self, t, cfg, ctx):
        url = t.server.base + ctx["path"]
        if self.method == "HEAD":
            headers = {k: v for k, v in (("Authorization", ctx["authorization"]), ("Accept", self.accept)) if v}
            r = await run_ab_head(cfg.load, url, headers)
        else:
            env = {"BENCH_AUTH": ctx["authorization"], "BENCH_ACCEPT": self.accept, "BENCH_METHOD": "GET"}
            r = await run_wrk(cfg.load, "get.lua", url, env)
        return summarize(r, r["requests"])


def summarize(r: dict, count: int) -> dict:
    out = {"value": count / r["seconds"], "requests": r["requests"], "errors": wrk_errors(r),
           "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000}
    for extra in ("keepalive_requests", "created", "wrapped", "unexpected"):
        if extra in r:
            out[extra] = r[extra]
    return out


class TokenLoad(Row):
    """GET /auth/token with HTTP Basic (warm credential cache) — only where the registry is its own realm."""
    key = "token"
    label = "token endpoint: GET realm?scope=… with Basic (warm cache)"
    unit = "tokens/s"
    load_generator = "wrk"
    absolute_target = 5000.0

    def applies(self, t: Target) -> bool:
        return bool(t.server.user) and client.same_origin(t.state.get("realm", ""), t.server.base)

    async def prepare(self, t, cfg, rep):
        # warm the credential cache of every worker: each process checks the password once (bcrypt),
        # and the kernel spreads connections over the workers (SO_REUSEPORT), so one connection
        # would leave the others' first bcrypt inside the timed sample
        async def one() -> None:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
                await t.auth.token(s, repo_scope(SMALL_REPO))

        await asyncio.gather(*(one() for _ in range(16)))
        return {"url": t.state["realm"]}

    async def measure(self, t, cfg, ctx):
        env = {"BENCH_AUTH": client.basic_header(t.server.user, t.server.password)}
        r = await run_wrk(cfg.load, "get.lua", ctx["url"], env)
        return summarize(r, r["requests"])


class BlobPushLoad(Row):
    key = "blob-push"
    unit = "blobs/s"
    target_ratio = 1.6
    load_generator = "wrk + blob_push.lua"

    def describe(self, cfg: Settings) -> None:
        self.label = f"{cfg.small_size / 1024:.0f} KiB blob push (POST + PUT ?digest= with body)"

    async def prepare(self, t, cfg, rep):
        count = max(20000, int(cfg.load.duration * 4000))  # more than any server pushes in the time
        return {"authorization": await t.auth_value(repo_scope(SMALL_REPO)),
                "batch": await asyncio.to_thread(BlobBatch, cfg.small_size, count, cfg.load.threads)}

    async def measure(self, t, cfg, ctx):
        env = {"BENCH_AUTH": ctx["authorization"], **ctx["batch"].env(SMALL_REPO)}
        r = await run_wrk(cfg.load, "blob_push.lua", t.server.base, env)
        return summarize(r, r["created"])

    async def cleanup(self, t, cfg, ctx):
        ctx["batch"].remove()


def all_rows(cfg: Settings) -> list[Row]:
    """Every row, in the order they run: large transfers first, then the small-request rows."""
    manifest = "/v2/{repo}/manifests/"
    rows = [
        PushBig(chunked=False),
        PushBig(chunked=True),
        PullBig(clients=1),
        PullBig(clients=cfg.pull_clients),
        Skopeo(push=True),
        Skopeo(push=False),
        FleetPull(),
        Load("manifest-get-tag", "manifest GET by tag", 3.6, manifest + "latest", accept=MANIFEST_ACCEPT),
        Load("manifest-get-digest", "manifest GET by digest", 3.6, manifest + "{manifest_digest}",
             accept=MANIFEST_ACCEPT),
        Load("manifest-head", "manifest HEAD by tag", 3.6, manifest + "latest", method="HEAD",
             accept=MANIFEST_ACCEPT),
        Load("blob-head", "blob HEAD", 3.6, "/v2/{repo}/blobs/{small_blob}", method="HEAD"),
        Load("v2-base", "GET /v2/ with a token", 3.5, "/v2/"),
        TokenLoad(),
        BlobPushLoad(),
    ]
    for row in rows:
        row.describe(cfg)
    return rows
