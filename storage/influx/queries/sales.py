"""Sales (``storage.interfaces.sales``)."""

from __future__ import annotations

from datetime import datetime

from storage.influx.influxql import Column, SelectColumns, equals
from storage.influx.reader import Reader, device_range, optional_equals
from storage.influx.rows import int_column, sorted_sales, tagged_rows
from storage.interfaces.sales import SaleRow, SalesHourRow, SalesSummaryRow
from storage.records import from_ns


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


def sale_by_receipt(reader: Reader, market: str, scale: str, msg_id: int) -> SaleRow | None:
    """The sale with this ``msg_id`` (a field scan of that scale's series)."""
    series = reader.select(
        "sale",
        equals("market", market),
        equals("scale", scale),
        equals("msg_id", msg_id),
        newest_first=True,
        limit=1,
    )
    rows = sorted_sales(series)
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
