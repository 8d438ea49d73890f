"""Sales of a market day: turnover, transactions, average ticket, per vendor and category,
and the top products. Managers only.

A transaction is one sale message: one weighing at a scale, the unit a receipt is
printed for. Money is integer fen with a yuan string for display; the average
ticket is rounded half up to the whole fen. The store sums per vendor and
product (:meth:`~storage.base.Store.sales_summary`); the rest is
:mod:`marketview.analytics`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import pandas as pd
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from api._exceptions import AUTH_ERRORS
from api.deps import DayParam, MarketDep, StoreDep, utc_now
from api.security import Viewer
from marketview import analytics
from marketview.analytics import UNKNOWN_CATEGORY, SalesFigures
from schemas.registry import Category, Market
from storage.base import Store

router = APIRouter(tags=["sales"])

_YUAN = r"^-?[0-9]+\.[0-9]{2}$"


# -- response models -------------------------------------------------------------------


class Figures(BaseModel):
    transactions: int = Field(ge=0, description="Sales (weighings) counted.")
    turnover_fen: int = Field(description="Money taken, integer fen.")
    turnover_yuan: str = Field(pattern=_YUAN, description="Money taken, yuan, for display.")
    weight_g: int = Field(ge=0, description="Weight sold, grams.")
    average_ticket_fen: int | None = Field(
        description="Turnover per transaction, rounded half up to the fen; null without sales."
    )
    average_ticket_yuan: str | None = Field(pattern=_YUAN)
    vendors: int = Field(ge=0, description="Vendors with these sales.")


class VendorSales(Figures):
    vendor: str
    name: str | None = Field(description="Null if the market file no longer lists the vendor.")
    stall: str | None


class CategorySales(Figures):
    category: Category | Literal["unknown"] = Field(
        description="Product category from the market file; 'unknown' for unlisted PLUs."
    )


class ProductSales(Figures):
    plu: str
    name_zh: str | None = Field(description="Null if the market file no longer lists the PLU.")
    name_en: str | None
    category: Category | Literal["unknown"]


_EXAMPLE_FIGURES: dict[str, int | str] = {
    "transactions": 1840,
    "turnover_fen": 2398765,
    "turnover_yuan": "23987.65",
    "weight_g": 1523400,
    "average_ticket_fen": 1304,
    "average_ticket_yuan": "13.04",
    "vendors": 40,
}


class DailySales(Figures):
    """A market day's sales, with the same figures per vendor and per category."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "market": "nanmen",
                    "date": "2026-11-21",
                    "timezone": "Asia/Shanghai",
                    **_EXAMPLE_FIGURES,
                    "per_vendor": [
                        {
                            **_EXAMPLE_FIGURES,
                            "vendors": 1,
                            "vendor": "V01",
                            "name": "王记蔬菜",
                            "stall": "A01",
                        }
                    ],
                    "per_category": [{**_EXAMPLE_FIGURES, "category": "vegetables"}],
                }
            ]
        }
    )

    market: str
    date: date
    timezone: str
    per_vendor: list[VendorSales] = Field(description="Highest turnover first.")
    per_category: list[CategorySales] = Field(description="Highest turnover first.")


class TopProducts(BaseModel):
    market: str
    date: date
    timezone: str
    products: list[ProductSales] = Field(description="Highest turnover first, ties by PLU.")


# -- endpoints ------------------------------------------------------------------------------


@router.get(
    "/markets/{market}/sales",
    response_model=DailySales,
    responses=AUTH_ERRORS,
    summary="Sales of a market day: totals, per vendor and per category",
    operation_id="daily_sales",
)
def daily_sales(
    market: MarketDep,
    store: StoreDep,
    _viewer: Viewer,
    now: Annotated[datetime, Depends(utc_now)],
    day: DayParam = None,
) -> DailySales:
    day = day or now.astimezone(market.tz).date()
    frame = _summary(store, market, day)
    categories = {plu: product.category.value for plu, product in market.products.items()}
    return DailySales(
        market=market.id,
        date=day,
        timezone=market.spec.market.timezone,
        **_figures(analytics.sales_totals(frame)),
        per_vendor=[_vendor_sales(market, f) for f in analytics.sales_per_vendor(frame)],
        per_category=[
            CategorySales(category=_category(f.key), **_figures(f))
            for f in analytics.sales_per_category(frame, categories)
        ],
    )


@router.get(
    "/markets/{market}/sales/top-products",
    response_model=TopProducts,
    responses=AUTH_ERRORS,
    summary="The best-selling products of a market day, by turnover",
    operation_id="top_products",
)
def top_products(
    market: MarketDep,
    store: StoreDep,
    _viewer: Viewer,
    now: Annotated[datetime, Depends(utc_now)],
    day: DayParam = None,
    limit: Annotated[int, Query(ge=1, le=100, description="How many products.")] = 10,
) -> TopProducts:
    day = day or now.astimezone(market.tz).date()
    frame = _summary(store, market, day)
    return TopProducts(
        market=market.id,
        date=day,
        timezone=market.spec.market.timezone,
        products=[_product_sales(market, f) for f in analytics.top_products(frame, limit)],
    )


# -- shaping -------------------------------------------------------------------------------


def _summary(store: Store, market: Market, day: date) -> pd.DataFrame:
    start, end = analytics.local_day_range(day, day, market.tz)
    return analytics.sales_frame(store.sales_summary(market.id, start, end))


def _figures(figures: SalesFigures) -> dict[str, int | str | None]:
    ticket = figures.average_ticket_fen
    return {
        "transactions": figures.transactions,
        "turnover_fen": figures.turnover_fen,
        "turnover_yuan": analytics.yuan(figures.turnover_fen),
        "weight_g": figures.weight_g,
        "average_ticket_fen": ticket,
        "average_ticket_yuan": None if ticket is None else analytics.yuan(ticket),
        "vendors": figures.vendors,
    }


def _vendor_sales(market: Market, figures: SalesFigures) -> VendorSales:
    vendor = market.vendors.get(figures.key)
    return VendorSales(
        vendor=figures.key,
        name=None if vendor is None else vendor.name,
        stall=None if vendor is None else vendor.stall,
        **_figures(figures),
    )


def _product_sales(market: Market, figures: SalesFigures) -> ProductSales:
    product = market.products.get(figures.key)
    return ProductSales(
        plu=figures.key,
        name_zh=None if product is None else product.name_zh,
        name_en=None if product is None else product.name_en,
        category=UNKNOWN_CATEGORY if product is None else product.category,
        **_figures(figures),
    )


def _category(key: str) -> Category | Literal["unknown"]:
    return "unknown" if key == UNKNOWN_CATEGORY else Category(key)
