"""a market's daily rapid-test quota

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 02:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null keeps a market on the default quota (schemas.foodsafety), as the retention
    # columns do: markets loaded before this revision need no backfill.
    with op.batch_alter_table("market") as batch:
        batch.add_column(sa.Column("daily_test_quota", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("market") as batch:
        batch.drop_column("daily_test_quota")
