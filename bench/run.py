#!/usr/bin/env python3
"""Side-by-side benchmark: Berth vs CNCF Distribution 2.8.2 (Debian's docker-registry), both with token auth.

Both registries run as subprocesses on 127.0.0.1 with fresh data directories, at the same
time, and every row (bench/rows.py) runs interleaved — Berth, Distribution, Berth,
Distribution… — ``--repeat`` times: each repetition gives a ratio berth / distribution,
and the table shows the median value (range) per registry, the ratio of each repetition and
their median. Small-request rows are driven by wrk or ab (C load generators, bench/lua/),
large transfers by aiohttp, curl and skopeo. Every client does the real auth flow (401 challenge
→ token from the realm with HTTP Basic → Bearer); ``--no-auth`` runs both without auth.

Before each sample the bench waits (``--wait-idle`` s at most) for the machine to be quiet,
and every sample records server CPU, client CPU (this process and the wrk/ab/curl/skopeo it
ran) and the CPU the rest of the machine used meanwhile, so a disturbed sample shows.

``--target NAME=URL[,user=U,password=P]`` adds a registry already running (benchmarked with
the same rows; its CPU and memory are not measured). Output: a markdown table on stdout,
JSON in bench/results/, and a PNG chart of the ratios (``--chart``). docs/performance.md
describes every row. Only 127.0.0.1 (and the ``--target`` URLs given) is ever contacted.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import aiohttp

import report
from client import MiB, Auth, make_image
from loadgen import AB, WRK, WrkOptions
from measure import ProcessTree, RSSSampler, Sample, wait_idle
from rows import Row, Settings, Skopeo, Target, all_rows, set_up
from servers import DISTRIBUTION, S3Target, Server
from servers import Berth, Distribution, External

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_CHART = HERE / "results" / "ratios.png"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- helpers
def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 1G, 256M, 1048576)")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2)]
    return int(float(m.group(1)) * mult)


def mib(n: float) -> str:
    return f"{n / MiB:.1f} MiB"


def warm_page_cache(where: Path, nbytes: int) -> float:
    """Write and delete `nbytes` of zeros so later file writes reuse already-faulted memory
    (on this VM, first-touch page-cache memory costs ~10x: the first registry would pay it)."""
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


def missing_tools(need_distribution: bool) -> list[str]:
    tools = {"wrk": WRK, "ab": AB, "curl": shutil.which("curl"), "skopeo": shutil.which("skopeo")}
    if need_distribution:
        tools["docker-registry"] = DISTRIBUTION
    return [name for name, path in tools.items() if not path or not os.access(path, os.X_OK)]


def process_roots(server: Server) -> list[int]:
    """The processes whose CPU and memory count as the server's (none for an external registry)."""
    if not server.managed:
        return []
    roots = [server.pid]
    token_proc = getattr(server, "token_proc", None)
    if token_proc is not None:
        roots.append(token_proc.pid)  # Distribution's token service is part of what it costs
    return roots


# ---------------------------------------------------------------------------- running
async def start_target(server: Server) -> Target:
    await asyncio.to_thread(server.start)
    tree = ProcessTree(process_roots(server))
    sampler = None
    if server.managed:
        sampler = RSSSampler(tree)
        sampler.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300),
                                    auto_decompress=False)
    t = Target(server, tree, sampler, Auth(server.base, server.user, server.password), session)
    await asyncio.sleep(0.5)
    t.state["baseline_rss"] = tree.rss() if server.managed else None
    log(f"[{server.name}] {server.base}, {server.version() if server.managed else 'external'}"
        + (f", baseline RSS {mib(t.state['baseline_rss'])}" if server.managed else ""))
    return t


async def stop_target(t: Target) -> None:
    t.state["process_hwm"] = t.tree.hwm() if t.server.managed else None
    await t.session.close()
    if t.sampler:
        t.sampler.stop()
    t.server.stop()


async def run_sample(row: Row, t: Target, cfg: Settings, rep: int, wait: float) -> dict:
    ctx = await row.prepare(t, cfg, rep)
    try:
        waited = await wait_idle(wait)
        with Sample(t.tree, t.sampler) as result:
            result.update(await row.measure(t, cfg, ctx))
        result["waited_for_idle_s"] = waited
        return result
    finally:
        await row.cleanup(t, cfg, ctx)


async def run_rows(rows: list[Row], targets: list[Target], cfg: Settings, repeat: int, wait: float) -> dict:
    """samples[row][server] = [sample of repetition 0, 1, …]; registries interleaved within a repetition."""
    samples: dict[str, dict[str, list[dict]]] = {}
    for row in rows:
        per = samples.setdefault(row.key, {t.name: [] for t in targets})
        for rep in range(repeat):
            for t in targets:
                if not row.applies(t):
                    continue
                try:
                    s = await run_sample(row, t, cfg, rep, wait)
                except Exception as e:  # one failed sample must not lose the run: recorded, shown
                    log(f"[{t.name}] {row.key} #{rep + 1}: FAILED {type(e).__name__}: {e}")
                    if t.server.managed:
                        log(t.server.log_tail(10))
                    s = {"error": f"{type(e).__name__}: {e}"[:500]}
                else:
                    log(f"[{t.name}] {row.key} #{rep + 1}: {s['value']:.1f} {row.unit} "
                        f"(CPU server {s['server_cpu_s']} / client {s['client_cpu_s']} / rest {s['rest_cpu_s']} s"
                        + (f", {s['errors']} errors" if s.get("errors") else "") + ")")
                per[t.name].append(s)
    return samples


def memory_table(targets: list[Target], samples: dict) -> str:
    managed = [t for t in targets if t.server.managed]
    if not managed:
        return ""
    lines = ["| memory | " + " | ".join(t.name for t in managed) + " |", "|---|" + "---:|" * len(managed)]
    lines.append("| baseline RSS (idle, after start) | "
                 + " | ".join(mib(t.state["baseline_rss"]) for t in managed) + " |")
    for key in ("push-mono", "push-chunked", "pull"):
        growth = [max((s.get("rss_growth", 0) for s in samples.get(key, {}).get(t.name, [])), default=0)
                  for t in managed]
        lines.append(f"| RSS growth during {key} (worst rep) | " + " | ".join(mib(g) for g in growth) + " |")
    lines.append("| process peak (VmHWM summed at exit) | "
                 + " | ".join(mib(t.state["process_hwm"]) for t in managed) + " |")
    return "\n".join(lines)


def describe_servers(targets: list[Target], args) -> list[str]:
    out = []
    for t in targets:
        s = t.server
        if not s.managed:
            out.append(f"- {s.name}: {s.base} (external: server CPU shows as '?', its CPU counts in 'rest')")
        elif s.name == "berth":
            out.append(f"- berth: {s.version()}, `--workers {args.workers}`, "
                       + ("auth on (admin, tenant `bench`, own realm)" if s.auth else "`--no-auth`")
                       + ", rate limits off, access log off")
        else:
            out.append(f"- distribution: {s.version()}, "
                       + (f"auth: token with bench/tokenserver.py ({args.dist_token_header} tokens; separate "
                          "process, counted as server CPU)"
                          if s.auth else "no auth") + ", access log off")
    return out


async def main_async(args) -> int:
    t_start = time.monotonic()
    kinds = [c for c in (Berth, Distribution) if args.only in (None, c.name)] if not args.targets_only else []
    missing = missing_tools(Distribution in kinds)
    if missing:
        log(f"missing: {', '.join(missing)} (`make clients` installs docker-registry and skopeo; "
            "apt-get install wrk apache2-utils curl)")
        return 2
    tmp_root = Path(args.tmpdir or tempfile.gettempdir())
    if shutil.disk_usage(tmp_root).free < 4 * args.size * max(1, len(kinds)):
        log(f"not enough free space in {tmp_root} for --size {mib(args.size)}")
        return 2
    if os.getloadavg()[0] > 0.5:
        log(f"warning: load average {os.getloadavg()[0]:.2f} before start; see 'rest' CPU in the table")
    if args.warm and kinds:
        log(f"warming the page cache: {mib(3 * args.size)} written and deleted in "
            f"{warm_page_cache(tmp_root, 3 * args.size):.1f} s")

    Server.auth = not args.no_auth
    Berth.workers = args.workers
    Distribution.token_header = args.dist_token_header
    Berth.bench_env = {"BERTH_ACCESS_LOG": "false", "BERTH_LIMITS_RATE_PER_PRINCIPAL": "0",
                       "BERTH_LIMITS_RATE_PER_TENANT": "0"}
    if args.berth_src is not None:
        Berth.src = args.berth_src.resolve()
    s3 = None
    if args.storage == "s3":  # one SeaweedFS for both registries, a prefix each
        s3 = S3Target(Path(tempfile.mkdtemp(prefix="bench-seaweedfs-", dir=tmp_root)))
        await asyncio.to_thread(s3.start)
        Berth.s3 = Distribution.s3 = s3

    cfg = Settings(size=args.size, chunk=args.chunk, small_size=args.small_size, pull_clients=args.pull_clients,
                   fleet_clients=args.fleet_clients, fleet_layers=args.fleet_layers,
                   fleet_layer_size=args.fleet_layer_size, skopeo_layers=args.skopeo_layers,
                   skopeo_layer_size=args.skopeo_layer_size,
                   load=WrkOptions(args.wrk_threads, args.connections, args.duration), tmp=tmp_root)
    cfg.fleet_image = make_image(cfg.fleet_layers, cfg.fleet_layer_size)
    rows = [r for r in all_rows(cfg) if not args.rows or r.key in args.rows]
    servers: list[Server] = [c(Path(tempfile.mkdtemp(prefix=f"bench-{c.name}-", dir=tmp_root))) for c in kinds]
    servers += [External.parse(spec) for spec in args.target]
    targets: list[Target] = []
    try:
        for server in servers:
            targets.append(await start_target(server))
        for t in targets:
            await set_up(t, cfg)
        samples = await run_rows(rows, targets, cfg, args.repeat, args.wait_idle)
    finally:
        for t in targets:
            await stop_target(t)
        for server in servers:
            if server.managed and not args.keep:
                shutil.rmtree(server.workdir, ignore_errors=True)
        Skopeo.remove_layouts()
        if s3 is not None:
            s3.stop()

    names = [t.name for t in targets]
    entries = report.analyse(rows, samples, names)
    minutes = (time.monotonic() - t_start) / 60
    command = " ".join(["bench/run.py"] + sys.argv[1:])
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    header = [f"## Berth vs Distribution — {date}", "",
              f"`{command}` · {os.cpu_count()} CPUs · Python {platform.python_version()} · aiohttp "
              f"{aiohttp.__version__} · {args.repeat} repetitions, interleaved · load: {args.wrk_threads} threads, "
              f"{args.connections} connections, {args.duration:g} s · took {minutes:.1f} min", ""]
    header += describe_servers(targets, args) + [""]
    text = "\n".join(header) + "\n" + report.table(entries, names, {t.name: t.server.managed for t in targets})
    mem = memory_table(targets, samples)
    notes = report.errors_note(entries, names)
    text += ("\n\n" + mem if mem else "") + ("\n\n" + notes if notes else "")
    print(text)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"bench-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({
        "date": date, "command": command, "minutes": round(minutes, 1), "args": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "servers": {t.name: {"base": t.server.base, "baseline_rss": t.state.get("baseline_rss"),
                             "process_hwm": t.state.get("process_hwm")} for t in targets},
        "rows": entries, "samples": samples, "markdown": text}, indent=1) + "\n")
    log(f"JSON: {out}")
    if args.chart:
        png = report.chart(entries, Path(args.chart), f"Berth / Distribution 2.8.2, {date[:10]}, "
                                                       f"{args.repeat} interleaved repetitions")
        log(f"chart: {png}" if png else "chart skipped (no ratios, or matplotlib missing: pip install -e '.[bench]')")
    return 0


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, help="repetitions of every row (interleaved)")
    p.add_argument("--rows", type=lambda s: s.split(","), help="only these rows (comma-separated keys, "
                   "e.g. manifest-get-tag,blob-push; see docs/performance.md)")
    p.add_argument("--only", choices=["berth", "distribution"], help="start only this registry")
    p.add_argument("--target", action="append", default=[], metavar="NAME=URL[,user=U,password=P]",
                   help="also benchmark a registry already running (repeatable)")
    p.add_argument("--targets-only", action="store_true", help="start neither Berth nor Distribution")
    p.add_argument("--no-auth", action="store_true", help="both registries without auth (the old mode)")
    p.add_argument("--dist-token-header", choices=["x5c", "kid"], default="x5c",
                   help="Distribution's tokens: x5c chain to the CA of rootcertbundle, or kid of a key in it")
    p.add_argument("--workers", type=int, default=2, help="berth serve --workers N (2 = production on 2 cores)")
    p.add_argument("--size", type=parse_size, default=parse_size("1G"), help="large blob size")
    p.add_argument("--chunk", type=parse_size, default=parse_size("16M"), help="PATCH size of the chunked push")
    p.add_argument("--pull-clients", type=int, default=8, help="concurrent pulls of the large blob")
    p.add_argument("--small-size", type=parse_size, default=parse_size("4K"), help="size of the small blobs")
    p.add_argument("--fleet-clients", type=int, default=16, help="clients of the fleet pull")
    p.add_argument("--fleet-layers", type=int, default=5, help="layers of the fleet image")
    p.add_argument("--fleet-layer-size", type=parse_size, default=parse_size("64K"), help="bytes of each")
    p.add_argument("--skopeo-layers", type=int, default=3, help="layers of the skopeo image")
    p.add_argument("--skopeo-layer-size", type=parse_size, default=parse_size("32M"), help="bytes of each")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of each wrk/ab/fleet sample")
    p.add_argument("--connections", type=int, default=16, help="wrk/ab connections")
    p.add_argument("--wrk-threads", type=int, default=2, help="wrk threads")
    p.add_argument("--wait-idle", type=float, default=10.0,
                   help="before each sample wait up to N s for the machine to go quiet (<0.3 CPU busy)")
    p.add_argument("--no-warm", dest="warm", action="store_false",
                   help="skip writing+deleting 3 x size first (VM first-touch page cost skews the first server)")
    p.add_argument("--storage", choices=["filesystem", "s3"], default="filesystem",
                   help="s3: both registries on one SeaweedFS the bench starts")
    p.add_argument("--berth-src", type=Path, help="run Berth from this source tree instead (PYTHONPATH, same venv)")
    p.add_argument("--chart", default=str(DEFAULT_CHART), help="PNG chart of the ratios ('' for none)")
    p.add_argument("--tmpdir", help="where the temporary data directories go (default: $TMPDIR or /tmp)")
    p.add_argument("--out", default=str(HERE / "results"), help="directory for the JSON results")
    p.add_argument("--keep", action="store_true", help="keep the temporary data directories")
    args = p.parse_args(argv)
    if args.small_size < 64:
        p.error("--small-size must be at least 64 bytes")
    if args.targets_only and not args.target:
        p.error("--targets-only needs --target")
    known = {r.key for r in all_rows(Settings(1, 1, 64, 1, 1, 1, 1, 1, 1, WrkOptions(), Path("/tmp")))}
    for key in args.rows or []:
        if key not in known:
            p.error(f"unknown row {key!r}; rows: {', '.join(sorted(known))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
