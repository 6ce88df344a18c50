"""The metadata database: one object, two ways to run, one programming model.

Every storage operation is a plain *synchronous* function ``fn(conn, *args)`` on a
SQLAlchemy ``Connection`` (Core, or an ORM ``Session(bind=conn)``), run whole by
:class:`Database`:

* SQLite (the embedded default, WAL mode under the data directory): the function
  runs in a small dedicated thread pool on the stdlib ``sqlite3`` driver, one thread
  hop per operation. Measured on a manifest read: 0.17 ms, against 2.1 ms through
  the async ORM on aiosqlite, which hops threads for every DB-API call. SQLite has a
  single writer, so writes are serialised by one asyncio lock for the whole process.
  Each thread keeps its connection between operations (a pool checkout and check-in
  cost more than a push's statements), and the hot paths' prebuilt statements go to
  its DB-API cursor directly (``execute_direct``).
* Any other URL (``postgresql+asyncpg://…``): SQLAlchemy's async engine runs the same
  function with ``AsyncConnection.run_sync``; the driver stays truly asynchronous and
  the database's own locking and constraints do the work.

Callers only ever ``await db.read(fn, …)`` or ``await db.write(fn, …)``; ``write``
runs in one transaction, committed when ``fn`` returns and rolled back if it raises.
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Float, LargeBinary, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from .paths import Layout

T = TypeVar("T")
DB_THREADS = 4
SCHEMA_LOCK = 0x6265727468  # PostgreSQL advisory lock key held while the schema is migrated ("berth")


def default_url(layout: Layout) -> str:
    return f"sqlite:///{layout.database}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def upsert_insert(conn: Connection, model):
    """The dialect's INSERT, which has ``on_conflict_do_nothing/do_update``: SQLite and
    PostgreSQL are the databases Berth runs on."""
    try:
        dialect = {"sqlite": sqlite, "postgresql": postgresql}[conn.dialect.name]
    except KeyError:
        raise RuntimeError(f"unsupported database {conn.dialect.name!r}: use SQLite or PostgreSQL") from None
    return dialect.insert(model)


class DirectResult:
    """What ``execute_direct`` answers on SQLite: the row count and the first row (if any)."""
    __slots__ = ("rowcount", "_row")

    def __init__(self, rowcount: int, row: tuple | None) -> None:
        self.rowcount = rowcount
        self._row = row

    def first(self) -> tuple | None:
        return self._row

    def scalar(self) -> Any:
        return None if self._row is None else self._row[0]


# statement → (the statement, its SQLite SQL or None when it needs SQLAlchemy, bind names in order,
# bind defaults); keyed by id() of module-level statements, which live as long as the process
_DIRECT: dict[int, tuple[Any, str | None, tuple[str, ...], dict]] = {}


def _direct_entry(conn: Connection, stmt) -> tuple[Any, str | None, tuple[str, ...], dict]:
    try:
        return _compile_direct(conn, stmt)
    except (AttributeError, KeyError, TypeError):
        # SQLAlchemy's compiled form is read through attributes it does not promise to keep
        # (``_bind_processors``, ``positiontup``…): should a release change them, the statement
        # simply goes SQLAlchemy's way (slower, same result); tests/unit/test_database.py checks
        # the direct path is taken with the version installed
        return stmt, None, (), {}


def _compile_direct(conn: Connection, stmt) -> tuple[Any, str | None, tuple[str, ...], dict]:
    compiled = stmt.compile(dialect=conn.dialect)
    # a float or bytes value needs no converting for sqlite3 (SQLAlchemy's float() and Binary()
    # change nothing it stores: REAL affinity, a BLOB either way)
    converted = any(
        fn is not None and not isinstance(compiled.binds[key].type, (Float, LargeBinary))
        for key, fn in compiled._bind_processors.items()  # noqa: SLF001
    ) or any(
        column[3]._cached_result_processor(conn.dialect, None) is not None  # noqa: SLF001
        for column in getattr(compiled, "_result_columns", ())
    )
    if converted or compiled.positiontup is None or getattr(compiled, "effective_returning", None):
        return stmt, None, (), {}  # its values need converting: SQLAlchemy's way
    return stmt, str(compiled), tuple(compiled.positiontup), dict(compiled.params)


def execute_direct(conn: Connection, stmt, params: dict):
    """Run one of the hot paths' prebuilt statements (a module-level constant) for its row count
    and first row. On SQLite it goes straight to the DB-API cursor of ``conn``'s connection, in
    ``conn``'s transaction: SQLAlchemy's execution (context, result object, cache lookup) costs
    several times what SQLite takes to run a statement of a push; the SQL is compiled by
    SQLAlchemy once. A statement whose values need converting (a type with a bind or result
    processor), and every other database, go through ``conn.execute``."""
    if conn.dialect.name != "sqlite":
        return conn.execute(stmt, params)
    entry = _DIRECT.get(id(stmt))
    if entry is None or entry[0] is not stmt:
        entry = _DIRECT[id(stmt)] = _direct_entry(conn, stmt)
    _, sql, keys, defaults = entry
    if sql is None:
        return conn.execute(stmt, params)
    values = tuple([params[k] if k in params else defaults[k] for k in keys])
    return _direct(conn, sql, values)


def begin_immediate(conn: Connection) -> None:
    """SQLite's ``BEGIN IMMEDIATE`` on ``conn``'s connection (straight to the cursor, as above)."""
    _direct(conn, "BEGIN IMMEDIATE", ())


def _direct(conn: Connection, sql: str, values: tuple) -> DirectResult:
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(sql, values)
        row = cursor.fetchone() if cursor.description is not None else None
        return DirectResult(cursor.rowcount, row)
    except dbapi_error(conn) as e:
        raise DBAPIError.instance(sql, values, e, dbapi_error(conn)) from e
    finally:
        cursor.close()


def dbapi_error(conn: Connection) -> type[Exception]:
    return conn.dialect.loaded_dbapi.Error


def _schema_lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        # several Berth instances starting at once on one database: one migrates, the others
        # wait for it and find the schema current (SQLite has one writer: the transaction is the lock)
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})


#: the newest migration (storage/migrations/versions); tests/unit/test_migrations.py checks that
#: it is Alembic's head. Known here so that a start on a current schema never imports Alembic
#: (about 7 MiB of every worker's memory, and its start-up time).
SCHEMA_HEAD = "0003"


def _recorded_revision(conn: Connection) -> str | None:
    from sqlalchemy.exc import DBAPIError  # noqa: PLC0415

    try:
        with conn.begin_nested():  # a missing table must not abort PostgreSQL's transaction
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        return None


def _migrate(conn: Connection) -> tuple[str | None, str]:
    _schema_lock(conn)
    if _recorded_revision(conn) == SCHEMA_HEAD:
        return SCHEMA_HEAD, SCHEMA_HEAD
    from . import migrations  # noqa: PLC0415 - alembic is imported only when the schema changes

    before = migrations.current(conn)
    if before is not None and before == migrations.head():
        return before, before
    return migrations.upgrade(conn)


def _require_current(conn: Connection) -> None:
    from . import migrations  # noqa: PLC0415

    state = migrations.state(conn)
    if not state.is_current:
        raise migrations.SchemaError(
            f"the database schema is at {state.current or 'nothing'}, this release needs {state.head} and "
            "database.auto_migrate is false: run `berth db upgrade` first"
            + (f" ({state.note})" if state.note else ""))


def _create_schema(conn: Connection) -> None:
    _migrate(conn)


def _writer_lock_path(database: str | None) -> str | None:
    """``<file>-lock`` beside an SQLite file (None in memory)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database + "-lock"


@contextlib.contextmanager
def _writer_lock(fd: int):
    """Every process writing one SQLite file (``--workers``, replicas on one host, ``berth gc``,
    the CLI) takes turns here, in its DB thread, before its write transaction: ``flock`` hands the
    lock over the moment it is released. Without it a second writer meets SQLite's busy handler,
    which sleeps 1, 2, 5, 10… ms between retries: with ``--workers 2`` that halved small pushes.
    ``fd``: the lock file, opened once per database thread (an ``flock`` belongs to an open file:
    two threads' descriptors exclude each other like two processes')."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


class _Kept(threading.local):
    """What one SQLite database thread keeps between operations: its connection (no pool
    checkout and check-in per operation) and its descriptor of the writer lock file."""
    conn: Connection | None = None
    lock_fd: int | None = None
    generation = -1  # Database._generation when they were opened (dispose() closes them all)


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._write_lock = asyncio.Lock()
        if self.is_sqlite:
            # the stdlib driver, whatever async driver the URL names
            sync_url = "sqlite" + url[url.index(":"):]
            self._engine = create_engine(
                sync_url,
                connect_args={"check_same_thread": False, "timeout": 30},
                pool_size=DB_THREADS + 1,
                max_overflow=DB_THREADS,
            )
            event.listen(self._engine, "connect", _sqlite_pragmas)
            self._pool = ThreadPoolExecutor(DB_THREADS, thread_name_prefix="berth-db")
            self._lock_path = _writer_lock_path(self._engine.url.database)
            self._kept = _Kept()
            self._kept_all: list[tuple[Connection, int | None]] = []  # closed by dispose()
            self._kept_guard = threading.Lock()
            self._generation = 0
            self._async_engine = None
        else:
            self._async_engine = create_async_engine(url, pool_pre_ping=True)
            self._engine = None
            self._pool = None
            self._lock_path = None

    @property
    def dialect(self) -> str:
        engine = self._engine or self._async_engine
        return engine.dialect.name

    # ---- running operations ----------------------------------------------------
    def _connection(self) -> Connection:
        """This database thread's connection, opened at its first operation (again after the
        last one was invalidated, e.g. by a disconnect)."""
        kept = self._kept
        conn = kept.conn
        if conn is None or kept.generation != self._generation or conn.closed or conn.invalidated:
            with self._kept_guard:
                if kept.generation != self._generation:  # never opened, or closed by dispose()
                    kept.conn = kept.lock_fd = None
                    kept.generation = self._generation
                if kept.conn is not None:
                    with contextlib.suppress(Exception):
                        kept.conn.close()
                conn = kept.conn = self._engine.connect()
                if kept.lock_fd is None and self._lock_path is not None:
                    kept.lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
                self._kept_all.append((conn, kept.lock_fd))
        return conn

    def _run(self, write: bool, fn: Callable[..., T], args: tuple) -> T:
        conn = self._connection()
        if write:
            if self._kept.lock_fd is not None:
                with _writer_lock(self._kept.lock_fd), conn.begin():
                    return fn(conn, *args)
            with conn.begin():
                return fn(conn, *args)
        try:
            return fn(conn, *args)
        finally:  # end the read's implicit transaction, as a check-in to the pool did
            if conn.in_transaction():
                conn.rollback()

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` outside any write transaction."""
        if self._pool is not None:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, False, fn, args)
        async with self._async_engine.connect() as conn:
            return await conn.run_sync(fn, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in one transaction (serialised per process on SQLite)."""
        if self._pool is not None:
            async with self._write_lock:
                fut = asyncio.get_running_loop().run_in_executor(self._pool, self._run, True, fn, args)
                try:
                    return await asyncio.shield(fut)
                except asyncio.CancelledError:
                    # a started transaction runs to its end in its thread: hold the lock
                    # until it has, so no second writer ever overlaps it
                    while not fut.done():
                        with contextlib.suppress(asyncio.CancelledError):
                            await asyncio.wait([fut])
                    raise
        async with self._async_engine.begin() as conn:
            return await conn.run_sync(fn, *args)

    # ---- lifecycle -------------------------------------------------------------
    async def create_schema(self, auto_migrate: bool = True) -> None:
        """Bring the schema to this release's (``berth db upgrade``: Alembic, storage.migrations), or
        with ``auto_migrate`` false raise ``storage.migrations.SchemaError`` unless it is current."""
        async with self._reachable():
            if auto_migrate:
                await self.write(_migrate)
            else:
                await self.read(_require_current)

    async def upgrade_schema(self) -> tuple[str | None, str]:
        """Migrate to the head; (revision before, revision after)."""
        async with self._reachable():
            return await self.write(_migrate)

    async def schema_state(self):
        from . import migrations  # noqa: PLC0415

        async with self._reachable():
            return await self.read(migrations.state)

    @contextlib.asynccontextmanager
    async def _reachable(self):
        """A database that cannot be reached or opened (refused, unknown host, wrong password, no
        such database, unwritable SQLite file) is ``storage.migrations.DatabaseUnavailable``: one line
        and exit 2 at start-up, not a traceback."""
        from sqlalchemy.exc import DBAPIError, OperationalError  # noqa: PLC0415

        kinds: tuple = (OSError, OperationalError, DBAPIError)
        if not self.is_sqlite:  # asyncpg is loaded only where it is the driver
            with contextlib.suppress(ImportError):
                import asyncpg  # noqa: PLC0415

                kinds += (asyncpg.PostgresError, asyncpg.InterfaceError)
        try:
            yield
        except kinds as e:
            from sqlalchemy.engine import make_url  # noqa: PLC0415

            from .migrations import DatabaseUnavailable  # noqa: PLC0415 - not on a start that works

            where = make_url(self.url).render_as_string(hide_password=True)
            reason = " ".join(str(getattr(e, "orig", None) or e).split())[:300]
            raise DatabaseUnavailable(f"cannot use the database {where}: {reason}") from e

    async def dispose(self) -> None:
        if self._async_engine is not None:
            await self._async_engine.dispose()
        else:
            with contextlib.suppress(Exception):
                await asyncio.get_running_loop().run_in_executor(self._pool, self._close_kept)
            self._pool.shutdown(wait=False)

    def _close_kept(self) -> None:
        with self._kept_guard:
            kept, self._kept_all = self._kept_all, []
            self._generation += 1
        fds = set()
        for conn, fd in kept:
            with contextlib.suppress(Exception):
                conn.close()
            if fd is not None:
                fds.add(fd)
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._engine.dispose()
