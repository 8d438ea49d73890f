"""Prices (``storage.interfaces.prices``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Final

from storage.influx.client import Series
from storage.influx.influxql import Condition, Select, equals
from storage.influx.reader import Reader, bound_ns, device_range, optional_equals
from storage.influx.rows import NEWEST_WITH_FALLBACK, newest_whole_rows, price_row, whole_rows
from storage.interfaces.prices import PriceRow
from storage.records import span_ns

#: How far back from its moment the newest price of each series is looked for first. A
#: read newest-first per series without a lower time bound opens every shard of the
#: history (3 s for the 1,657 series of a 300-vendor market at seven months, against
#: 0.2-0.4 s for the last week); the few series silent longer are read one by one.
RECENT_PRICES: Final = timedelta(days=7)


#: More silent series than this are read together, without a lower time bound.
_ONE_BY_ONE_AT_MOST: Final = 50


def latest_prices(reader: Reader, market: str, now_ns: int) -> list[PriceRow]:
    """The newest price of each (vendor, plu) series of the market (see :func:`_newest`)."""
    return _newest(reader, market, before_ns=None, anchor_ns=now_ns, plu=None)


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
    """The newest price of each series before ``moment`` (see :func:`_newest`)."""
    before = bound_ns(moment)
    return _newest(reader, market, before_ns=before, anchor_ns=before, plu=plu)


def _newest(
    reader: Reader, market: str, *, before_ns: int | None, anchor_ns: int, plu: str | None
) -> list[PriceRow]:
    """Per (vendor, plu) series, its newest price (before ``before_ns``).

    The newest point per series (not ``LAST(*)``, which picks each field's last value
    on its own) keeps a price and its promotion together. First within
    :data:`RECENT_PRICES` before ``anchor_ns``; then, for the series the index lists
    (``SHOW SERIES``) that had no price then, without a lower bound.
    """
    recent = _newest_select(market, plu, vendor=None, before_ns=before_ns, number=0)
    recent = replace(
        recent,
        where=(
            *recent.where,
            Condition("time", ">=", "recent0", anchor_ns - span_ns(RECENT_PRICES)),
        ),
    )
    found = {(row.vendor, row.plu): row for row in _price_rows(reader.select_each([recent]))}
    silent = sorted(_series_of(reader, market, plu) - found.keys())
    if len(silent) > _ONE_BY_ONE_AT_MOST:
        # A market silent for days: one read of every series beats hundreds of them.
        older = [_newest_select(market, plu, vendor=None, before_ns=before_ns, number=1)]
    else:
        older = [
            _newest_select(market, series_plu, vendor=vendor, before_ns=before_ns, number=number)
            for number, (vendor, series_plu) in enumerate(silent, start=1)
        ]
    found.update(
        ((row.vendor, row.plu), row)
        for row in _price_rows(reader.select_each(older))
        if (row.vendor, row.plu) not in found
    )
    return [found[key] for key in sorted(found)]


def _newest_select(
    market: str, plu: str | None, *, vendor: str | None, before_ns: int | None, number: int
) -> Select:
    where = [equals("market", market, param=f"market{number}")]
    if plu is not None:
        where.append(equals("plu", plu, param=f"plu{number}"))
    if vendor is not None:
        where.append(equals("vendor", vendor, param=f"vendor{number}"))
    if before_ns is not None:
        where.append(Condition("time", "<", f"before{number}", before_ns))
    return Select(
        "price",
        where=tuple(where),
        group_by=("vendor", "plu"),
        newest_first=True,
        limit=NEWEST_WITH_FALLBACK,
    )


def _price_rows(series: list[Series]) -> list[PriceRow]:
    return list(map(price_row, newest_whole_rows("price", series)))


def _series_of(reader: Reader, market: str, plu: str | None) -> set[tuple[str, str]]:
    """(vendor, plu) of every price series of the market (of ``plu``) the index holds."""
    where = [equals("market", market)]
    if plu is not None:
        where.append(equals("plu", plu))
    keys = reader.series_keys("price", tuple(where))
    found: set[tuple[str, str]] = set()
    for tags in keys:
        vendor, series_plu = tags.get("vendor"), tags.get("plu")
        if vendor is not None and series_plu is not None:
            found.add((vendor, series_plu))
    return found
