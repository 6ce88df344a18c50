"""Leases: one holder at a time across every process on one database.

Replicas of Berth share the metadata database and nothing else, so work that must not
run twice at once (garbage collection, the upload sweeper) takes a named lease first.

One row per lease name in ``leases`` (name, holder, expires_at). Taking it is a single
compare-and-set, the same statement on SQLite and PostgreSQL:

    UPDATE leases SET holder = :me, expires_at = now + ttl
     WHERE name = :name AND (holder = :me OR expires_at <= now)

after inserting the row if it does not exist yet (insert-or-ignore). Exactly one of two
concurrent takers sees its UPDATE match: SQLite runs one writer at a time, PostgreSQL
locks the row and re-evaluates the WHERE clause of the second UPDATE against the first
one's committed row (READ COMMITTED). ``renew`` is the same compare-and-set restricted to
the current holder (an expired lease nobody took over may still be renewed: nobody else
ran meanwhile); ``release`` expires the row if we still hold it. PostgreSQL advisory
locks were not used: they live as long as one connection, which a pooled async engine
does not pin to one task, and they do not exist on SQLite.

Time is the database's clock (``clock_timestamp()`` / ``julianday('now')``), not the
replica's, so replicas on machines with skewed clocks still agree on when a lease expired.
A holder that dies simply lets its lease expire (``ttl`` seconds) and another replica takes
it over. :func:`hold` keeps a lease renewed while a coroutine runs and cancels that
coroutine if the lease is ever lost, so a holder that stalled past its ``ttl`` does not
carry on beside the next one.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import Connection, select, text, update

from .db import Database, upsert_insert
from .models import Lease

log = logging.getLogger("berth.leases")
T = TypeVar("T")

#: the lease garbage collection (``berth gc``) and every replica's upload sweeper share
GC_LEASE = "gc"


def holder_id() -> str:
    """A name for this process that no other process has: host, pid and a random part."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _db_now(conn: Connection) -> float:
    if conn.dialect.name == "postgresql":
        return float(conn.execute(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one())
    return float(conn.execute(text("SELECT (julianday('now') - 2440587.5) * 86400.0")).scalar_one())


def _acquire(conn: Connection, name: str, holder: str, ttl: float) -> bool:
    now = _db_now(conn)
    conn.execute(upsert_insert(conn, Lease).values(name=name, holder="", expires_at=0.0).on_conflict_do_nothing())
    res = conn.execute(
        update(Lease)
        .where(Lease.name == name, (Lease.holder == holder) | (Lease.expires_at <= now))
        .values(holder=holder, expires_at=now + ttl)
    )
    return res.rowcount == 1


def _renew(conn: Connection, name: str, holder: str, ttl: float) -> bool:
    now = _db_now(conn)
    res = conn.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder)  # expired but not taken over: still safe
        .values(expires_at=now + ttl)
    )
    return res.rowcount == 1


def _release(conn: Connection, name: str, holder: str) -> bool:
    res = conn.execute(update(Lease).where(Lease.name == name, Lease.holder == holder).values(holder="", expires_at=0.0))
    return res.rowcount == 1


def _holder(conn: Connection, name: str) -> tuple[str, float] | None:
    now = _db_now(conn)
    row = conn.execute(select(Lease.holder, Lease.expires_at).where(Lease.name == name)).first()
    if row is None or not row.holder or row.expires_at <= now:
        return None
    return row.holder, row.expires_at - now


async def acquire(db: Database, name: str, holder: str, ttl: float) -> bool:
    """Take lease ``name`` for ``ttl`` seconds if it is free, expired, or already ours."""
    return await db.write(_acquire, name, holder, float(ttl))


async def renew(db: Database, name: str, holder: str, ttl: float) -> bool:
    """Extend our lease to ``ttl`` seconds from now; False if it expired or someone else holds it."""
    return await db.write(_renew, name, holder, float(ttl))


async def release(db: Database, name: str, holder: str) -> bool:
    """Give the lease up now (if we still hold it)."""
    return await db.write(_release, name, holder)


async def current_holder(db: Database, name: str) -> tuple[str, float] | None:
    """(holder, seconds left) of a live lease, or None when nobody holds it."""
    return await db.read(_holder, name)


class LeaseLost(RuntimeError):
    """The lease expired or was taken over while its work ran; the work was cancelled."""


async def hold(db: Database, name: str, fn: Callable[[], Awaitable[T]], *, ttl: float = 60.0,
               holder: str | None = None) -> tuple[bool, T | None]:
    """Run ``fn()`` while holding lease ``name``: (False, None) at once if another holder has it,
    else (True, result). The lease is renewed every ``ttl/3`` seconds and released at the end;
    if a renewal fails, ``fn`` is cancelled and LeaseLost raised."""
    holder = holder or holder_id()
    taking = asyncio.ensure_future(acquire(db, name, holder, ttl))
    try:
        got = await asyncio.shield(taking)
    except asyncio.CancelledError:
        # cancelled (a shutdown) while the statement ran in a database thread: it may still have
        # taken the lease, and nobody else could then collect for ``ttl`` seconds. Give it back.
        with contextlib.suppress(Exception):
            if await taking:
                await release(db, name, holder)
        raise
    if not got:
        return False, None
    work = asyncio.ensure_future(fn())
    lost = False

    async def keep() -> None:
        nonlocal lost
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                ok = await renew(db, name, holder, ttl)
            except Exception:  # a database hiccup: try again before the lease runs out
                log.exception("renewing lease %r failed", name)
                continue
            if not ok:
                lost = True
                log.error("lease %r was lost while its work ran; cancelling the work", name)
                work.cancel()
                return

    keeper = asyncio.ensure_future(keep())
    try:
        try:
            result = await work
        except asyncio.CancelledError:
            if lost:
                raise LeaseLost(f"lease {name!r} lost") from None
            raise
        return True, result
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        if not work.done():
            work.cancel()
            with contextlib.suppress(BaseException):
                await work
        if not lost:
            with contextlib.suppress(Exception):
                await release(db, name, holder)
