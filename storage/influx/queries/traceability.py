"""Batches and the sales that name them (``storage.interfaces.traceability``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from storage._exceptions import StoreQueryError
from storage.influx.indexes import TraceEntry, trace_entries, trace_select
from storage.influx.influxql import (
    Column,
    Condition,
    Query,
    Select,
    SelectColumns,
    equals,
    not_equals,
    time_from,
)
from storage.influx.reader import Reader, aware_ns, device_range, optional_equals
from storage.influx.rows import (
    NEWEST_WITH_FALLBACK,
    batch_row,
    int_column,
    sorted_sales,
    str_column,
    tagged_rows,
    trace_status_column,
    whole_rows,
)
from storage.interfaces.sales import SaleRow
from storage.interfaces.traceability import BatchBalanceRow, BatchRow, UnverifiedSalesRow
from storage.records import device_time
from storage.traceability import LATE_BATCH_GRACE, LATE_BATCH_GRACE_NS, BatchKey, TraceStatus

#: How far before a batch's intake time :func:`sales_of_batch` looks, because scale
#: clocks drift and an intake station may report late: the grace window of sale
#: verification.
SALES_BEFORE_INTAKE: Final = LATE_BATCH_GRACE
_NS_PER_MS: Final = 1_000_000
_NS_PER_DAY: Final = 86_400 * 1_000_000_000


def batch(reader: Reader, market: str, trace_code: str) -> BatchRow | None:
    """The batch's newest record: its newest ``trace_index`` entries, then those points.

    Two requests, each a read of a few points: the code's index bucket (one
    small series) and the batch points it names, by exact time. The two newest
    entries are read so that a newest record still being written leaves the
    one before it to show.
    """
    entries = trace_entries(
        reader.statements(
            [trace_select(reader, market, trace_code, kind="batch", newest=NEWEST_WITH_FALLBACK)]
        )
    )
    if not entries:
        return None
    points = [_batch_point(reader, entry, number) for number, entry in enumerate(entries)]
    rows = [batch_row(row) for row in whole_rows("batch", reader.statements(points))]
    return max(rows, key=lambda r: r.ts) if rows else None


def _batch_point(reader: Reader, entry: TraceEntry, number: int) -> Query:
    """The batch point an index entry names (any station: its time and code are enough)."""
    return Select(
        "batch",
        where=(
            Condition("market", "=", f"market{number}", entry.market),
            Condition("vendor", "=", f"vendor{number}", entry.vendor),
            Condition("plu", "=", f"plu{number}", entry.plu),
            Condition("time", "=", f"time{number}", entry.at_ns),
            Condition("trace_code", "=", f"code{number}", entry.trace_code),
        ),
        retention_policy=reader.retention_policy,
    ).query()


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


@dataclass(frozen=True, slots=True)
class SaleSpan:
    """Point times between which a batch's own sales lie (inclusive)."""

    first_ns: int
    #: None: up to the newest sale of the batch vendor's series of its product
    last_ns: int | None


def sale_span(reader: Reader, market: str, trace_code: str, batch: BatchKey) -> SaleSpan:
    """Where to look for the sales of the batch whose newest record is ``batch``.

    From :data:`SALES_BEFORE_INTAKE` before its intake, as the contract says,
    to its newest sale. Nothing stored says yet when that was, so the range is
    open: the batch vendor's series of its product since then.
    """
    first_ns = batch.time_ns - batch.time_ns % _NS_PER_MS - LATE_BATCH_GRACE_NS
    return SaleSpan(first_ns, None)


def sales_of_batch(reader: Reader, market: str, trace_code: str) -> list[SaleRow]:
    """See :meth:`Store.sales_of_batch`: found through the code's ``trace_index`` entries.

    One read of the code's index bucket gives its batch records and the days
    of its unverified sales per scale and product. A registered batch's sales
    are its vendor's series of its product in :func:`sale_span`, filtered by
    code, and the unverified ones of them the index names (so they are found
    even outside the span); without a batch they are the sales the index names,
    since none can be verified: each entry is a day of one scale's series of a
    product, filtered by code.
    """
    entries = trace_entries(reader.statements([trace_select(reader, market, trace_code)]))
    days = [entry for entry in entries if entry.kind == "sale"]
    newest = _newest_batch(entries)
    first_ns: int | None = None
    reads: list[Query] = []
    if newest is not None:
        span = sale_span(reader, market, trace_code, newest)
        first_ns = span.first_ns
        reads.append(_own_sales(reader, market, trace_code, newest, span))
        days = [
            entry
            for entry in days
            if (entry.vendor, entry.plu) == (newest.vendor, newest.plu)
            and entry.at_ns + _NS_PER_DAY > span.first_ns
        ]
    reads += [_sales_of_day(reader, entry, n, first_ns) for n, entry in enumerate(days, start=1)]
    if not reads:
        return []
    rows = {(row.scale, row.ts, row.msg_id): row for row in sorted_sales(reader.statements(reads))}
    return sorted(rows.values(), key=lambda r: (r.ts, r.scale, r.msg_id))


def _newest_batch(entries: Sequence[TraceEntry]) -> BatchKey | None:
    batches = [entry for entry in entries if entry.kind == "batch"]
    if not batches:
        return None
    newest = max(batches, key=lambda entry: entry.at_ns)
    return BatchKey(newest.vendor, newest.plu, newest.at_ns)


def _own_sales(
    reader: Reader, market: str, trace_code: str, batch: BatchKey, span: SaleSpan
) -> Query:
    """The batch vendor's sales of its product naming the code, in ``span``."""
    where = [
        Condition("market", "=", "market0", market),
        Condition("vendor", "=", "vendor0", batch.vendor),
        Condition("plu", "=", "plu0", batch.plu),
        Condition("trace_code", "=", "code0", trace_code),
        Condition("time", ">=", "first0", span.first_ns),
    ]
    if span.last_ns is not None:
        where.append(Condition("time", "<=", "last0", span.last_ns))
    return Select("sale", where=tuple(where), retention_policy=reader.retention_policy).query()


def _sales_of_day(reader: Reader, entry: TraceEntry, number: int, first_ns: int | None) -> Query:
    """The sales an index entry names: a day of its scale's series of the product, by code.

    ``first_ns`` (the batch's window) cuts the day's start.
    """
    if entry.scale is None:
        raise StoreQueryError(f"trace_index sales entry of {entry.at_ns} has no scale")
    start = entry.at_ns if first_ns is None else max(entry.at_ns, first_ns)
    return Select(
        "sale",
        where=(
            Condition("market", "=", f"market{number}", entry.market),
            Condition("scale", "=", f"scale{number}", entry.scale),
            Condition("vendor", "=", f"vendor{number}", entry.vendor),
            Condition("plu", "=", f"plu{number}", entry.plu),
            Condition("trace_code", "=", f"code{number}", entry.trace_code),
            Condition("time", ">=", f"start{number}", start),
            Condition("time", "<", f"end{number}", entry.at_ns + _NS_PER_DAY),
        ),
        retention_policy=reader.retention_policy,
    ).query()


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
