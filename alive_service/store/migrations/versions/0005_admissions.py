"""admissions: per-user rate limits counted atomically in the database

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 16:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admissions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("user", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_admissions_user_kind_time", "admissions",
                    ["user", "kind", "created_at"], unique=False)
    op.create_table(
        "admission_locks",
        sa.Column("user", sa.String(length=128), primary_key=True),
        sa.Column("kind", sa.String(length=16), primary_key=True),
        sa.Column("admitted", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("admission_locks")
    op.drop_index("ix_admissions_user_kind_time", table_name="admissions")
    op.drop_table("admissions")
