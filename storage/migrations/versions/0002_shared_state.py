"""Everything since 0001: upload sessions in the database, blob pins and GC marks, shared login
counters, audit tenant generations, signing keys and leases in the database.

Each step is skipped when its table or column exists already: a database made by ``create_all``
at a commit between 0001 and 0002 is stamped 0001 and completed here (storage.migrations).

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    insp = sa.inspect(op.get_bind())
    tables = set(insp.get_table_names())

    def columns(table: str) -> set[str]:
        return {c["name"] for c in insp.get_columns(table)}

    blobs = columns("blobs")
    if "last_used_at" not in blobs:
        # 0: unused since long ago (garbage collection may take an unlinked one after its grace)
        op.add_column("blobs", sa.Column("last_used_at", sa.Double(), nullable=False, server_default="0"))
    if "deleting_at" not in blobs:
        op.add_column("blobs", sa.Column("deleting_at", sa.Double(), nullable=True))

    uploads = columns("uploads")
    if "offset" not in uploads:
        # sessions in progress cannot continue: their offsets were in a process's memory
        op.execute("DELETE FROM uploads")
        op.add_column("uploads", sa.Column("offset", sa.BigInteger(), nullable=False, server_default="0"))
    for name, type_ in (("hash_state", sa.LargeBinary()), ("driver_state", sa.Text()),
                        ("lease_token", sa.String(length=32)), ("lease_expires_at", sa.Double())):
        if name not in uploads:
            op.add_column("uploads", sa.Column(name, type_, nullable=True))

    if "login_attempts" not in tables:
        op.create_table(
            "login_attempts",
            sa.Column("key", sa.String(length=80), nullable=False),
            sa.Column("window_start", sa.Float(), nullable=False),
            sa.Column("count", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("key"),
        )
        op.create_index(op.f("ix_login_attempts_window_start"), "login_attempts", ["window_start"], unique=False)
    if "audit_event_tenants" not in tables:
        op.create_table(
            "audit_event_tenants",
            sa.Column("event_id", sa.Integer(), nullable=False),
            sa.Column("tenant_generation", sa.String(length=80), nullable=False),
            sa.ForeignKeyConstraint(["event_id"], ["audit_events.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("event_id"),
        )
        op.create_index(op.f("ix_audit_event_tenants_tenant_generation"), "audit_event_tenants",
                        ["tenant_generation"], unique=False)
    if "signing_keys" not in tables:
        op.create_table(
            "signing_keys",
            sa.Column("generation", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("kid", sa.String(length=64), nullable=False),
            sa.Column("algorithm", sa.String(length=16), nullable=False),
            sa.Column("private_pem", sa.Text(), nullable=False),
            sa.Column("created_at", sa.Double(), nullable=False),
            sa.Column("not_after", sa.Double(), nullable=True),
            sa.PrimaryKeyConstraint("generation"),
            sa.UniqueConstraint("kid"),
        )
    if "leases" not in tables:
        op.create_table(
            "leases",
            sa.Column("name", sa.String(length=64), nullable=False),
            sa.Column("holder", sa.String(length=128), nullable=False),
            sa.Column("expires_at", sa.Double(), nullable=False),
            sa.PrimaryKeyConstraint("name"),
        )


def downgrade() -> None:
    for table in ("leases", "signing_keys", "audit_event_tenants", "login_attempts"):
        op.drop_table(table)
    with op.batch_alter_table("uploads") as batch:
        for name in ("lease_expires_at", "lease_token", "driver_state", "hash_state", "offset"):
            batch.drop_column(name)
    with op.batch_alter_table("blobs") as batch:
        batch.drop_column("deleting_at")
        batch.drop_column("last_used_at")
