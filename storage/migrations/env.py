"""Alembic's environment for Berth: always run through storage.migrations on a connection that
storage.db.Database opened (the stdlib sqlite3 driver, or asyncpg through ``run_sync``).

Alembic's own log lines (``Context impl …``, ``Running upgrade …``) are DEBUG in Berth's logs
(registry.logs); each migration actually applied is one INFO line of ``berth.migrations``
(``storage.migrations.reporter``)."""
from __future__ import annotations

from alembic import context

from storage.migrations import reporter
from storage.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("run the migrations with `berth db upgrade` (storage.migrations), not the alembic command")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
    on_version_apply=reporter(context.config.attributes.get("steps")),
)
with context.begin_transaction():
    context.run_migrations()
