"""api: owners delete their videos (deleted_at, erased_at) and list them newest first

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        # deleted_at: the owner deleted it (hidden from everyone but moderators).
        # erased_at: its MP4 and photo are gone (at deletion, or when a hold lifts).
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
        # ListVideos: one owner's videos, newest first.
        batch.create_index("ix_videos_owner_created", ["owner", "created_at", "id"])


def downgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.drop_index("ix_videos_owner_created")
        batch.drop_column("erased_at")
        batch.drop_column("deleted_at")
