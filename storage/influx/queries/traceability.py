"""Batches and the sales that name them (``storage.interfaces.traceability``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from storage.influx.influxql import Column, Condition, SelectColumns, equals, not_equals, time_from
from storage.influx.reader import Reader, aware_ns, device_range, optional_equals
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
    """See :meth:`Store.batch_balances`: the batches, and one query for their sales.

    ``trace_code`` is a field, so the market's sales since
    :data:`SALES_BEFORE_INTAKE` before ``start`` are listed (time, trace code
    and weight, per vendor and PLU) and added up here. A batch counts the
    sales of its own vendor and product from :data:`SALES_BEFORE_INTAKE`
    before its intake, the sales :func:`sales_of_batch` finds.
    """
    found = batches(reader, market, start, end)
    if not found:
        return []
    series = reader.select_columns(
        SelectColumns(
            "sale",
            columns=(Column("trace_code"), Column("weight_g")),
            where=(equals("market", market), time_from(aware_ns(start - SALES_BEFORE_INTAKE))),
            group_by=("vendor", "plu"),
        )
    )
    sales: dict[tuple[str, str, str], list[tuple[int, int]]] = defaultdict(list)
    for row in tagged_rows(series):
        if row.get("trace_code") is None or row.get("weight_g") is None:
            continue  # a sale whose write is still in flight
        key = (str_column(row, "trace_code"), str_column(row, "vendor"), str_column(row, "plu"))
        sales[key].append((int_column(row, "time"), int_column(row, "weight_g")))
    return [_batch_balance(one, sales[(one.trace_code, one.vendor, one.plu)]) for one in found]


def _batch_balance(batch: BatchRow, sales: Sequence[tuple[int, int]]) -> BatchBalanceRow:
    """``batch`` with its ``sales`` (time, grams) from :data:`SALES_BEFORE_INTAKE` before intake."""
    since = aware_ns(batch.ts - SALES_BEFORE_INTAKE)
    counted = [(time_ns, weight_g) for time_ns, weight_g in sales if time_ns >= since]
    newest = max((time_ns for time_ns, _ in counted), default=None)
    return BatchBalanceRow.of(
        batch,
        sales=len(counted),
        sold_g=sum(weight_g for _, weight_g in counted),
        last_sale=None if newest is None else device_time(newest),
    )
