"""Prices in force over time: a product's regular price per vendor and the market median.

The one place that reads "which price was in force at a moment" from the store:
the prices set before the first bucket (the baseline) and those within the range,
carried forward to the close of each bucket (:func:`marketview.analytics.prices_in_force`).
The price-history endpoint and the dashboard's history chart both render this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from marketview import analytics
from marketview.analytics import Bucket, MedianPoint, PricePoint
from schemas.registry import Market
from storage.interfaces.prices import PriceStore


@dataclass(frozen=True, slots=True)
class PriceHistory:
    """Regular prices in force per bucket: per vendor (by vendor id) and across vendors."""

    vendors: dict[str, list[PricePoint]] = field(default_factory=dict)
    median: list[MedianPoint] = field(default_factory=list)


def price_history(
    store: PriceStore,
    market: Market,
    plu: str,
    days: tuple[date, date],
    bucket: Bucket,
    now: datetime,
) -> PriceHistory:
    """Prices of ``plu`` in force in each local hour or day of ``days`` (first, last; both
    included; empty when last is before first), up to ``now``: buckets not begun are left out.
    """
    first, last = days
    if last < first:
        return PriceHistory()
    starts = analytics.bucket_starts(first, last, bucket, market.tz)
    until = min(analytics.local_day_range(first, last, market.tz)[1], now)
    if until <= starts[0]:
        return PriceHistory()
    baseline = store.prices_before(market.id, starts[0], plu=plu)
    changes = store.price_history(market.id, starts[0], until, plu=plu)
    in_force = analytics.prices_in_force([*baseline, *changes], starts, until)
    return PriceHistory(in_force, analytics.market_median(in_force))
