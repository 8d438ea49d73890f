"""Aggregates behind the history, sales, footfall and trace views: pure data shaping.

Every function here takes rows or DataFrames and returns DataFrames or small
values; none does I/O, reads a clock or knows about HTTP, so each is tested on
hand-made data (``tests/marketview/test_analytics.py``). The API's routers and
the dashboard's queries (or :mod:`marketview.history` and :mod:`marketview.trace`
for them) fetch from the store, call these, and render.

Money stays integer fen (int64 columns, exact up to ±9.2·10¹⁸) and weights
integer grams. What cannot be whole fen is a :class:`~decimal.Decimal`: the
median of an even number of prices (see :func:`marketview.pricing.median`). An
average ticket is rounded half up to the whole fen, as a till would round it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

import pandas as pd

from marketview.pricing import median
from storage.interfaces.footfall import FootfallRow
from storage.interfaces.prices import PriceRow
from storage.interfaces.sales import SaleRow, SalesSummaryRow, ScaleSalesRow
from storage.records import to_ns

#: The category of a PLU the market file no longer lists.
UNKNOWN_CATEGORY = "unknown"
#: The calendar days the aggregates accept: far enough from ``date.min``/``date.max``
#: that "the day after" or "four weeks before" always exists.
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2099, 12, 31)


# -- money -------------------------------------------------------------------------


def yuan(fen: int) -> str:
    """A whole-fen amount in yuan for display, exactly: ``12345`` → ``"123.45"``."""
    return str(Decimal(fen).scaleb(-2))


def average_ticket_fen(turnover_fen: int, transactions: int) -> int | None:
    """Turnover per sale, rounded half up to the whole fen; None without sales."""
    if transactions <= 0:
        return None
    exact = Decimal(turnover_fen) / Decimal(transactions)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


# -- time buckets ------------------------------------------------------------------


class Bucket(StrEnum):
    HOUR = "hour"
    DAY = "day"


def local_day_range(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``[start of first, start of the day after last)`` in the market's time zone."""
    return _midnight(first, tz), _midnight(last + timedelta(days=1), tz)


def bucket_starts(first: date, last: date, bucket: Bucket, tz: ZoneInfo) -> list[datetime]:
    """Start of every local hour or day from ``first`` to ``last`` (both whole days).

    Days are calendar days, so a day with a daylight-saving change is 23 or 25
    hours. Hours step through absolute time from local midnight, so each bucket
    is one real hour and is labelled with its local start.
    """
    if last < first:
        raise ValueError(f"last day {last} is before first day {first}")
    if bucket is Bucket.DAY:
        days = (last - first).days + 1
        return [_midnight(first + timedelta(days=n), tz) for n in range(days)]
    # In UTC: arithmetic on datetimes sharing one tzinfo is wall-clock arithmetic.
    start, end = (moment.astimezone(UTC) for moment in local_day_range(first, last, tz))
    hours = (end - start) // timedelta(hours=1)
    return [(start + timedelta(hours=n)).astimezone(tz) for n in range(hours)]


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


# -- price history -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PricePoint:
    bucket_start: datetime
    price_fen_per_kg: int


@dataclass(frozen=True, slots=True)
class MedianPoint:
    """Prices in force across vendors in one bucket; ``median`` is exact (half a fen at most)."""

    bucket_start: datetime
    vendors: int
    low_fen_per_kg: int
    median_fen_per_kg: Decimal
    high_fen_per_kg: int


def prices_in_force(
    changes: Iterable[PriceRow], starts: Sequence[datetime], until: datetime
) -> dict[str, list[PricePoint]]:
    """The regular price each vendor had in force at the close of each bucket.

    ``changes`` are the prices set before the first bucket (the baseline) and
    within the buckets. A bucket closes at the next bucket's start, the last one
    at ``until`` (the end of the range, or now for a range reaching into the
    future), and buckets starting at or after ``until`` are left out. A vendor's
    price is carried forward through buckets in which it did not change; before
    its first price a vendor has no point. Of two settings at the same moment the
    later message (higher ``msg_id``) wins. Promotions are not part of this series:
    they are short offers, shown on the price board while they run.

    Returns each vendor's points (by vendor id, sorted) in bucket order. Plain
    lists and a binary search: a 30-day chart of 40 vendors is 1,200 look-ups, which
    per-vendor DataFrames made cost 45 ms.
    """
    kept = [start for start in starts if start < until]
    close_ns = [to_ns(moment) for moment in (*kept[1:], until)]
    per_vendor: dict[str, list[tuple[int, int, int]]] = {}
    for row in changes:
        per_vendor.setdefault(row.vendor, []).append(
            (to_ns(row.ts), row.msg_id, row.price_fen_per_kg)
        )
    in_force: dict[str, list[PricePoint]] = {}
    for vendor in sorted(per_vendor):
        ordered = sorted(per_vendor[vendor])
        times = [setting[0] for setting in ordered]
        points = []
        for start, close in zip(kept, close_ns, strict=True):
            # The last change strictly before the close.
            last = bisect_left(times, close) - 1
            if last >= 0:
                points.append(PricePoint(start, ordered[last][2]))
        if points:
            in_force[vendor] = points
    return in_force


def market_median(in_force: Mapping[str, Sequence[PricePoint]]) -> list[MedianPoint]:
    """Per bucket across the vendors with a price in force: count, lowest, median, highest."""
    per_bucket: dict[datetime, list[int]] = {}
    for points in in_force.values():
        for point in points:
            per_bucket.setdefault(point.bucket_start, []).append(point.price_fen_per_kg)
    medians = []
    for bucket_start in sorted(per_bucket):
        ordered = sorted(per_bucket[bucket_start])
        medians.append(
            MedianPoint(
                bucket_start=bucket_start,
                vendors=len(ordered),
                low_fen_per_kg=ordered[0],
                median_fen_per_kg=median(ordered),
                high_fen_per_kg=ordered[-1],
            )
        )
    return medians


def _datetime(value: object) -> datetime:
    """A bucket start back from pandas (which may hand it out as a ``Timestamp``)."""
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    return value


# -- sales -------------------------------------------------------------------------

_SALES_SUMS = ["transactions", "turnover_fen", "weight_g"]


@dataclass(frozen=True, slots=True)
class SalesFigures:
    """Sales of a day, a vendor, a category or a product.

    ``average_ticket_fen`` is turnover per transaction (one weighing at a scale),
    rounded half up to the whole fen; None without transactions. ``vendors`` is
    how many vendors had these sales.
    """

    key: str
    transactions: int
    turnover_fen: int
    weight_g: int
    average_ticket_fen: int | None
    vendors: int


def sales_frame(rows: Iterable[SalesSummaryRow]) -> pd.DataFrame:
    """Store summary rows as ``vendor, plu, transactions, turnover_fen, weight_g``."""
    records = [(r.vendor, r.plu, r.sales, r.total_fen, r.weight_g) for r in rows]
    frame = pd.DataFrame(records, columns=["vendor", "plu", *_SALES_SUMS])
    return frame.astype({"vendor": object, "plu": object, **dict.fromkeys(_SALES_SUMS, "int64")})


def scale_sales_frame(rows: Iterable[ScaleSalesRow]) -> pd.DataFrame:
    """Store rows per vendor and scale as ``vendor, scale, transactions, turnover_fen,
    weight_g``: what :func:`sales_per_vendor` needs, from the smaller rollup."""
    records = [(r.vendor, r.scale, r.sales, r.total_fen, r.weight_g) for r in rows]
    frame = pd.DataFrame(records, columns=["vendor", "scale", *_SALES_SUMS])
    return frame.astype({"vendor": object, "scale": object, **dict.fromkeys(_SALES_SUMS, "int64")})


def sales_totals(frame: pd.DataFrame, key: str = "total") -> SalesFigures:
    """Everything in the frame together."""
    transactions = int(frame["transactions"].sum())
    turnover = int(frame["turnover_fen"].sum())
    return SalesFigures(
        key=key,
        transactions=transactions,
        turnover_fen=turnover,
        weight_g=int(frame["weight_g"].sum()),
        average_ticket_fen=average_ticket_fen(turnover, transactions),
        vendors=int(frame["vendor"].nunique()),
    )


def sales_per_vendor(frame: pd.DataFrame) -> list[SalesFigures]:
    """Per vendor (``key`` is the vendor id), highest turnover first, ties by id."""
    return _figures(frame, "vendor")


def sales_per_category(frame: pd.DataFrame, categories: Mapping[str, str]) -> list[SalesFigures]:
    """Per product category, highest turnover first; ``categories`` maps PLU to category.

    A PLU missing from ``categories`` counts under :data:`UNKNOWN_CATEGORY`.
    """
    labels = pd.Series(
        [categories.get(plu, UNKNOWN_CATEGORY) for plu in frame["plu"].tolist()], dtype=object
    )
    return _figures(frame.assign(category=labels.to_numpy()), "category")


def top_products(frame: pd.DataFrame, limit: int) -> list[SalesFigures]:
    """The ``limit`` products (``key`` is the PLU) with the highest turnover, ties by PLU."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    return _figures(frame, "plu")[:limit]


def _figures(frame: pd.DataFrame, key: str) -> list[SalesFigures]:
    grouped = frame.groupby(key, sort=True)
    summed = grouped[_SALES_SUMS].sum().astype("int64")
    summed = summed.assign(vendors=grouped["vendor"].nunique().astype("int64"))
    summed = summed.reset_index().sort_values(
        ["turnover_fen", key], ascending=[False, True], kind="stable"
    )
    columns = [summed[name].tolist() for name in (key, *_SALES_SUMS, "vendors")]
    return [
        SalesFigures(
            key=str(group),
            transactions=int(transactions),
            turnover_fen=int(turnover),
            weight_g=int(weight),
            average_ticket_fen=average_ticket_fen(int(turnover), int(transactions)),
            vendors=int(vendors),
        )
        for group, transactions, turnover, weight, vendors in zip(*columns, strict=True)
    ]


# -- footfall ----------------------------------------------------------------------


def footfall_frame(rows: Iterable[FootfallRow]) -> pd.DataFrame:
    """Hourly gate rows as ``gate, hour, people_in, people_out`` (``hour`` as given)."""
    records = [(r.gate, r.hour, r.people_in, r.people_out) for r in rows]
    frame = pd.DataFrame(records, columns=["gate", "hour", "people_in", "people_out"])
    return frame.astype(
        {"gate": object, "hour": object, "people_in": "int64", "people_out": "int64"}
    )


@dataclass(frozen=True, slots=True)
class GateTotals:
    gate: str
    people_in: int
    people_out: int


@dataclass(frozen=True, slots=True)
class HourTotals:
    """People through all gates in one hour, and inside at its end (:func:`footfall_per_hour`)."""

    hour: datetime
    people_in: int
    people_out: int
    occupancy: int


def footfall_per_gate(frame: pd.DataFrame) -> list[GateTotals]:
    """People in and out per gate over the whole frame, by gate id."""
    summed = frame.groupby("gate", sort=True)[["people_in", "people_out"]].sum().reset_index()
    return [
        GateTotals(str(gate), int(people_in), int(people_out))
        for gate, people_in, people_out in zip(
            summed["gate"].tolist(),
            summed["people_in"].tolist(),
            summed["people_out"].tolist(),
            strict=True,
        )
    ]


def footfall_per_hour(frame: pd.DataFrame) -> list[HourTotals]:
    """People in and out per hour, all gates together, in time order.

    ``occupancy`` is people in minus people out from the first hour of the frame
    through the end of each hour: for a frame starting when the market is empty
    (the start of the market day) it is the number of people inside. It is not
    clamped at zero, so a drifting counter shows up rather than hiding.
    """
    summed = frame.groupby("hour", sort=True)[["people_in", "people_out"]].sum().reset_index()
    inside = (summed["people_in"] - summed["people_out"]).cumsum()
    return [
        HourTotals(_datetime(hour), int(people_in), int(people_out), int(occupancy))
        for hour, people_in, people_out, occupancy in zip(
            summed["hour"].tolist(),
            summed["people_in"].tolist(),
            summed["people_out"].tolist(),
            inside.tolist(),
            strict=True,
        )
    ]


def footfall_totals(frame: pd.DataFrame) -> tuple[int, int]:
    """People in and people out over the whole frame, all gates together."""
    return int(frame["people_in"].sum()), int(frame["people_out"].sum())


def occupancy(frame: pd.DataFrame) -> int:
    """People in minus people out over the whole frame."""
    people_in, people_out = footfall_totals(frame)
    return people_in - people_out


# -- traceability ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchBalance:
    """How much of a batch has been sold, and how much should be left."""

    quantity_g: int
    sold_g: int

    @property
    def remaining_g(self) -> int:
        """Intake minus sold; negative when more was sold than taken in."""
        return self.quantity_g - self.sold_g

    @property
    def oversold(self) -> bool:
        return self.sold_g > self.quantity_g


def batch_balance(quantity_g: int, sales: Iterable[SaleRow]) -> BatchBalance:
    return BatchBalance(quantity_g=quantity_g, sold_g=sum(sale.weight_g for sale in sales))
