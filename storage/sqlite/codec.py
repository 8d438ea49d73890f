"""How readings become rows, and how column values become Python values again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from schemas.messages import (
    BatchIntake,
    GateCount,
    PriceSet,
    RapidTest,
    RapidTestReport,
    RapidTestResult,
    Sale,
    ScaleStatus,
)
from storage.records import Reading, pct_to_permille, to_ns
from storage.sqlite.interning import (
    BATCH_SERIES,
    FOOTFALL_SERIES,
    PRICE_SERIES,
    PRODUCT,
    SALE_SOURCE,
    SCALE_STATUS_SERIES,
    TRACE_CODE,
    InternTable,
    Key,
)
from storage.traceability import TraceStatus

SqlValue = int | str | bytes | None


@dataclass(frozen=True, slots=True, eq=False)
class Table:
    """Where one measurement's rows go.

    ``insert_sql`` takes the ids of the row's interned references first, in the
    order :func:`encode` lists them, then ``time_ns``, then the values.
    A redelivered reading overwrites itself: ``OR REPLACE``, or for the tables
    with rollups an upsert, because a REPLACE deletes the old row without
    firing delete triggers and the rollup would count the reading twice (see
    ``storage.sqlite.schema``; the sale rollups are kept by
    ``storage.sqlite.rollups``). Hashed by identity: each table is one module constant.
    """

    name: str
    insert_sql: str


#: ``sale.trace_status`` (schema version 4) of each status the store records.
TRACE_STATUS_CODES: dict[TraceStatus, int] = {
    TraceStatus.VERIFIED: 0,
    TraceStatus.UNKNOWN_BATCH: 1,
    TraceStatus.OTHER_VENDOR: 2,
    TraceStatus.PRODUCT_MISMATCH: 3,
    TraceStatus.OUTSIDE_CATEGORIES: 4,
}
TRACE_STATUS_OF_CODE: dict[int, TraceStatus] = {
    code: status for status, code in TRACE_STATUS_CODES.items()
}

#: A sale's values end with its trace status, which the store adds once it has
#: looked the trace code up (see ``SQLiteStore.write``).
SALE = Table(
    "sale",
    "INSERT INTO sale (source, product, trace, time_ns, msg_id, weight_g, tare_g,"
    " unit_price_fen_per_kg, total_fen, received_ns, trace_status)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (time_ns, source, product) DO UPDATE SET trace = excluded.trace,"
    " msg_id = excluded.msg_id, weight_g = excluded.weight_g, tare_g = excluded.tare_g,"
    " unit_price_fen_per_kg = excluded.unit_price_fen_per_kg, total_fen = excluded.total_fen,"
    " received_ns = excluded.received_ns, trace_status = excluded.trace_status",
)
PRICE = Table(
    "price",
    "INSERT OR REPLACE INTO price (series, time_ns, msg_id, screen, price_fen_per_kg,"
    " promo_price_fen_per_kg, promo_text, promo_until_ns, received_ns)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
)
BATCH = Table(
    "batch",
    "INSERT OR REPLACE INTO batch (series, trace, time_ns, msg_id, origin, supplier, quantity_g,"
    " certificate_no, rapid_test_passed, inhibition_permille, received_ns)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
)
RAPID_TEST = Table(
    "rapid_test",
    "INSERT OR REPLACE INTO rapid_test (series, trace, time_ns, msg_id, passed,"
    " inhibition_permille, received_ns) VALUES (?, ?, ?, ?, ?, ?, ?)",
)
FOOTFALL = Table(
    "footfall",
    "INSERT INTO footfall (series, time_ns, msg_id, in_total, out_total, received_ns)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (series, time_ns) DO UPDATE SET"
    " msg_id = excluded.msg_id, in_total = excluded.in_total, out_total = excluded.out_total,"
    " received_ns = excluded.received_ns",
)
SCALE_STATUS = Table(
    "scale_status",
    "INSERT OR REPLACE INTO scale_status (series, time_ns, msg_id, online, will, zero_ok,"
    " seal_intact, calibration_due, received_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
)

Ref = tuple[InternTable, Key]


@dataclass(frozen=True, slots=True)
class EncodedRow:
    """A reading as a row whose references (series, product, trace code) still need ids."""

    reading: Reading
    table: Table
    refs: tuple[Ref, ...]
    time_ns: int
    values: tuple[SqlValue, ...]


def encode(reading: Reading) -> EncodedRow:
    """The row for a reading; raises ValueError for a value the schema cannot hold exactly."""
    market, device, message = reading.market, reading.device, reading.message
    time_ns = reading.time_ns
    match message:
        case Sale():
            refs: tuple[Ref, ...] = (
                (SALE_SOURCE, (market, device, message.vendor)),
                (PRODUCT, (market, message.plu)),
                (TRACE_CODE, (market, message.trace_code)),
            )
            return EncodedRow(reading, SALE, refs, time_ns, _sale_values(reading, message))
        case PriceSet():
            refs = ((PRICE_SERIES, (market, message.vendor, message.plu)),)
            return EncodedRow(reading, PRICE, refs, time_ns, _price_values(reading, message))
        case BatchIntake():
            refs = (
                (BATCH_SERIES, (market, device, message.vendor, message.plu)),
                (TRACE_CODE, (market, message.trace_code)),
            )
            return EncodedRow(reading, BATCH, refs, time_ns, _batch_values(reading, message))
        case RapidTestReport():
            refs = (
                (BATCH_SERIES, (market, device, message.vendor, message.plu)),
                (TRACE_CODE, (market, message.trace_code)),
            )
            return EncodedRow(reading, RAPID_TEST, refs, time_ns, _test_values(reading, message))
        case GateCount():
            values = (message.msg_id, message.in_total, message.out_total, reading.received_ns)
            return EncodedRow(
                reading, FOOTFALL, ((FOOTFALL_SERIES, (market, device)),), time_ns, values
            )
        case ScaleStatus():
            refs = ((SCALE_STATUS_SERIES, (market, device)),)
            return EncodedRow(
                reading, SCALE_STATUS, refs, time_ns, _status_values(reading, message)
            )
    raise TypeError(f"no table for {type(message).__name__}")


def _sale_values(reading: Reading, sale: Sale) -> tuple[SqlValue, ...]:
    return (
        sale.msg_id,
        sale.weight_g,
        sale.tare_g,
        sale.unit_price_fen_per_kg,
        sale.total_fen,
        reading.received_ns,
    )


def _price_values(reading: Reading, price: PriceSet) -> tuple[SqlValue, ...]:
    promo = price.promo
    return (
        price.msg_id,
        reading.device,
        price.price_fen_per_kg,
        None if promo is None else promo.price_fen_per_kg,
        None if promo is None else promo.text,
        None if promo is None else to_ns(promo.until),
        reading.received_ns,
    )


def _batch_values(reading: Reading, batch: BatchIntake) -> tuple[SqlValue, ...]:
    return (
        batch.msg_id,
        batch.origin,
        batch.supplier,
        batch.quantity_g,
        batch.certificate_no,
        *_test_columns(batch.rapid_test),
        reading.received_ns,
    )


def _test_columns(test: RapidTest | None) -> tuple[int | None, int | None]:
    """(passed, inhibition permille) of a test; both NULL for a batch not tested at intake."""
    if test is None:
        return None, None
    return int(test.result is RapidTestResult.PASS), pct_to_permille(test.inhibition_pct)


def _test_values(reading: Reading, report: RapidTestReport) -> tuple[SqlValue, ...]:
    return (
        report.msg_id,
        *_test_columns(report.rapid_test),
        reading.received_ns,
    )


def _status_values(reading: Reading, status: ScaleStatus) -> tuple[SqlValue, ...]:
    return (
        status.msg_id,
        int(status.online),
        int(status.will),
        _optional_bool(status.zero_ok),
        _optional_bool(status.seal_intact),
        None if status.calibration_due is None else date_to_int(status.calibration_due),
        reading.received_ns,
    )


# -- value conversions ---------------------------------------------------------


def date_to_int(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def int_to_date(value: int) -> date:
    return date(value // 10_000, value // 100 % 100, value % 100)


def _optional_bool(value: bool | None) -> int | None:
    return None if value is None else int(value)


def optional_bool(value: int | None) -> bool | None:
    return None if value is None else bool(value)
