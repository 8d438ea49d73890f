"""Sales (``storage.interfaces.sales``)."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from storage.influx.indexes import receipt_bounds
from storage.influx.influxql import Column, SelectColumns, equals, time_before, time_from
from storage.influx.reader import Reader, device_range, optional_equals
from storage.influx.rows import int_column, sorted_sales, tagged_rows
from storage.interfaces.sales import SaleRow, SalesHourRow, SalesSummaryRow
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
    """See :meth:`Store.sales_summary`: one ``COUNT``/``SUM`` query per vendor and PLU."""
    series = reader.select_columns(
        SelectColumns(
            "sale",
            columns=(
                Column("total_fen", "COUNT", "sales"),
                Column("total_fen", "SUM", "total_fen"),
                Column("weight_g", "SUM", "weight_g"),
            ),
            where=(equals("market", market), *device_range(start, end)),
            group_by=("vendor", "plu"),
        )
    )
    summary = [
        SalesSummaryRow(
            market=market,
            vendor=one.tags.get("vendor", ""),
            plu=one.tags.get("plu", ""),
            sales=int_column(row, "sales"),
            total_fen=int_column(row, "total_fen"),
            weight_g=int_column(row, "weight_g"),
        )
        for one in series
        for row in one.rows
        if row.get("sales")
    ]
    return sorted(summary, key=lambda r: (r.vendor, r.plu))


def sales_by_hour(
    reader: Reader, market: str, start: datetime, end: datetime
) -> list[SalesHourRow]:
    """See :meth:`Store.sales_by_hour`: ``COUNT``/``SUM`` per ``time(1h)`` bucket.

    InfluxDB aligns the buckets to the epoch, so they are UTC hours, and the
    ``WHERE`` range clips the first and last.
    """
    series = reader.select_columns(
        SelectColumns(
            "sale",
            columns=(
                Column("total_fen", "COUNT", "transactions"),
                Column("total_fen", "SUM", "turnover_fen"),
                Column("weight_g", "SUM", "weight_g"),
            ),
            where=(equals("market", market), *device_range(start, end)),
            every_s=3600,
        )
    )
    hours = [
        SalesHourRow(
            market=market,
            hour=from_ns(int_column(row, "time")),
            transactions=int_column(row, "transactions"),
            turnover_fen=int_column(row, "turnover_fen"),
            weight_g=int_column(row, "weight_g"),
        )
        for row in tagged_rows(series)
        if row.get("transactions")
    ]
    return sorted(hours, key=lambda r: r.hour)
