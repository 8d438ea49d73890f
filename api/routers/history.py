"""Price history of a product: per vendor and the market median, hourly or daily.

Public, like the price board. Each bucket shows the regular price in force when
the bucket closed (carried forward from earlier settings, including those made
before the range began), so a quiet vendor still has a point in every bucket.
Buckets are local hours or days of the market's time zone; buckets that have not
begun yet are left out.

Every range the document allows is answered: one whose ``end`` is before its
``start`` holds no day and is empty, and one longer than an answer covers
(:data:`MAX_DAYS`) is answered from its start, with ``next_start`` saying where to
ask again. (Rules between two parameters cannot be written in the OpenAPI
document, so they are not made rules.)
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from api._exceptions import NotFound
from api.deps import MarketDay, MarketDep, StoreDep, utc_now
from marketview import analytics, history
from marketview.analytics import Bucket
from marketview.pricing import (
    MedianFigure,
    PriceFigure,
    median_figure,
    price_figure,
    yuan_per_jin,
    yuan_per_kg,
)
from schemas.messages import Plu
from schemas.registry import Category, Market, SaleUnit

router = APIRouter(tags=["prices"])

#: Most days one answer covers, per bucket size: a year and a bit of days, a month of hours.
MAX_DAYS = {Bucket.DAY: 400, Bucket.HOUR: 31}

PluParam = Annotated[Plu, Path(description="Product look-up code.", examples=["1001"])]
FirstDay = Annotated[
    MarketDay, Query(description="First local day of the range (YYYY-MM-DD), included.")
]
LastDay = Annotated[
    MarketDay,
    Query(
        description=(
            "Last local day of the range (YYYY-MM-DD), included. Before `start`: the range "
            "is empty. More than 400 days (31 with hourly buckets) after it: the answer "
            "ends there and `next_start` is set."
        )
    ),
]


# -- response models -------------------------------------------------------------------


def _example_figure(fen_per_kg: int) -> dict[str, int | str]:
    return {
        "fen_per_kg": fen_per_kg,
        "yuan_per_kg": yuan_per_kg(fen_per_kg),
        "yuan_per_jin": yuan_per_jin(fen_per_kg),
    }


class VendorPoint(BaseModel):
    bucket_start: datetime = Field(description="Start of the hour or day, market time zone.")
    price: PriceFigure


class VendorHistory(BaseModel):
    vendor: str
    name: str | None = Field(description="Null if the market file no longer lists the vendor.")
    stall: str | None
    points: list[VendorPoint] = Field(description="One per bucket from its first price on.")


class MedianPoint(BaseModel):
    bucket_start: datetime
    vendors: int = Field(ge=1, description="Vendors with a price in force in this bucket.")
    low: PriceFigure
    median: MedianFigure
    high: PriceFigure


class PriceHistory(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "market": "nanmen",
                    "plu": "1001",
                    "name_zh": "大白菜",
                    "name_en": "Napa cabbage",
                    "category": "vegetables",
                    "unit": "jin",
                    "bucket": "day",
                    "timezone": "Asia/Shanghai",
                    "start": "2026-11-01T00:00:00+08:00",
                    "end": "2026-11-03T00:00:00+08:00",
                    "next_start": None,
                    "vendors": [
                        {
                            "vendor": "V01",
                            "name": "王记蔬菜",
                            "stall": "A01",
                            "points": [
                                {
                                    "bucket_start": "2026-11-01T00:00:00+08:00",
                                    "price": {
                                        "fen_per_kg": 398,
                                        "yuan_per_kg": "3.98",
                                        "yuan_per_jin": "1.99",
                                    },
                                }
                            ],
                        }
                    ],
                    "median": [
                        {
                            "bucket_start": "2026-11-01T00:00:00+08:00",
                            "vendors": 2,
                            "low": {
                                "fen_per_kg": 398,
                                "yuan_per_kg": "3.98",
                                "yuan_per_jin": "1.99",
                            },
                            "median": {
                                "fen_per_kg": "399",
                                "yuan_per_kg": "3.99",
                                "yuan_per_jin": "2.00",
                            },
                            "high": {
                                "fen_per_kg": 400,
                                "yuan_per_kg": "4.00",
                                "yuan_per_jin": "2.00",
                            },
                        }
                    ],
                }
            ]
        }
    )

    market: str
    plu: str
    name_zh: str
    name_en: str
    category: Category
    unit: SaleUnit = Field(description="The unit the market quotes this product in.")
    bucket: Bucket
    timezone: str = Field(description="The market's time zone; buckets are its local hours/days.")
    start: datetime = Field(description="Start of the range (local midnight of `start`).")
    end: datetime = Field(
        description="End of what is answered: the midnight after `end` (or after the last "
        "day one answer covers), or now."
    )
    next_start: date | None = Field(
        description="The first day the range asked for that this answer does not cover: "
        "ask again from there. Null when it covers the whole range."
    )
    vendors: list[VendorHistory] = Field(description="Per vendor, by vendor id.")
    median: list[MedianPoint] = Field(description="Across vendors, per bucket.")


# -- endpoint -------------------------------------------------------------------------------


@router.get(
    "/markets/{market}/products/{plu}/price-history",
    response_model=PriceHistory,
    summary="A product's price over time, per vendor and the market median",
    operation_id="price_history",
)
def price_history(
    market: MarketDep,
    plu: PluParam,
    store: StoreDep,
    now: Annotated[datetime, Depends(utc_now)],
    start: FirstDay,
    end: LastDay,
    bucket: Annotated[Bucket, Query(description="Bucket size.")] = Bucket.DAY,
) -> PriceHistory:
    """Up to 400 days with daily buckets, up to 31 days with hourly buckets per answer."""
    product = market.products.get(plu)
    if product is None:
        raise NotFound(f"market {market.id!r} lists no product {plu!r}", code="unknown_product")
    last, next_start = _answered_days(start, end, bucket)
    tz = market.tz
    range_start, range_end = analytics.local_day_range(start, last, tz)
    until = min(range_end, now)
    prices = history.price_history(store, market, plu, (start, last), bucket, now)
    return PriceHistory(
        market=market.id,
        plu=plu,
        name_zh=product.name_zh,
        name_en=product.name_en,
        category=product.category,
        unit=product.unit,
        bucket=bucket,
        timezone=market.spec.market.timezone,
        start=range_start,
        end=max(range_start, until).astimezone(tz),
        next_start=next_start,
        vendors=_vendor_histories(market, prices.vendors),
        median=_median_points(prices.median),
    )


def _answered_days(start: date, end: date, bucket: Bucket) -> tuple[date, date | None]:
    """The last day this answer covers (before ``start`` if none), and the next to ask for."""
    last = start + timedelta(days=MAX_DAYS[bucket] - 1)
    if end <= last:
        return max(end, start - timedelta(days=1)), None
    return last, last + timedelta(days=1)


def _vendor_histories(
    market: Market, series: dict[str, list[analytics.PricePoint]]
) -> list[VendorHistory]:
    histories = []
    for vendor_id, points in series.items():
        vendor = market.vendors.get(vendor_id)
        histories.append(
            VendorHistory(
                vendor=vendor_id,
                name=None if vendor is None else vendor.name,
                stall=None if vendor is None else vendor.stall,
                points=[
                    VendorPoint(
                        bucket_start=point.bucket_start, price=price_figure(point.price_fen_per_kg)
                    )
                    for point in points
                ],
            )
        )
    return histories


def _median_points(points: list[analytics.MedianPoint]) -> list[MedianPoint]:
    return [
        MedianPoint(
            bucket_start=point.bucket_start,
            vendors=point.vendors,
            low=price_figure(point.low_fen_per_kg),
            median=median_figure(point.median_fen_per_kg),
            high=price_figure(point.high_fen_per_kg),
        )
        for point in points
    ]
