"""Batches and the sales that name them (``storage.interfaces.traceability``)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Final

from storage.influx.client import Row
from storage.influx.influxql import (
    Column,
    Condition,
    Select,
    SelectColumns,
    equals,
    not_equals,
    time_from,
)
from storage.influx.reader import Reader, aware_ns, device_range, optional_equals
from storage.influx.rollups import BATCH_SOLD
from storage.influx.rows import (
    NEWEST_WITH_FALLBACK,
    batch_row,
    int_column,
    newest_whole_rows,
    sorted_sales,
    str_column,
    tagged_rows,
    trace_status_column,
    whole_rows,
)
from storage.interfaces.sales import SaleRow
from storage.interfaces.traceability import BatchBalanceRow, BatchRow, UnverifiedSalesRow
from storage.records import device_time
from storage.traceability import LATE_BATCH_GRACE, TraceStatus

#: How far before a batch's intake time :func:`sales_of_batch` looks, because scale
#: clocks drift and an intake station may report late: the grace window of sale
#: verification.
SALES_BEFORE_INTAKE: Final = LATE_BATCH_GRACE


def batch(reader: Reader, market: str, trace_code: str) -> BatchRow | None:
    """The batch's newest record (``trace_code`` is a field: scans the market's batches)."""
    series = reader.select(
        "batch",
        equals("market", market),
        equals("trace_code", trace_code),
        newest_first=True,
        limit=NEWEST_WITH_FALLBACK,
    )
    rows = [batch_row(row) for row in newest_whole_rows("batch", series)]
    return max(rows, key=lambda r: r.ts) if rows else None


def batches(
    reader: Reader, market: str, start: datetime, end: datetime, *, vendor: str | None = None
) -> list[BatchRow]:
    series = reader.select(
        "batch",
        equals("market", market),
        optional_equals("vendor", vendor),
        *device_range(start, end),
    )
    rows = map(batch_row, whole_rows("batch", series))
    return sorted(rows, key=lambda r: (r.ts, r.station, r.msg_id))


def sales_of_batch(reader: Reader, market: str, trace_code: str) -> list[SaleRow]:
    """See :meth:`Store.sales_of_batch`: the batch's own sales.

    ``trace_code`` is a field (an unbounded id must not be a tag), so this is
    a field scan. When the batch is known the scan is narrowed to its
    vendor's series of that product, from :data:`SALES_BEFORE_INTAKE` before
    its intake; otherwise it covers every sale of the market.
    """
    known = batch(reader, market, trace_code)
    narrowing: tuple[Condition, ...] = ()
    if known is not None:
        since = aware_ns(known.ts - SALES_BEFORE_INTAKE)
        narrowing = (equals("vendor", known.vendor), equals("plu", known.plu), time_from(since))
    series = reader.select(
        "sale", equals("market", market), equals("trace_code", trace_code), *narrowing
    )
    return sorted_sales(series)


def unverified_sales(
    reader: Reader, market: str, start: datetime, end: datetime
) -> list[UnverifiedSalesRow]:
    """See :meth:`Store.unverified_sales`: lists the status of those sales per vendor and scale.

    ``trace_status`` is a field, so this scans the field over the range and
    only the (rare) sales that did not check out travel; they are counted here.
    """
    series = reader.select_columns(
        SelectColumns(
            "sale",
            columns=(Column("trace_status"),),
            where=(
                equals("market", market),
                not_equals("trace_status", TraceStatus.VERIFIED.value),
                *device_range(start, end),
            ),
            group_by=("vendor", "scale"),
        )
    )
    counts: dict[tuple[str, str, TraceStatus], int] = defaultdict(int)
    for row in tagged_rows(series):
        counts[(str_column(row, "vendor"), str_column(row, "scale"), trace_status_column(row))] += 1
    order = list(TraceStatus)
    return [
        UnverifiedSalesRow(market, vendor, scale, status, sales)
        for (vendor, scale, status), sales in sorted(
            counts.items(), key=lambda item: (*item[0][:2], order.index(item[0][2]))
        )
    ]


def batch_balances(
    reader: Reader, market: str, start: datetime, end: datetime
) -> list[BatchBalanceRow]:
    """See :meth:`Store.batch_balances`: the batches and their ``batch_sold`` rollup points.

    Each batch record's ``batch_sold`` point (same series tags, same time) holds
    its own vendor's sales of its product naming the code, from
    :data:`SALES_BEFORE_INTAKE` before its intake (``storage.influx.rollups``):
    one request of two range reads, however many sales there were.
    """
    window = device_range(start, end)
    selects = [
        Select(
            measurement,
            where=(
                equals("market", market, param=f"market{number}"),
                Condition("time", ">=", f"start{number}", window[0].value),
                Condition("time", "<", f"end{number}", window[1].value),
            ),
            retention_policy=reader.retention_policy,
            group_by=("station", "vendor", "plu"),
        ).query()
        for number, measurement in enumerate(("batch", BATCH_SOLD))
    ]
    series = reader.statements(selects)
    sold = {
        _record_key(row): row
        for one in series
        if one.name == BATCH_SOLD
        for row in tagged_rows([one])
        if type(row.get("sales")) is int and type(row.get("sold_g")) is int
    }
    records = [
        (batch_row(row), sold.get(_record_key(row)))
        for one in series
        if one.name == "batch"
        for row in whole_rows("batch", [one])
    ]
    records.sort(key=lambda record: (record[0].ts, record[0].station, record[0].msg_id))
    return [_batch_balance(batch, rolled) for batch, rolled in records]


def _record_key(row: Row) -> tuple[str, str, str, int]:
    """A batch record's identity: its series tags and point time."""
    return (
        str_column(row, "station"),
        str_column(row, "vendor"),
        str_column(row, "plu"),
        int_column(row, "time"),
    )


def _batch_balance(batch: BatchRow, sold: Row | None) -> BatchBalanceRow:
    """``batch`` with its ``batch_sold`` point (nothing sold without one)."""
    if sold is None or not int_column(sold, "sales"):
        return BatchBalanceRow.of(batch, sales=0, sold_g=0, last_sale=None)
    return BatchBalanceRow.of(
        batch,
        sales=int_column(sold, "sales"),
        sold_g=int_column(sold, "sold_g"),
        last_sale=device_time(int_column(sold, "last_sale_ns")),
    )
