"""Schema migrations (Alembic), run on a connection of :class:`storage.db.Database`.

``versions/0001_initial.py`` is the schema as released before migrations existed; every later
change is one revision. ``upgrade`` brings a database to the head (an empty one is created from
nothing); a database made by ``create_all`` (no ``alembic_version`` table) is first *stamped*:
revision 0001, whose successors add only what is missing, so it ends at the head whatever
intermediate commit created it (docs/storage.md, "Migrations").

A new column or table in storage/models.py needs a new revision (see docs/storage.md);
tests/unit/test_migrations.py fails until the migrations and the models agree.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

HERE = Path(__file__).resolve().parent
#: tables of revision 0001: finding any of them without an alembic_version table means create_all made it
LEGACY_TABLES = frozenset({"repositories", "blobs", "tenants", "users", "manifests", "tags", "uploads"})


#: one INFO line per migration applied (and per schema created or stamped); Alembic's own lines are DEBUG
log = logging.getLogger("berth.migrations")


class SchemaError(Exception):
    """The database's schema cannot be used by this release (``berth`` exits 2)."""


class DatabaseUnavailable(SchemaError):
    """The database cannot be reached or opened at all (``berth`` exits 2)."""


@dataclasses.dataclass
class SchemaState:
    current: str | None
    head: str
    pending: list[str]
    note: str | None = None  # e.g. "created without migrations (stamped on upgrade)"

    @property
    def is_current(self) -> bool:
        return self.current == self.head


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def script() -> ScriptDirectory:
    """The revisions of this release, read once per process (every start-up asks for the head:
    reading the version files each time cost ~10-25 ms of every app start)."""
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    return script().get_current_head()


def current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _legacy(conn: Connection) -> bool:
    """Tables made by create_all, never stamped."""
    tables = set(inspect(conn).get_table_names())
    return "alembic_version" not in tables and bool(tables & LEGACY_TABLES)


def state(conn: Connection) -> SchemaState:
    cur = current(conn)
    note = None
    if cur is None and _legacy(conn):
        note = "created without migrations: berth db upgrade stamps it 0001 and completes it"
    top = head()
    pending = [s.revision for s in reversed(list(script().iterate_revisions(top, cur)))] if cur != top else []
    return SchemaState(cur, top, pending, note)


def reporter(steps: int | None):
    """Alembic's ``on_version_apply`` (storage/migrations/env.py): one INFO line per migration
    applied, carrying ``step``/``steps`` (its number among the ``steps`` of this upgrade;
    ``berth db upgrade`` draws its progress on a terminal from these records); stamps are DEBUG."""
    done = 0

    def applied(*, ctx, step, heads, run_args) -> None:
        nonlocal done
        down = ",".join(step.down_revision_ids) or "empty"
        up = ",".join(step.up_revision_ids)
        if step.is_stamp:
            log.debug("schema stamped %s -> %s (no change to the tables)", down, up)
            return
        done += 1
        doc = (step.up_revision.doc or "").strip().splitlines() if step.up_revision is not None else []
        log.info("schema migration applied: %s -> %s%s", down, up, f" ({doc[0]})" if doc else "",
                 extra={"step": done, "steps": max(done, steps or 0)})

    return applied


def upgrade(conn: Connection, target: str = "head") -> tuple[str | None, str]:
    """Upgrade the database of ``conn`` (inside the caller's transaction and lock) to ``target``;
    return (revision before, revision after)."""
    cfg = alembic_config(conn)
    before = current(conn)
    if before is None and target == "head" and not inspect(conn).get_table_names():
        # an empty database: the models' tables at once, stamped head (Alembic's recipe for a new
        # database; tests/unit/test_migrations.py proves the revisions build the very same schema)
        from storage.models import Base  # noqa: PLC0415

        Base.metadata.create_all(conn)
        command.stamp(cfg, "head")
        after = current(conn)
        log.info("schema created at revision %s (an empty database)", after, extra={"step": 1, "steps": 1})
        return None, after
    if before is None and _legacy(conn):
        command.stamp(cfg, "0001")
        log.info("schema created without migrations stamped at revision 0001")
    elif before is not None and before not in {s.revision for s in script().walk_revisions()}:
        raise SchemaError(f"the database's schema revision {before!r} is newer than this Berth's "
                          f"({head()}): run a newer release, or restore a back-up")
    start = current(conn)
    cfg.attributes["steps"] = sum(1 for _ in script().iterate_revisions(target, start)) if start != target else 0
    command.upgrade(cfg, target)
    return before, current(conn)
