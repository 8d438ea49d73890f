"""registry: markets, products, stalls, vendors, devices

Revision ID: 0001
Revises:
Create Date: 2026-11-26 14:47:30.854373
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "market",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=64), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("opens", sa.Time(), nullable=False),
        sa.Column("closes", sa.Time(), nullable=False),
        sa.Column("retention_trace", sa.Integer(), nullable=True),
        sa.Column("retention_prices", sa.Integer(), nullable=True),
        sa.Column("retention_heartbeats", sa.Integer(), nullable=True),
        sa.Column("retention_gate_counts", sa.Integer(), nullable=True),
        sa.Column("retention_dead_letters", sa.Integer(), nullable=True),
        sa.Column("retention_rollups", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market")),
    )
    op.create_table(
        "product",
        sa.Column("market_id", sa.String(length=32), nullable=False),
        sa.Column("plu", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name_zh", sa.String(length=64), nullable=False),
        sa.Column("name_en", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("unit", sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(
            ["market_id"], ["market.id"], name=op.f("fk_product_market_id_market")
        ),
        sa.PrimaryKeyConstraint("market_id", "plu", name=op.f("pk_product")),
    )
    op.create_table(
        "stall",
        sa.Column("market_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("listed", sa.Boolean(), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=True),
        sa.Column("row", sa.Integer(), nullable=True),
        sa.Column("col", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["market_id"], ["market.id"], name=op.f("fk_stall_market_id_market")
        ),
        sa.PrimaryKeyConstraint("market_id", "id", name=op.f("pk_stall")),
    )
    op.create_table(
        "vendor",
        sa.Column("market_id", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("stall_id", sa.String(length=32), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("contact", sa.String(length=64), nullable=True),
        sa.Column("business_licence_no", sa.String(length=64), nullable=True),
        sa.Column("food_licence_no", sa.String(length=64), nullable=True),
        sa.Column("food_licence_expires", sa.Date(), nullable=True),
        sa.Column("categories_declared", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["market_id", "stall_id"],
            ["stall.market_id", "stall.id"],
            name=op.f("fk_vendor_market_id_stall"),
        ),
        sa.ForeignKeyConstraint(
            ["market_id"], ["market.id"], name=op.f("fk_vendor_market_id_market")
        ),
        sa.PrimaryKeyConstraint("market_id", "id", name=op.f("pk_vendor")),
    )
    op.create_table(
        "device",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("market_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("vendor_id", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=64), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('scales', 'gates', 'screens', 'intake')", name=op.f("ck_device_kind")
        ),
        sa.ForeignKeyConstraint(
            ["market_id", "vendor_id"],
            ["vendor.market_id", "vendor.id"],
            name=op.f("fk_device_market_id_vendor"),
        ),
        sa.ForeignKeyConstraint(
            ["market_id"], ["market.id"], name=op.f("fk_device_market_id_market")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device")),
    )
    op.create_table(
        "health_certificate",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("market_id", sa.String(length=32), nullable=False),
        sa.Column("vendor_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("expires", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["market_id", "vendor_id"],
            ["vendor.market_id", "vendor.id"],
            name=op.f("fk_health_certificate_market_id_vendor"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_certificate")),
        sa.UniqueConstraint(
            "market_id", "vendor_id", "number", name=op.f("uq_health_certificate_market_id")
        ),
    )
    op.create_table(
        "vendor_category",
        sa.Column("market_id", sa.String(length=32), nullable=False),
        sa.Column("vendor_id", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["market_id", "vendor_id"],
            ["vendor.market_id", "vendor.id"],
            name=op.f("fk_vendor_category_market_id_vendor"),
        ),
        sa.PrimaryKeyConstraint(
            "market_id", "vendor_id", "category", name=op.f("pk_vendor_category")
        ),
    )
    op.create_table(
        "vendor_product",
        sa.Column("market_id", sa.String(length=32), nullable=False),
        sa.Column("vendor_id", sa.String(length=32), nullable=False),
        sa.Column("plu", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["market_id", "plu"],
            ["product.market_id", "product.plu"],
            name=op.f("fk_vendor_product_market_id_product"),
        ),
        sa.ForeignKeyConstraint(
            ["market_id", "vendor_id"],
            ["vendor.market_id", "vendor.id"],
            name=op.f("fk_vendor_product_market_id_vendor"),
        ),
        sa.PrimaryKeyConstraint("market_id", "vendor_id", "plu", name=op.f("pk_vendor_product")),
    )


def downgrade() -> None:
    op.drop_table("vendor_product")
    op.drop_table("vendor_category")
    op.drop_table("health_certificate")
    op.drop_table("device")
    op.drop_table("vendor")
    op.drop_table("stall")
    op.drop_table("product")
    op.drop_table("market")
