"""Garbage collection while serving (issue 7 part 3): the server collects in a tight loop
(``gc.interval`` 0.01 s, ``gc.grace`` 0) and ``berth gc --grace 0`` runs over and over from
another process, while concurrent pushes (monolithic, chunked, POST+PUT, mounts), manifest and
index PUTs, tag moves and manifest deletes go on. The load runs until the server has collected
``CHAOS_GC_CYCLES`` times (default 50; on PostgreSQL and on the S3 driver ``CHAOS_GC_CYCLES_OTHER``,
default a fifth of it, at least 10) and the other process ``CHAOS_GC_RUNS`` times (default 3; there
``CHAOS_GC_RUNS_OTHER``, default a third of it, at least 1);
``make chaos`` runs it as long as you like (``CHAOS_GC_CYCLES=1000 make chaos``).

Then: every acknowledged manifest (not deleted since) is served whole, byte for byte — the pin
protocol protected every push in flight, grace 0 or not. A manifest PUT may find a blob link
the collector dropped meanwhile (MANIFEST_BLOB_UNKNOWN: links no manifest references are
garbage at grace 0); that push counts as retried and the pusher goes on, as a client would. Finally two more
collections, and nothing unreferenced may survive: no link no manifest of its repository
references, no blob row no repository links, no stored content without a row.
"""
from __future__ import annotations

import asyncio
import json
import threading

import pytest
from sqlalchemy import exists, func, select

from storage import db
from storage.models import Blob, Manifest, ManifestReference, RepositoryBlob
from storage.paths import Layout

from .conftest import knob
from .harness import LEFTOVERS, Load, verify

pytestmark = [pytest.mark.process, pytest.mark.chaos]


def gc_cycles(log: str) -> int:
    return log.count("gc: removed")


async def unreferenced(server) -> dict[str, int]:
    url = server.env.get("BERTH_DATABASE_URL") or db.default_url(Layout(server.data))
    database = db.Database(url)
    referenced = (
        select(ManifestReference.digest)
        .join(Manifest, Manifest.id == ManifestReference.manifest_id)
        .where(Manifest.repository_id == RepositoryBlob.repository_id, ManifestReference.digest == RepositoryBlob.digest,
               ManifestReference.kind == "blob")
    )
    links = select(func.count()).select_from(RepositoryBlob).where(~exists(referenced))
    rows = select(func.count()).select_from(Blob).where(~exists().where(RepositoryBlob.digest == Blob.digest))
    try:
        return await database.read(lambda c: {"links": c.execute(links).scalar(), "blob rows": c.execute(rows).scalar()})
    finally:
        await database.dispose()


async def test_gc_in_a_tight_loop_under_concurrent_pushes(registry, seed, database_url):
    cycles, runs = knob("CHAOS_GC_CYCLES", 50), knob("CHAOS_GC_RUNS", 3)
    if database_url or registry.env.get("BERTH_STORAGE_DRIVER") == "s3":
        # the other database's and the other store's runs (as test_crash): a fifth of the
        # collections, at least 10, and a third of the `berth gc` runs, at least 1 (the runs are
        # what these take long for: a process start and a whole collection each)
        cycles = knob("CHAOS_GC_CYCLES_OTHER", max(10, cycles // 5))
        runs = knob("CHAOS_GC_RUNS_OTHER", max(1, runs // 3))
    registry.env.update({"BERTH_GC_INTERVAL": "0.01", "BERTH_GC_GRACE": "0"})
    await asyncio.to_thread(registry.start)
    load = Load(registry.url, knob("CHAOS_WORKERS", 4), seed)
    stop_outside = threading.Event()
    outside: list[int] = []  # return codes of `berth gc --grace 0` from another process

    def collect_outside() -> None:
        # 0: it collected; 3: the gc lease was held (by the server's own collector: one collector
        # at a time across processes, storage.leases) and it did nothing — both are correct
        while not stop_outside.is_set():
            res = registry.run("gc", "--grace", "0")
            outside.append(res.returncode)
            assert res.returncode in (0, 3), res.stderr
            if res.returncode == 3:
                assert "garbage collection is already running" in res.stderr, res.stderr

    other = asyncio.ensure_future(asyncio.to_thread(collect_outside))
    workers = await load.run_workers()
    try:
        while gc_cycles(registry.log()) < cycles or len(outside) < runs:
            for t in (*workers, other):
                if t.done():
                    t.result()  # an assertion in a pusher or a failed `berth gc`
            await asyncio.sleep(0.2)
    finally:
        load.stop.set()
        stop_outside.set()
        done = await asyncio.gather(*workers, other, return_exceptions=True)
    errors = [e for e in done if isinstance(e, BaseException)]
    assert not errors, errors[0]
    assert "Traceback" not in registry.log(), registry.log()[-4000:]

    counts = await verify(registry.url, load.expected, blobs=False)  # nothing acknowledged lost
    in_server = gc_cycles(registry.log())
    registry.stop()
    for _ in range(2):  # two cycles past the grace period (0); the stopped server released its lease
        res = registry.run("gc", "--grace", "0")
        assert res.returncode == 0, res.stderr
    left = await unreferenced(registry)
    report = json.loads(registry.run("fsck", "--json").stdout)
    print(f"gc under load: {in_server} collections in the server, {len(outside)} `berth gc` runs beside it "
          f"({outside.count(0)} collected, {outside.count(3)} found the lease held); "
          f"verified {counts}; activity {load.expected.counts}; manifest PUTs retried after a link was collected: "
          f"{load.retries}; unreferenced after two more cycles: {left}")
    assert left == {"links": 0, "blob rows": 0}
    assert report["damaged"] == []
    assert [f for f in report["orphaned"] if f["kind"] in LEFTOVERS] == []
    await asyncio.to_thread(registry.start)
    await verify(registry.url, load.expected, blobs=False)  # and still every image whole
