"""Sales (``storage.interfaces.sales``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from storage.hours import HourSplit
from storage.influx.client import Row, Series
from storage.influx.indexes import receipt_bounds
from storage.influx.influxql import (
    Column,
    Condition,
    Query,
    SelectColumns,
    equals,
    time_before,
    time_from,
)
from storage.influx.reader import Reader, device_range, optional_equals
from storage.influx.rollups import MARKET_SALE_HOURLY, SALE_HOURLY, SCALE_SALE_HOURLY
from storage.influx.rows import int_column, sorted_sales, tagged_rows
from storage.interfaces.sales import SaleRow, SalesHourRow, SalesSummaryRow, ScaleSalesRow
from storage.records import from_ns

_NS_PER_MS: Final = 1_000_000


def sales(
    reader: Reader,
    market: str,
    start: datetime,
    end: datetime,
    *,
    vendor: str | None = None,
    scale: str | None = None,
    plu: str | None = None,
) -> list[SaleRow]:
    series = reader.select(
        "sale",
        equals("market", market),
        optional_equals("vendor", vendor),
        optional_equals("scale", scale),
        optional_equals("plu", plu),
        *device_range(start, end),
    )
    return sorted_sales(series)


def sale_by_receipt(
    reader: Reader, receipts: Reader, market: str, scale: str, msg_id: int
) -> SaleRow | None:
    """The sale with this ``msg_id``, in the time range its ``receipt_index`` entries bound.

    The scale's entries at or below and at or above the id (one request, two
    statements through ``receipts``, the msg_id ledger's reader) give the point
    times between which the sale is, so the read is a short range of the
    scale's series: about :data:`~storage.influx.indexes.RECEIPT_EVERY` sales,
    and a single point when the sale has an entry itself. An id above the
    newest entry is looked for from that entry on, one below the oldest up to
    it. No such sale in the range: None.

    This assumes that a scale's msg_ids grow with its clock, as pruning the
    msg_id ledger does (``MsgIdLedger.forget``). A scale without entries yet
    (points written before the index, not backfilled) is scanned for the id, as
    before the index.
    """
    if not 0 <= msg_id < 2**63:
        return None  # no message id outside the contract's range was ever stored
    bounds = receipt_bounds(receipts, market, scale, msg_id)
    where = [equals("market", market), equals("scale", scale), equals("msg_id", msg_id)]
    if bounds.floor_ns is not None:
        # The floor's millisecond: a later id in the same millisecond may have
        # smaller sub-millisecond digits (they are the id modulo 10⁶).
        where.append(time_from(bounds.floor_ns - bounds.floor_ns % _NS_PER_MS))
    if bounds.ceiling_ns is not None:
        where.append(time_before(bounds.ceiling_ns - bounds.ceiling_ns % _NS_PER_MS + _NS_PER_MS))
    rows = sorted_sales(reader.select("sale", *where, newest_first=True, limit=1))
    return rows[-1] if rows else None


def sales_summary(
    reader: Reader, market: str, start: datetime, end: datetime
) -> list[SalesSummaryRow]:
    """See :meth:`Store.sales_summary`: whole hours from ``sale_hourly`` summed by InfluxDB
    per vendor and PLU; the raw sales of the partial hours at the edges listed and
    summed here (one request).

    Listed, not ``GROUP BY vendor, plu``: an hour of raw sales of a 300-vendor market
    spans 1,500 series, which InfluxDB 1.6 groups in 150-260 ms and lists in 35-75 ms.
    The rollup's hours are few points a series, where grouping is the cheaper.
    """
    split = HourSplit.of(start, end)
    raw = (Column("total_fen"), Column("weight_g"), Column("vendor"), Column("plu"))
    rolled = (
        Column("transactions", "SUM", "sales"),
        Column("total_fen", "SUM", "total_fen"),
        Column("weight_g", "SUM", "weight_g"),
    )
    parts = _parts(split, raw, rolled, SALE_HOURLY)
    if not parts:
        return []
    series = reader.statements(
        [
            SelectColumns(
                measurement,
                columns=columns,
                where=(equals("market", market, param=f"market{number}"), *window),
                retention_policy=reader.policy_for(measurement, market),
                group_by=() if measurement == "sale" else ("vendor", "plu"),
            ).query()
            for number, (measurement, columns, window) in enumerate(parts)
        ]
    )
    sums = _sums_by_vendor_and(series, "plu")
    return [
        SalesSummaryRow(market, vendor, plu, sales, total_fen, weight_g)
        for (vendor, plu), (sales, total_fen, weight_g) in sorted(sums.items())
        if sales
    ]


def sales_by_scale(
    reader: Reader, market: str, start: datetime, end: datetime, *, census: bool = True
) -> list[ScaleSalesRow]:
    """See :meth:`Store.sales_by_scale`: whole hours from ``scale_sale_hourly`` summed per
    vendor and scale, the raw edge hours listed, in one request.

    Unless the database is known to hold only format 3 points (``census=False``), the
    request also sums the market's whole hours twice, from ``market_sale_hourly`` and
    from ``scale_sale_hourly``: if they differ, some hours have no scale points yet
    (written before format 3, not backfilled), and the whole hours are summed from
    ``sale_hourly`` instead, which costs a read per product series.
    """
    split = HourSplit.of(start, end)
    raw = (Column("total_fen"), Column("weight_g"), Column("vendor"), Column("scale"))
    rolled = (
        Column("transactions", "SUM", "sales"),
        Column("total_fen", "SUM", "total_fen"),
        Column("weight_g", "SUM", "weight_g"),
    )
    parts = _parts(split, raw, rolled, SCALE_SALE_HOURLY)
    if not parts:
        return []
    queries = [
        _part_query(reader, market, number, part, group_by=("vendor", "scale"))
        for number, part in enumerate(parts)
    ]
    hours = [part for part in parts if part[0] == SCALE_SALE_HOURLY] if census else []
    if hours:
        sold = (Column("transactions", "SUM", "sales"),)
        for measurement in (MARKET_SALE_HOURLY, SCALE_SALE_HOURLY):
            window = hours[0][2]
            queries.append(_part_query(reader, market, len(queries), (measurement, sold, window)))
    answers = _by_statement(reader.statements(queries), len(queries))
    if hours and _census(answers[-2]) != _census(answers[-1]):
        whole = _part_query(
            reader, market, 0, (SALE_HOURLY, rolled, hours[0][2]), group_by=("vendor", "scale")
        )
        at = parts.index(hours[0])
        answers[at] = _by_statement(reader.statements([whole]), 1)[0]
    sums = _sums_by_vendor_and([one for answer in answers[: len(parts)] for one in answer], "scale")
    return [
        ScaleSalesRow(market, vendor, scale, sales, total_fen, weight_g)
        for (vendor, scale), (sales, total_fen, weight_g) in sorted(sums.items())
        if sales
    ]


def _sums_by_vendor_and(series: Sequence[Series], key: str) -> dict[tuple[str, str], list[int]]:
    """[sales, total_fen, weight_g] per (vendor, ``key``) of listed raw sales and of a
    rollup's sums grouped by vendor and ``key``."""
    sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for one in series:
        if one.name == "sale":
            _add_listed_sales(sums, one.rows, key=key)
            continue
        for row in one.rows:
            if row.get("sales"):
                total = sums[(one.tags.get("vendor", ""), one.tags.get(key, ""))]
                total[0] += int_column(row, "sales")
                total[1] += _int_or_zero(row.get("total_fen"))
                total[2] += _int_or_zero(row.get("weight_g"))
    return sums


def _part_query(
    reader: Reader,
    market: str,
    number: int,
    part: _Part,
    *,
    group_by: tuple[str, ...] = (),
) -> Query:
    measurement, columns, window = part
    renamed = tuple(Condition(c.column, c.operator, f"{c.param}{number}", c.value) for c in window)
    return SelectColumns(
        measurement,
        columns=columns,
        where=(equals("market", market, param=f"market{number}"), *renamed),
        retention_policy=reader.policy_for(measurement, market),
        group_by=() if measurement == "sale" else group_by,
    ).query()


def _by_statement(series: Sequence[Series], count: int) -> list[list[Series]]:
    answers: list[list[Series]] = [[] for _ in range(count)]
    for one in series:
        answers[one.statement_id].append(one)
    return answers


def _census(answer: Sequence[Series]) -> int:
    return sum(_int_or_zero(row.get("sales")) for one in answer for row in one.rows)


def _add_listed_sales(
    sums: dict[tuple[str, str], list[int]], rows: Sequence[Row], *, key: str = "plu"
) -> None:
    """Count listed raw sales into ``sums`` per (vendor, ``key``); a sale without
    ``total_fen`` yet (a write in flight) is not counted, as ``COUNT(total_fen)`` would not."""
    for row in rows:
        fen, vendor, plu = row.get("total_fen"), row.get("vendor"), row.get(key)
        if type(fen) is not int or not isinstance(vendor, str) or not isinstance(plu, str):
            continue
        total = sums[(vendor, plu)]
        total[0] += 1
        total[1] += fen
        total[2] += _int_or_zero(row.get("weight_g"))


def sales_by_hour(
    reader: Reader, market: str, start: datetime, end: datetime
) -> list[SalesHourRow]:
    """See :meth:`Store.sales_by_hour`: whole hours from ``market_sale_hourly``, the
    partial hours at the edges summed per ``time(1h)`` bucket of raw sales.

    InfluxDB aligns the buckets to the epoch, so they are UTC hours, and the
    ``WHERE`` range clips the first and last.
    """
    split = HourSplit.of(start, end)
    raw = (Column("total_fen", "COUNT", "transactions"), Column("total_fen", "SUM", "turnover"))
    rolled = (Column("transactions"), Column("total_fen", alias="turnover"))
    queries = []
    for number, (measurement, columns, window) in enumerate(
        _parts(split, raw, rolled, MARKET_SALE_HOURLY)
    ):
        aggregated = measurement == "sale"
        weight = Column("weight_g", "SUM" if aggregated else None, "weight_g")
        queries.append(
            SelectColumns(
                measurement,
                columns=(*columns, weight),
                where=(equals("market", market, param=f"market{number}"), *window),
                retention_policy=reader.policy_for(measurement, market),
                every_s=3600 if aggregated else None,
            ).query()
        )
    if not queries:
        return []
    sums: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in tagged_rows(reader.statements(queries)):
        if row.get("transactions"):
            total = sums[int_column(row, "time")]
            total[0] += int_column(row, "transactions")
            total[1] += _int_or_zero(row.get("turnover"))
            total[2] += _int_or_zero(row.get("weight_g"))
    return [
        SalesHourRow(market, from_ns(hour_ns), transactions, turnover_fen, weight_g)
        for hour_ns, (transactions, turnover_fen, weight_g) in sorted(sums.items())
        if transactions
    ]


_Part = tuple[str, tuple[Column, ...], tuple[Condition, ...]]


def _parts(
    split: HourSplit, raw: tuple[Column, ...], rolled: tuple[Column, ...], rollup: str
) -> list[_Part]:
    """The raw head, the rollup's whole hours and the raw tail of ``split`` that are not empty."""
    parts: list[_Part] = []
    for name, low, high, measurement, columns in (
        ("head", split.start, split.head_end, "sale", raw),
        ("hours", split.hours_start, split.hours_end, rollup, rolled),
        ("tail", split.tail_start, split.end, "sale", raw),
    ):
        if low < high:
            window = (
                Condition("time", ">=", f"{name}_start", low),
                Condition("time", "<", f"{name}_end", high),
            )
            parts.append((measurement, columns, window))
    return parts


def _int_or_zero(value: object) -> int:
    """A sum InfluxDB leaves out (null) when no point of the group has the field."""
    return value if type(value) is int else 0
