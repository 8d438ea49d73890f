"""The points' schema, and how the rows InfluxDB answers become the store's row types.

Schema (one measurement per message type; see ``docs/influxdb-compatibility.md``):

==============  ============================  ==============================================
measurement     tags (bounded ids only)       fields
==============  ============================  ==============================================
sale            market, scale, vendor, plu    msg_id, weight_g, tare_g?, unit_price_fen_per_kg,
                                              total_fen, trace_code, trace_status, received_ns
price           market, vendor, plu           screen, msg_id, price_fen_per_kg,
                                              promo_price_fen_per_kg?, promo_text?,
                                              promo_until_ns?, received_ns
footfall        market, gate                  msg_id, in_total, out_total, received_ns
batch           market, station, vendor, plu  msg_id, trace_code, origin, supplier, quantity_g,
                                              certificate_no, rapid_test_passed?,
                                              inhibition_permille?, received_ns
scale_status    market, scale                 msg_id, online, will, zero_ok?, seal_intact?,
                                              calibration_due?, received_ns
dead_letter     market, device (, dup)        topic, reason, payload_b64, payload_size
msg_id_ledger   market, device                digest, received_ns? (time: the msg_id − 1)
trace_index     market, bucket, kind          trace_code, vendor, plu, point_ns | scale, day_ns
receipt_index   market, scale                 point_ns (time: the msg_id − 1)
==============  ============================  ==============================================

The two indexes say where a trace code's and a receipt's points are
(:mod:`storage.influx.indexes`). The hourly rollups and their marks (``sale_hourly``,
``market_sale_hourly``, ``footfall_hourly``, ``batch_sold``, ``rollup_mark``) are in
:mod:`storage.influx.rollups`.

A point's fields become visible to readers one by one while a write is in
flight, so the row decoders treat a sale without all of its required fields
as not written yet and leave it out, rather than failing the read. A sale
without ``trace_status`` was written before sales were checked: it reads as
``unchecked`` (never as verified). A batch without both test fields was not
tested at intake; one with only one of them is a write in flight. (A tested
batch read while neither test field is visible yet reads as untested for that
moment, as a price does without its promotion.)

Point time is :func:`storage.records.point_time_ns` (device time to the
millisecond, ``msg_id`` in the sub-millisecond digits), so a replayed message
overwrites itself. Rows therefore report device time truncated to the
millisecond, and range bounds are compared at millisecond resolution; a Last
Will and dead letters are stamped with their arrival time in nanoseconds.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Final

from storage._exceptions import StoreQueryError
from storage.influx.client import Row, Series
from storage.interfaces.devices import ScaleStatusRow
from storage.interfaces.footfall import GateCountRow
from storage.interfaces.prices import PriceRow, PromotionRow
from storage.interfaces.sales import SaleRow
from storage.interfaces.traceability import BatchRow, RapidTestRow
from storage.records import DeadLetter, device_time, from_ns, permille_to_pct
from storage.traceability import TraceStatus

#: The fields every point of a measurement is written with. InfluxDB shows a point's
#: fields to readers one by one while it is written, so a row lacking one is a write in
#: flight: readers leave it out (it is there whole on the next read), never fail on it.
WRITTEN_WITH: Final[Mapping[str, tuple[str, ...]]] = {
    "sale": (
        "msg_id",
        "weight_g",
        "unit_price_fen_per_kg",
        "total_fen",
        "trace_code",
        "received_ns",
    ),
    "price": ("screen", "msg_id", "price_fen_per_kg", "received_ns"),
    "footfall": ("msg_id", "in_total", "out_total", "received_ns"),
    "batch": (
        "msg_id",
        "trace_code",
        "origin",
        "supplier",
        "quantity_g",
        "certificate_no",
        "received_ns",
    ),
    "rapid_test": ("msg_id", "trace_code", "passed", "inhibition_permille", "received_ns"),
    "scale_status": ("msg_id", "online", "will", "received_ns"),
    "dead_letter": ("topic", "reason", "payload_b64", "payload_size"),
}
#: Fields that come together or not at all: a price's promotion, a batch's intake test
#: (none: not tested at intake).
_TOGETHER: Final[Mapping[str, tuple[str, ...]]] = {
    "price": ("promo_price_fen_per_kg", "promo_text", "promo_until_ns"),
    "batch": ("rapid_test_passed", "inhibition_permille"),
}
#: Newest-first reads of "the latest point per series" ask for this many, so that a
#: newest point still being written leaves the one before it to show.
NEWEST_WITH_FALLBACK: Final = 2


# -- columns -----------------------------------------------------------------------------


def int_column(row: Row, column: str) -> int:
    value = row.get(column)
    if type(value) is not int:
        raise StoreQueryError(f"column {column!r} is {value!r}, expected an integer")
    return value


def _optional_int_column(row: Row, column: str) -> int | None:
    return None if row.get(column) is None else int_column(row, column)


def str_column(row: Row, column: str) -> str:
    value = row.get(column)
    if not isinstance(value, str):
        raise StoreQueryError(f"column {column!r} is {value!r}, expected a string")
    return value


def bool_column(row: Row, column: str) -> bool:
    value = row.get(column)
    if not isinstance(value, bool):
        raise StoreQueryError(f"column {column!r} is {value!r}, expected a boolean")
    return value


def optional_bool_column(row: Row, column: str) -> bool | None:
    return None if row.get(column) is None else bool_column(row, column)


def _optional_pct_column(row: Row, column: str) -> Decimal | None:
    """A permille column as a percentage (``storage.records.permille_to_pct``), or None."""
    return None if row.get(column) is None else permille_to_pct(int_column(row, column))


def trace_status_column(row: Row) -> TraceStatus:
    value = row.get("trace_status")
    if value is None:
        return TraceStatus.UNCHECKED
    try:
        return TraceStatus(str_column(row, "trace_status"))
    except ValueError as exc:
        raise StoreQueryError(f"column 'trace_status' is {value!r}, not a status") from exc


# -- rows of whole points ----------------------------------------------------------------


def tagged_rows(series: Sequence[Series]) -> Iterator[Row]:
    """Rows with the series' GROUP BY tags merged in."""
    for one in series:
        for row in one.rows:
            yield {**one.tags, **row} if one.tags else row


def _is_whole(measurement: str, row: Row) -> bool:
    """False while the point's write is in flight: a field it is always written with is missing."""
    if any(row.get(name) is None for name in WRITTEN_WITH[measurement]):
        return False
    missing = [row.get(name) is None for name in _TOGETHER.get(measurement, ())]
    return all(missing) or not any(missing)


def whole_rows(measurement: str, series: Sequence[Series]) -> Iterator[Row]:
    """The rows of points written whole (see :data:`WRITTEN_WITH`)."""
    return (row for row in tagged_rows(series) if _is_whole(measurement, row))


def newest_whole_rows(measurement: str, series: Sequence[Series]) -> Iterator[Row]:
    """Per series of a newest-first read, its newest point written whole."""
    for one in series:
        rows = ({**one.tags, **row} for row in one.rows)
        newest = next((row for row in rows if _is_whole(measurement, row)), None)
        if newest is not None:
            yield newest


# -- the store's row types ---------------------------------------------------------------


def _whole_sale_row(row: Row) -> SaleRow | None:
    """The sale, or None while a write of it is still in flight (a field is missing)."""
    return _sale_row(row) if _is_whole("sale", row) else None


def sorted_sales(series: Sequence[Series]) -> list[SaleRow]:
    rows = [sale for sale in map(_whole_sale_row, tagged_rows(series)) if sale is not None]
    return sorted(rows, key=lambda r: (r.ts, r.scale, r.msg_id))


def _sale_row(row: Row) -> SaleRow:
    return SaleRow(
        market=str_column(row, "market"),
        scale=str_column(row, "scale"),
        vendor=str_column(row, "vendor"),
        plu=str_column(row, "plu"),
        ts=device_time(int_column(row, "time")),
        msg_id=int_column(row, "msg_id"),
        weight_g=int_column(row, "weight_g"),
        tare_g=_optional_int_column(row, "tare_g"),
        unit_price_fen_per_kg=int_column(row, "unit_price_fen_per_kg"),
        total_fen=int_column(row, "total_fen"),
        trace_code=str_column(row, "trace_code"),
        received_ns=int_column(row, "received_ns"),
        trace_status=trace_status_column(row),
    )


def price_row(row: Row) -> PriceRow:
    promo = None
    if row.get("promo_price_fen_per_kg") is not None:
        promo = PromotionRow(
            price_fen_per_kg=int_column(row, "promo_price_fen_per_kg"),
            text=str_column(row, "promo_text"),
            until=from_ns(int_column(row, "promo_until_ns")),
        )
    return PriceRow(
        market=str_column(row, "market"),
        vendor=str_column(row, "vendor"),
        plu=str_column(row, "plu"),
        screen=str_column(row, "screen"),
        price_fen_per_kg=int_column(row, "price_fen_per_kg"),
        promo=promo,
        ts=device_time(int_column(row, "time")),
        msg_id=int_column(row, "msg_id"),
    )


def batch_row(row: Row) -> BatchRow:
    return BatchRow(
        market=str_column(row, "market"),
        station=str_column(row, "station"),
        vendor=str_column(row, "vendor"),
        plu=str_column(row, "plu"),
        trace_code=str_column(row, "trace_code"),
        origin=str_column(row, "origin"),
        supplier=str_column(row, "supplier"),
        quantity_g=int_column(row, "quantity_g"),
        certificate_no=str_column(row, "certificate_no"),
        rapid_test_passed=optional_bool_column(row, "rapid_test_passed"),
        inhibition_pct=_optional_pct_column(row, "inhibition_permille"),
        ts=device_time(int_column(row, "time")),
        msg_id=int_column(row, "msg_id"),
        received_ns=int_column(row, "received_ns"),
    )


def rapid_test_row(row: Row) -> RapidTestRow:
    return RapidTestRow(
        market=str_column(row, "market"),
        station=str_column(row, "station"),
        vendor=str_column(row, "vendor"),
        plu=str_column(row, "plu"),
        trace_code=str_column(row, "trace_code"),
        passed=bool_column(row, "passed"),
        inhibition_pct=permille_to_pct(int_column(row, "inhibition_permille")),
        ts=device_time(int_column(row, "time")),
        msg_id=int_column(row, "msg_id"),
        received_ns=int_column(row, "received_ns"),
    )


def gate_count_row(row: Row) -> GateCountRow:
    return GateCountRow(
        market=str_column(row, "market"),
        gate=str_column(row, "gate"),
        ts=device_time(int_column(row, "time")),
        in_total=int_column(row, "in_total"),
        out_total=int_column(row, "out_total"),
    )


def scale_status_row(row: Row) -> ScaleStatusRow:
    will = bool_column(row, "will")
    time_ns = int_column(row, "time")
    due = row.get("calibration_due")
    return ScaleStatusRow(
        market=str_column(row, "market"),
        scale=str_column(row, "scale"),
        # A will is stamped with its arrival time, which has no msg_id digits to drop.
        ts=from_ns(time_ns) if will else device_time(time_ns),
        online=bool_column(row, "online"),
        will=will,
        zero_ok=optional_bool_column(row, "zero_ok"),
        seal_intact=optional_bool_column(row, "seal_intact"),
        calibration_due=(
            None if due is None else date.fromisoformat(str_column(row, "calibration_due"))
        ),
        received=from_ns(int_column(row, "received_ns")),
    )


def dead_letter_row(row: Row) -> DeadLetter:
    try:
        payload = base64.b64decode(str_column(row, "payload_b64"), validate=True)
    except binascii.Error as exc:
        raise StoreQueryError(f"dead letter payload is not base64: {exc}") from exc
    return DeadLetter(
        received_ns=int_column(row, "time"),
        topic=str_column(row, "topic"),
        payload=payload,
        reason=str_column(row, "reason"),
        market=str_column(row, "market"),
        device=str_column(row, "device"),
        payload_size=int_column(row, "payload_size"),
    )
