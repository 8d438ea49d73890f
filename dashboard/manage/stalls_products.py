"""Stalls (zone, floor-plan place) and products (names, category, sale unit) as
:class:`~dashboard.manage.records.RecordKind` forms."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import dcc

from dashboard.i18n import Lang, category_name, t
from dashboard.manage.records import Listed, RecordKind
from marketdb.management import Management
from schemas.registry import Category, Product, SaleUnit, Stall


def _stall_controls(lang: Lang) -> dict[str, Any]:
    return {
        "id": dbc.Input(type="text"),
        "zone": dbc.Input(type="text"),
        "row": dbc.Input(type="number", min=1, max=999, step=1),
        "col": dbc.Input(type="number", min=1, max=999, step=1),
    }


def _stalls(management: Management, market: str) -> list[Listed[Stall]]:
    return [
        (
            s.stall.id,
            f"{s.stall.id} {s.stall.zone or ''} {s.vendor or ''}".strip(),
            s.stall,
            s.version,
        )
        for s in management.stalls(market)
    ]


STALLS: RecordKind[Stall] = RecordKind(
    name="stall",
    key="id",
    model=Stall,
    controls=_stall_controls,
    records=_stalls,
    create=lambda m, market, stall, actor: m.create_stall(market, stall, actor=actor),
    update=lambda m, market, stall, version, actor: m.update_stall(
        market, stall, if_version=version, actor=actor
    ),
    remove=lambda m, market, key, version, actor: m.remove_stall(
        market, key, if_version=version, actor=actor
    ),
)


def _product_controls(lang: Lang) -> dict[str, Any]:
    categories = [{"label": category_name(c.value, lang), "value": c.value} for c in Category]
    units = [{"label": t(f"unit.{u.value}", lang), "value": u.value} for u in SaleUnit]
    return {
        "plu": dbc.Input(type="text"),
        "name_zh": dbc.Input(type="text"),
        "name_en": dbc.Input(type="text"),
        "category": dcc.Dropdown(options=categories, clearable=False),
        "unit": dcc.Dropdown(options=units, value=SaleUnit.JIN.value, clearable=False),
    }


def _products(management: Management, market: str) -> list[Listed[Product]]:
    return [
        (p.product.plu, f"{p.product.plu} {p.product.name_zh}", p.product, p.version)
        for p in management.products(market)
    ]


PRODUCTS: RecordKind[Product] = RecordKind(
    name="product",
    key="plu",
    model=Product,
    controls=_product_controls,
    records=_products,
    create=lambda m, market, product, actor: m.create_product(market, product, actor=actor),
    update=lambda m, market, product, version, actor: m.update_product(
        market, product, if_version=version, actor=actor
    ),
    remove=lambda m, market, key, version, actor: m.remove_product(
        market, key, if_version=version, actor=actor
    ),
)
