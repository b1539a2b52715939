"""security: video shares, id lookups, revoked tokens, moderator keys, event hash chain

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from alive_service.store.chain import GENESIS, LEGACY_KEY, event_hash

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "video_shares",
        sa.Column("video_id", sa.String(length=16), sa.ForeignKey("videos.id"), nullable=False),
        sa.Column("user", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("video_id", "user"),
    )
    op.create_table(
        "id_lookups",
        sa.Column("id", _id(), nullable=False),
        sa.Column("user", sa.String(length=128), nullable=False),
        sa.Column("missed", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_id_lookups_user_time", "id_lookups", ["user", "created_at"])
    op.create_index("ix_id_lookups_created_at", "id_lookups", ["created_at"])
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("user", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("jti"),
    )
    op.create_table(
        "moderator_keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("enrolment_sig", sa.String(length=128), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_index("ix_moderator_keys_name", "moderator_keys", ["name"])
    # Plain ADD COLUMNs (no table rebuild on SQLite), so 0002's triggers stay in place.
    for name, length in (("prev_hash", 64), ("hash", 64), ("key_id", 32), ("signature", 128)):
        op.add_column("moderation_events", sa.Column(name, sa.String(length=length),
                                                     nullable=True))
    _chain_existing_events()


def _chain_existing_events() -> None:
    """Events from before this revision join the chain, marked as never signed. The
    append-only trigger is lifted for this one backfill, inside the migration's transaction."""
    bind = op.get_bind()
    events = sa.table(
        "moderation_events", sa.column("id"), sa.column("video_id"), sa.column("report_id"),
        sa.column("actor"), sa.column("action"), sa.column("note"), sa.column("data", sa.JSON),
        sa.column("created_at", sa.DateTime(timezone=True)), sa.column("prev_hash"),
        sa.column("hash"), sa.column("key_id"),
    )
    rows = bind.execute(sa.select(events).order_by(events.c.id)).all()
    if not rows:
        return
    postgres = bind.dialect.name == "postgresql"
    if postgres:
        op.execute("ALTER TABLE moderation_events DISABLE TRIGGER moderation_events_append_only")
    else:
        op.execute("DROP TRIGGER moderation_events_no_update")
    prev = GENESIS
    for row in rows:
        digest = event_hash(
            id=row.id, prev_hash=prev, video_id=row.video_id, report_id=row.report_id,
            actor=row.actor, action=row.action, note=row.note, data=row.data,
            created_at=row.created_at, key_id=LEGACY_KEY,
        )
        bind.execute(sa.update(events).where(events.c.id == row.id).values(
            prev_hash=prev, hash=digest, key_id=LEGACY_KEY))
        prev = digest
    if postgres:
        op.execute("ALTER TABLE moderation_events ENABLE TRIGGER moderation_events_append_only")
    else:
        op.execute(
            "CREATE TRIGGER moderation_events_no_update BEFORE UPDATE ON moderation_events "
            "BEGIN SELECT RAISE(ABORT, 'moderation records are append-only: UPDATE refused'); END"
        )


def downgrade() -> None:
    # Plain DROP COLUMNs (SQLite >= 3.35): a batch rebuild would lose 0002's triggers.
    for name in ("signature", "key_id", "hash", "prev_hash"):
        op.drop_column("moderation_events", name)
    op.drop_index("ix_moderator_keys_name", table_name="moderator_keys")
    op.drop_table("moderator_keys")
    op.drop_table("revoked_tokens")
    op.drop_index("ix_id_lookups_created_at", table_name="id_lookups")
    op.drop_index("ix_id_lookups_user_time", table_name="id_lookups")
    op.drop_table("id_lookups")
    op.drop_table("video_shares")
