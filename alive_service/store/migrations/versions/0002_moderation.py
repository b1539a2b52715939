"""moderation: video claims, bank entry provenance, strike withdrawal, append-only triggers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Nothing a moderator did is ever lost: the history cannot change, and reports, bank entries
# and strikes are withdrawn by marking them, never deleted. The database itself refuses.
# (A later batch migration that recreates one of these tables on SQLite must re-create
# its triggers.)
_NO_DELETE = ("reports", "hash_bank_entries", "strikes")


def upgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("resolved_by", sa.String(length=128), nullable=True))
    with op.batch_alter_table("hash_bank_entries") as batch:
        batch.add_column(sa.Column("video_id", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("added_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("removed_by", sa.String(length=128), nullable=True))
        batch.create_index("ix_hash_bank_entries_video_id", ["video_id"], unique=False)
    with op.batch_alter_table("strikes") as batch:
        batch.add_column(sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("moderation_events") as batch:
        batch.create_index("ix_moderation_events_actor", ["actor"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION alive_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'moderation records are append-only: % on % refused',
                    TG_OP, TG_TABLE_NAME;
            END $$
            """
        )
        op.execute(
            "CREATE TRIGGER moderation_events_append_only BEFORE UPDATE OR DELETE "
            "ON moderation_events FOR EACH ROW EXECUTE FUNCTION alive_refuse_change()"
        )
        for table in _NO_DELETE:
            op.execute(
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION alive_refuse_change()"
            )
        for table in ("moderation_events", *_NO_DELETE):
            # TRUNCATE fires no row triggers: refuse it separately.
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION alive_refuse_change()"
            )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER moderation_events_no_{verb.lower()} BEFORE {verb} "
                "ON moderation_events BEGIN "
                f"SELECT RAISE(ABORT, 'moderation records are append-only: {verb} refused'); END"
            )
        for table in _NO_DELETE:
            op.execute(
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} BEGIN "
                f"SELECT RAISE(ABORT, 'moderation records are append-only: DELETE refused'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER moderation_events_append_only ON moderation_events")
        for table in _NO_DELETE:
            op.execute(f"DROP TRIGGER {table}_no_delete ON {table}")
        for table in ("moderation_events", *_NO_DELETE):
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION alive_refuse_change()")
    else:
        op.execute("DROP TRIGGER moderation_events_no_update")
        op.execute("DROP TRIGGER moderation_events_no_delete")
        for table in _NO_DELETE:
            op.execute(f"DROP TRIGGER {table}_no_delete")
    with op.batch_alter_table("moderation_events") as batch:
        batch.drop_index("ix_moderation_events_actor")
    with op.batch_alter_table("strikes") as batch:
        batch.drop_column("withdrawn_at")
    with op.batch_alter_table("hash_bank_entries") as batch:
        batch.drop_index("ix_hash_bank_entries_video_id")
        batch.drop_column("removed_by")
        batch.drop_column("added_by")
        batch.drop_column("video_id")
    with op.batch_alter_table("reports") as batch:
        batch.drop_column("resolved_by")
    with op.batch_alter_table("videos") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("claimed_by")
