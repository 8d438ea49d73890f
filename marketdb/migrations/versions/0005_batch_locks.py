"""batches locked on their vendor's scales and screens

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 02:30:00
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
        "batch_lock",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("market_id", sa.String(length=32), nullable=False),
        sa.Column("trace_code", sa.String(length=64), nullable=False),
        sa.Column("vendor_id", sa.String(length=32), nullable=False),
        sa.Column("plu", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=24), nullable=False),
        sa.Column("cause", sa.String(length=200), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_by", sa.String(length=64), nullable=False),
        sa.Column("unlocked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unlocked_by", sa.String(length=64), nullable=True),
        sa.Column("unlock_reason", sa.String(length=200), nullable=True),
        sa.CheckConstraint(
            "reason IN ('rapid_test_failed', 'manager')", name=op.f("ck_batch_lock_reason")
        ),
        sa.CheckConstraint(
            "(unlocked_at IS NULL) = (unlocked_by IS NULL)"
            " AND (unlocked_at IS NULL) = (unlock_reason IS NULL)",
            name=op.f("ck_batch_lock_unlock_complete"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_lock")),
    )
    op.create_index(op.f("ix_batch_lock_market_id"), "batch_lock", ["market_id"])
    # One open lock per batch and product; closed ones stay as the record.
    op.create_index(
        "uq_batch_lock_open",
        "batch_lock",
        ["market_id", "trace_code", "plu"],
        unique=True,
        sqlite_where=sa.text("unlocked_at IS NULL"),
        postgresql_where=sa.text("unlocked_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("batch_lock")
