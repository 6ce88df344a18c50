"""A throwaway PostgreSQL cluster for the test session (used by tests/conftest.py).

``initdb`` into a temporary directory, ``pg_ctl start`` on 127.0.0.1 and a free port
(durability off: fsync, synchronous_commit, full_page_writes), one template database
holding Berth's schema, and a fresh database per test (``CREATE DATABASE … TEMPLATE``,
~10 ms), dropped afterwards. ``stop()`` shuts the server down and deletes the directory.

initdb refuses to run as root: as root the cluster runs as the ``postgres`` system user
that Debian's package creates (or ``nobody``), through ``runuser``.
"""
from __future__ import annotations

import asyncio
import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

#: the databases the database-parametrized tests run on
DATABASES = [d.strip() for d in os.environ.get("BERTH_TEST_DATABASES", "sqlite,postgres").split(",") if d.strip()]
TEMPLATE = "berth_template"
SPARE_DATABASES = 4  # created ahead of the tests that will use them


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<ver>/bin holding initdb (Debian), or initdb on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def missing_reason() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None."""
    if find_bindir() is None:
        return "PostgreSQL is not installed (apt-get install postgresql, or .ci/install-clients as root)"
    try:
        import asyncpg  # noqa: F401, PLC0415
    except ImportError:
        return "asyncpg is not installed (pip install -e '.[postgres]')"
    if os.geteuid() == 0 and _run_as() is None:
        return "running as root and neither a 'postgres' nor a 'nobody' user exists to run initdb"
    return None


def _run_as() -> str | None:
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return user
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    def __init__(self) -> None:
        bindir = find_bindir()
        assert bindir is not None
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="berth-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = _free_port()
        self.user = _run_as() if os.geteuid() == 0 else None
        self._names = itertools.count(1)
        # the admin connection lives on its own event loop in its own thread, so it is
        # usable from sync fixtures whatever loop (if any) the tests run
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="berth-pg-admin", daemon=True)
        self._conn = None

    # ---- server ------------------------------------------------------------------
    def _cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, cwd=self.root)

    def start(self) -> None:
        if self.user is not None:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        initdb = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions"]
        # en-US collation (ICU), as a production database typically has, so that code relying
        # on byte order (SQLite's) shows up here; plain C.UTF-8 where ICU is not built in
        r = self._cmd(*initdb, "--locale=C.UTF-8", "--locale-provider=icu", "--icu-locale=en-US", check=False)
        if r.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)
            r = self._cmd(*initdb, "--locale=C.UTF-8", check=False)
            if r.returncode != 0:
                raise RuntimeError(f"initdb failed: {r.stdout}{r.stderr}")
        opts = (
            f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off -c max_connections=200"
        )
        r = self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-o", opts,
                      "start", check=False)
        if r.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {r.stdout}{r.stderr}\n{log}")
        self._thread.start()
        self._conn = self._call(self._connect())
        self._call(self._conn.execute(f"CREATE DATABASE {TEMPLATE}"))
        self._call(self._create_schema(self.url(TEMPLATE)))
        self._call(self._start_background())

    def stop(self) -> None:
        try:
            if self._thread.is_alive():
                with contextlib.suppress(Exception):
                    self._call(self._shutdown())
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(5)
            if self.data.exists():
                self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop",
                          check=False)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # ---- databases -------------------------------------------------------------
    def url(self, dbname: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{dbname}"

    @contextlib.contextmanager
    def database(self):
        """A fresh database with Berth's schema (already created); yields its URL.

        CREATE DATABASE takes ~90 ms and DROP DATABASE waits for the backends of the
        disposed engine to exit (PostgreSQL polls every 100 ms): both happen in the
        background, a few databases ahead, so a test waits for neither.
        """
        name = self._call(self._next_ready())
        try:
            yield self.url(name)
        finally:
            asyncio.run_coroutine_threadsafe(self._drop(name), self._loop)

    @contextlib.contextmanager
    def empty_database(self):
        """A fresh database without any table; yields its URL."""
        name = f"berth_empty_{next(self._names)}"
        self._call(self._admin(f"CREATE DATABASE {name} TEMPLATE template0"))
        try:
            yield self.url(name)
        finally:
            asyncio.run_coroutine_threadsafe(self._drop(name), self._loop)

    # ---- internals ---------------------------------------------------------------
    async def _shutdown(self) -> None:
        for producer in getattr(self, "_producers", ()):
            producer.cancel()
            with contextlib.suppress(BaseException):
                await producer
        for conn in (*getattr(self, "_producer_conns", (self._conn,)), getattr(self, "_drop_conn", None)):
            if conn is not None:
                conn.terminate()

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    async def _start_background(self) -> None:
        self._ready: asyncio.Queue = asyncio.Queue(SPARE_DATABASES)
        self._drop_conn = await self._connect()  # drops and other admin statements
        self._drop_lock = asyncio.Lock()
        # CREATE DATABASE mostly waits (on the checkpointer and other processes): two
        # connections creating side by side make one database per ~16 ms instead of ~80
        self._producer_conns = [self._conn, await self._connect()]
        self._producers = [asyncio.create_task(self._produce(c)) for c in self._producer_conns]

    async def _produce(self, conn) -> None:
        while True:
            name = f"berth_{next(self._names)}"
            try:
                await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
            except Exception as e:  # handed to the test that waits for a database
                await self._ready.put(e)
                return
            await self._ready.put(name)

    async def _next_ready(self) -> str:
        item = await self._ready.get()
        if isinstance(item, Exception):
            raise item
        return item

    async def _admin(self, sql: str) -> None:
        async with self._drop_lock:
            await self._drop_conn.execute(sql)

    async def _drop(self, name: str) -> None:
        with contextlib.suppress(Exception):  # the whole cluster is deleted at the end anyway
            await self._admin(f"DROP DATABASE {name} WITH (FORCE)")

    async def _connect(self):
        import asyncpg  # noqa: PLC0415

        return await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database="postgres")

    @staticmethod
    async def _create_schema(url: str) -> None:
        from storage.db import Database  # noqa: PLC0415

        database = Database(url)
        try:
            await database.create_schema()
        finally:
            await database.dispose()
