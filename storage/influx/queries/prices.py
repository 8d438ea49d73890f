"""Prices (``storage.interfaces.prices``)."""

from __future__ import annotations

from datetime import datetime

from storage.influx.influxql import equals, time_before
from storage.influx.reader import Reader, bound_ns, device_range, optional_equals
from storage.influx.rows import NEWEST_WITH_FALLBACK, newest_whole_rows, price_row, whole_rows
from storage.interfaces.prices import PriceRow


def latest_prices(reader: Reader, market: str) -> list[PriceRow]:
    # LAST(*) would pick each field's last value independently; the newest
    # point per series keeps a price and its promotion together.
    series = reader.select(
        "price",
        equals("market", market),
        group_by=("vendor", "plu"),
        newest_first=True,
        limit=NEWEST_WITH_FALLBACK,
    )
    rows = map(price_row, newest_whole_rows("price", series))
    return sorted(rows, key=lambda r: (r.vendor, r.plu))


def price_history(
    reader: Reader,
    market: str,
    start: datetime,
    end: datetime,
    *,
    plu: str | None = None,
    vendor: str | None = None,
) -> list[PriceRow]:
    series = reader.select(
        "price",
        equals("market", market),
        optional_equals("plu", plu),
        optional_equals("vendor", vendor),
        *device_range(start, end),
    )
    rows = map(price_row, whole_rows("price", series))
    return sorted(rows, key=lambda r: (r.ts, r.vendor, r.plu, r.msg_id))


def prices_before(
    reader: Reader, market: str, moment: datetime, *, plu: str | None = None
) -> list[PriceRow]:
    # The newest point per series (as in latest_prices) keeps a price and its promotion.
    series = reader.select(
        "price",
        equals("market", market),
        optional_equals("plu", plu),
        time_before(bound_ns(moment)),
        group_by=("vendor", "plu"),
        newest_first=True,
        limit=NEWEST_WITH_FALLBACK,
    )
    rows = map(price_row, newest_whole_rows("price", series))
    return sorted(rows, key=lambda r: (r.vendor, r.plu))
