"""storage.leases: at most one holder across processes on one database; expiry and take-over;
`berth gc` and the upload sweeper share one lease."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from sqlalchemy import update

from storage import leases
from storage.db import Database
from storage.models import Lease
from tests.e2e.conftest import REPO_ROOT


@pytest.fixture
async def dbs(shared_url):
    """Four Database objects (four connection pools, four SQLite write locks) on one database."""
    databases = [Database(shared_url) for _ in range(4)]
    await databases[0].create_schema()
    yield databases
    for db in databases:
        await db.dispose()


async def test_two_concurrent_holders_never_both_hold(dbs):
    inside: list[str] = []
    overlaps = []
    held = {i: 0 for i in range(len(dbs))}

    async def contender(i: int, db: Database) -> None:
        me = f"holder-{i}"
        for _ in range(15):
            if await leases.acquire(db, "test", me, ttl=30):
                inside.append(me)
                if len(inside) > 1:
                    overlaps.append(list(inside))
                held[i] += 1
                await asyncio.sleep(0.005)
                inside.remove(me)
                assert await leases.release(db, "test", me)
            await asyncio.sleep(0)

    await asyncio.gather(*(contender(i, db) for i, db in enumerate(dbs)))
    assert not overlaps
    assert sum(held.values()) > 0


async def test_held_lease_is_refused_and_an_expired_one_is_taken_over(dbs):
    a, b = dbs[0], dbs[1]
    assert await leases.acquire(a, "gc", "A", ttl=60)
    assert await leases.acquire(a, "gc", "A", ttl=60)  # re-entrant for its holder
    assert not await leases.acquire(b, "gc", "B", ttl=60)
    assert (await leases.current_holder(b, "gc"))[0] == "A"
    assert not await leases.renew(b, "gc", "B", ttl=60)
    assert not await leases.release(b, "gc", "B")
    # A stops renewing (dies): a lease that has expired is taken over
    assert await leases.renew(a, "gc", "A", ttl=-1)
    assert await leases.current_holder(b, "gc") is None
    assert await leases.acquire(b, "gc", "B", ttl=60)
    assert not await leases.renew(a, "gc", "A", ttl=60)  # A comes back: it is B's now
    assert not await leases.acquire(a, "gc", "A", ttl=60)


async def test_hold_runs_once_and_cancels_work_when_the_lease_is_lost(dbs):
    a, b = dbs[0], dbs[1]
    started = asyncio.Event()
    release_work = asyncio.Event()

    async def work():
        started.set()
        await release_work.wait()
        return "done"

    first = asyncio.create_task(leases.hold(a, "gc", work, ttl=60, holder="A"))
    await started.wait()
    assert await leases.hold(b, "gc", work, ttl=60, holder="B") == (False, None)
    release_work.set()
    assert await first == (True, "done")
    assert await leases.current_holder(a, "gc") is None  # released at the end

    # the lease is taken from a holder whose work is still running: the work is cancelled
    forever = asyncio.Event()

    async def stuck():
        started.set()
        await forever.wait()

    started.clear()
    task = asyncio.create_task(leases.hold(a, "gc", stuck, ttl=0.3, holder="A"))
    await started.wait()

    def steal(conn):
        conn.execute(update(Lease).where(Lease.name == "gc").values(holder="B", expires_at=1e12))

    await b.write(steal)
    with pytest.raises(leases.LeaseLost):
        await asyncio.wait_for(task, 30)


async def test_hold_cancelled_while_taking_the_lease_gives_it_back(dbs, monkeypatch):
    """A server stopped while its collector's UPDATE ran in a database thread: the statement took
    the lease after the coroutine was cancelled. CI saw `berth gc` refused for 60 s after the
    server's shutdown ("garbage collection is already running ... (for 58 s more)")."""
    a = dbs[0]
    took = asyncio.Event()
    real = leases.acquire

    async def slow_acquire(db, name, holder, ttl):
        got = await real(db, name, holder, ttl)  # the row is written...
        took.set()
        await asyncio.sleep(0.3)  # ...and the answer is still on its way when the cancel comes
        return got

    monkeypatch.setattr(leases, "acquire", slow_acquire)
    ran = []
    task = asyncio.create_task(leases.hold(a, "gc", lambda: asyncio.sleep(0, ran.append(1)), ttl=60, holder="A"))
    await took.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ran == []
    assert await leases.current_holder(a, "gc") is None
    monkeypatch.setattr(leases, "acquire", real)
    assert await leases.hold(dbs[1], "gc", lambda: asyncio.sleep(0, "collected"), holder="B") == (True, "collected")


async def test_berth_gc_refuses_to_run_beside_another_holder(tmp_path, shared_url, dbs):
    assert await leases.acquire(dbs[0], leases.GC_LEASE, "another-replica", ttl=300)
    env = {**os.environ, "BERTH_DATABASE_URL": shared_url}
    cmd = [sys.executable, "-m", "registry.cli", "gc", "--data", str(tmp_path / "data")]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
    assert p.returncode == 3, p.stderr
    assert "already running: another-replica" in p.stderr
    await leases.release(dbs[0], leases.GC_LEASE, "another-replica")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert await leases.current_holder(dbs[0], leases.GC_LEASE) is None
