"""InfluxDB line protocol: escaping, a plain line builder, and stallwatch's schema.

Escaping follows the line protocol reference (1.x, 2.x and 3.x agree):

* measurement: comma and space are escaped;
* tag keys, tag values and field keys: comma, equals sign and space are escaped;
* string field values are double-quoted; backslash and double quote are escaped.

Characters that the generations treat differently are refused instead of
escaped, so a line means the same thing on every server:

* backslashes in measurements, keys and tag values (1.x keeps ``\\\\`` literally,
  2.x/3.x unescape it, and a trailing backslash breaks the line everywhere);
* control characters there (a newline ends the line, 3.x splits on tabs);
* names that start with ``_`` (reserved by 2.x) and the key ``time``.

A newline inside a *string field value* needs no escape: every parser (1.x/2.x
Go ``scanLine``, 3.x Rust ``split_lines``) only ends a line on a newline that
is outside double quotes, so the raw newline round-trips. Writing ``\\n``
instead would be stored as a backslash and an ``n``: string fields only
unescape ``\\\\`` and ``\\"`` (checked against influxd 1.6.7 in the tests).

Every tag value comes from the topic or the validated payload and is one of a
bounded set (markets, devices, vendors, PLUs), so escaped tag values are
memoised; that keeps the per-point cost close to an f-string.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Final

from schemas.messages import (
    BatchIntake,
    DeviceMessage,
    GateCount,
    PriceSet,
    RapidTestReport,
    RapidTestResult,
    Sale,
    ScaleStatus,
)
from storage.msgids import LedgerEntry
from storage.records import DeadLetter, Reading, pct_to_permille, to_ns
from storage.traceability import TraceStatus

FieldValue = int | bool | str

#: Largest dead-letter payload kept in the store. Base64 grows it by 4/3, and
#: InfluxDB documents 64 KiB as the limit of a string field.
MAX_DEAD_LETTER_PAYLOAD: Final = 48 * 1024

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_CACHE_LIMIT: Final = 65_536

_MEASUREMENT_ESCAPES: Final = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESCAPES: Final = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_UNPORTABLE: Final = re.compile(r"[\x00-\x1f\x7f\\]")


class LineProtocolError(ValueError):
    """A value cannot be expressed in line protocol without changing its meaning."""


def _check_name_chars(kind: str, value: str) -> None:
    if not value:
        raise LineProtocolError(f"{kind} must not be empty")
    if _UNPORTABLE.search(value):
        raise LineProtocolError(f"{kind} {value[:80]!r} contains a backslash or control character")


def _check_key(kind: str, key: str) -> None:
    _check_name_chars(kind, key)
    if key.startswith("_"):
        raise LineProtocolError(f"{kind} {key!r} starts with '_', which InfluxDB 2.x reserves")
    if key == "time":
        raise LineProtocolError(f"{kind} 'time' is reserved by InfluxDB")


def _escape_measurement(name: str) -> str:
    _check_key("measurement", name)
    return name.translate(_MEASUREMENT_ESCAPES)


def _escape_key(key: str) -> str:
    _check_key("key", key)
    return key.translate(_KEY_ESCAPES)


def _escape_tag_value(value: str) -> str:
    _check_name_chars("tag value", value)
    return value.translate(_KEY_ESCAPES)


# Names and tag values are bounded by design (schema constants, registry ids),
# so their escaped forms are memoised. A full cache means something is minting
# values; it then starts over rather than grow without limit.
_MEASUREMENT_CACHE: dict[str, str] = {}
_KEY_CACHE: dict[str, str] = {}
_TAG_CACHE: dict[str, str] = {}


def _memoised(cache: dict[str, str], value: str, escape: Callable[[str], str]) -> str:
    escaped = escape(value)
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[value] = escaped
    return escaped


def escape_measurement(name: str) -> str:
    cached = _MEASUREMENT_CACHE.get(name)
    return (
        cached if cached is not None else _memoised(_MEASUREMENT_CACHE, name, _escape_measurement)
    )


def escape_key(key: str) -> str:
    """Escape a tag key or field key."""
    cached = _KEY_CACHE.get(key)
    return cached if cached is not None else _memoised(_KEY_CACHE, key, _escape_key)


def escape_tag_value(value: str) -> str:
    cached = _TAG_CACHE.get(value)
    return cached if cached is not None else _memoised(_TAG_CACHE, value, _escape_tag_value)


def series_tags(key: str) -> dict[str, str]:
    """The tags of a series key as ``SHOW SERIES`` lists it (``measurement,k=v,...``),
    unescaped (the inverse of :func:`escape_key` and :func:`escape_tag_value`)."""
    tags: dict[str, str] = {}
    name: list[str] = []
    value: list[str] | None = None  # None while in the measurement or a tag's key
    in_measurement = True
    escaped = False

    def close() -> None:
        if not in_measurement and value is not None:
            tags["".join(name)] = "".join(value)

    for char in key:
        if escaped:
            (name if value is None else value).append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            close()
            name, value, in_measurement = [], None, False
        elif char == "=" and value is None and not in_measurement:
            value = []
        else:
            (name if value is None else value).append(char)
    close()
    return tags


def is_portable_tag_value(value: str) -> bool:
    """Whether :func:`escape_tag_value` accepts ``value``."""
    try:
        escape_tag_value(value)
    except LineProtocolError:
        return False
    return True


def quote_string_field(value: str) -> str:
    """A string field value, double-quoted, with ``\\`` and ``"`` escaped."""
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'


def format_field_value(value: FieldValue) -> str:
    """Integers get the ``i`` suffix, booleans are ``true``/``false``, strings are quoted.

    Floats are refused: money and weights are integers in this project.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise LineProtocolError(f"integer field {value} does not fit in 64 bits")
        return f"{value}i"
    if isinstance(value, str):
        return quote_string_field(value)
    raise LineProtocolError(f"unsupported field value type {type(value).__name__}")


def build_line(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], time_ns: int
) -> str:
    """One line of line protocol; tags are sorted by key as InfluxDB recommends.

    Tags with an empty value are left out (InfluxDB has no empty tag values).
    """
    if not fields:
        raise LineProtocolError("a point needs at least one field")
    tag_set = "".join(
        [f",{escape_key(k)}={escape_tag_value(v)}" for k, v in sorted(tags.items()) if v]
    )
    field_set = ",".join([f"{escape_key(k)}={format_field_value(v)}" for k, v in fields.items()])
    return f"{escape_measurement(measurement)}{tag_set} {field_set} {time_ns}"


# -- stallwatch's schema ---------------------------------------------------------
#
# One hand-written f-string per message type: the ingest forwarder writes ~5000
# readings per call, and a generic dict-based builder costs several times more.
# Tag keys are listed in sorted order. Field keys are constants that need no
# escaping. Tags hold only bounded ids from the topic and payload.

_tag = escape_tag_value
_str = quote_string_field


def _sale_line(reading: Reading, m: Sale, trace_status: TraceStatus | None) -> str:
    tare = "" if m.tare_g is None else f"tare_g={m.tare_g}i,"
    status = "" if trace_status is None else f'trace_status="{trace_status.value}",'
    return (
        f"sale,market={_tag(reading.market)},plu={_tag(m.plu)},scale={_tag(reading.device)},"
        f"vendor={_tag(m.vendor)} msg_id={m.msg_id}i,weight_g={m.weight_g}i,{tare}"
        f"unit_price_fen_per_kg={m.unit_price_fen_per_kg}i,total_fen={m.total_fen}i,"
        f"trace_code={_str(m.trace_code)},{status}received_ns={reading.received_ns}i "
        f"{reading.time_ns}"
    )


def sale_trace_status_line(tags: Mapping[str, str], time_ns: int, status: TraceStatus) -> str:
    """Only the ``trace_status`` field of a stored sale (series ``tags``, point ``time_ns``).

    InfluxDB merges it into the existing point: the other fields stay.
    """
    return build_line("sale", tags, {"trace_status": status.value}, time_ns)


def _price_line(reading: Reading, m: PriceSet) -> str:
    promo = m.promo
    promo_fields = (
        ""
        if promo is None
        else f"promo_price_fen_per_kg={promo.price_fen_per_kg}i,promo_text={_str(promo.text)},"
        f"promo_until_ns={to_ns(promo.until)}i,"
    )
    return (
        f"price,market={_tag(reading.market)},plu={_tag(m.plu)},vendor={_tag(m.vendor)} "
        f"screen={_str(reading.device)},msg_id={m.msg_id}i,price_fen_per_kg={m.price_fen_per_kg}i,"
        f"{promo_fields}received_ns={reading.received_ns}i {reading.time_ns}"
    )


def _footfall_line(reading: Reading, m: GateCount) -> str:
    return (
        f"footfall,gate={_tag(reading.device)},market={_tag(reading.market)} "
        f"msg_id={m.msg_id}i,in_total={m.in_total}i,out_total={m.out_total}i,"
        f"received_ns={reading.received_ns}i {reading.time_ns}"
    )


def inhibition_permille(pct: Decimal) -> int:
    """Tenths of a percent (:func:`pct_to_permille`); too fine a value is a LineProtocolError."""
    try:
        return pct_to_permille(pct)
    except ValueError as exc:
        raise LineProtocolError(str(exc)) from exc


def _batch_line(reading: Reading, m: BatchIntake) -> str:
    # A batch not tested at intake has neither test field (readers take both or neither).
    test = ""
    if m.rapid_test is not None:
        passed = "true" if m.rapid_test.result is RapidTestResult.PASS else "false"
        test = (
            f"rapid_test_passed={passed},"
            f"inhibition_permille={inhibition_permille(m.rapid_test.inhibition_pct)}i,"
        )
    return (
        f"batch,market={_tag(reading.market)},plu={_tag(m.plu)},station={_tag(reading.device)},"
        f"vendor={_tag(m.vendor)} msg_id={m.msg_id}i,trace_code={_str(m.trace_code)},"
        f"origin={_str(m.origin)},supplier={_str(m.supplier)},quantity_g={m.quantity_g}i,"
        f"certificate_no={_str(m.certificate_no)},{test}"
        f"received_ns={reading.received_ns}i {reading.time_ns}"
    )


def _rapid_test_line(reading: Reading, m: RapidTestReport) -> str:
    passed = "true" if m.rapid_test.result is RapidTestResult.PASS else "false"
    return (
        f"rapid_test,market={_tag(reading.market)},plu={_tag(m.plu)},"
        f"station={_tag(reading.device)},vendor={_tag(m.vendor)} msg_id={m.msg_id}i,"
        f"trace_code={_str(m.trace_code)},passed={passed},"
        f"inhibition_permille={inhibition_permille(m.rapid_test.inhibition_pct)}i,"
        f"received_ns={reading.received_ns}i {reading.time_ns}"
    )


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _scale_status_line(reading: Reading, m: ScaleStatus) -> str:
    optional = ""
    if m.zero_ok is not None:
        optional += f"zero_ok={_bool(m.zero_ok)},"
    if m.seal_intact is not None:
        optional += f"seal_intact={_bool(m.seal_intact)},"
    if m.calibration_due is not None:
        optional += f'calibration_due="{m.calibration_due.isoformat()}",'
    return (
        f"scale_status,market={_tag(reading.market)},scale={_tag(reading.device)} "
        f"msg_id={m.msg_id}i,online={_bool(m.online)},will={_bool(m.will)},{optional}"
        f"received_ns={reading.received_ns}i {reading.time_ns}"
    )


_LINE_BUILDERS: Final[dict[type[DeviceMessage], Callable[[Reading, DeviceMessage], str]]] = {
    PriceSet: _price_line,  # type: ignore[dict-item]
    GateCount: _footfall_line,  # type: ignore[dict-item]
    BatchIntake: _batch_line,  # type: ignore[dict-item]
    RapidTestReport: _rapid_test_line,  # type: ignore[dict-item]
    ScaleStatus: _scale_status_line,  # type: ignore[dict-item]
}


def reading_to_line(reading: Reading, trace_status: TraceStatus | None = None) -> str:
    """The line protocol for one reading; its timestamp is :func:`point_time_ns`.

    A sale carries ``trace_status`` as a field when given (the store checks the
    sale first, see ``storage.traceability``). It is a field and not a tag
    although it has few values: a tag is part of the point's identity, and a
    late batch changes the status of a sale already stored, which must
    overwrite that point, not add a second one in another series.

    Raises :class:`LineProtocolError` if a tag value cannot be written portably
    (never the case for readings that passed contract validation).
    """
    message = reading.message
    if isinstance(message, Sale):
        return _sale_line(reading, message, trace_status)
    return _LINE_BUILDERS[type(message)](reading, message)


def dead_letter_to_line(letter: DeadLetter, *, duplicate: int = 0) -> str:
    """The ``dead_letter`` point; stamped with the arrival time.

    A dead letter's identity is its market, device and arrival nanosecond, and
    ``duplicate``, its ordinal among the letters of one write sharing those
    (``storage.records.dead_letter_ordinals``): > 0 adds a small ``dup`` tag so
    that they stay separate points, while the same write again overwrites them.
    The raw payload is stored base64-encoded, cut to :data:`MAX_DEAD_LETTER_PAYLOAD`
    bytes; ``payload_size`` keeps the size of the original.
    """
    payload_b64 = base64.b64encode(letter.payload[:MAX_DEAD_LETTER_PAYLOAD]).decode("ascii")
    dup = f",dup={duplicate}" if duplicate else ""
    return (
        f"dead_letter,device={_tag(letter.device)}{dup},market={_tag(letter.market)} "
        f"topic={_str(letter.topic)},reason={_str(letter.reason)},"
        f'payload_b64="{payload_b64}",payload_size={letter.payload_size}i {letter.received_ns}'
    )


#: Measurement of the msg_id ledger (``storage.msgids``).
MSG_ID_LEDGER: Final = "msg_id_ledger"


def msg_id_time(msg_id: int) -> int:
    """The ledger point's time for ``msg_id``: the id itself, shifted by one.

    A time index seek per device and id range is what the check needs, and an
    id cannot be a tag (unbounded series). InfluxDB's largest timestamp is
    2⁶³ − 2, so the shift keeps every contract id (0 ≤ id < 2⁶³) exact.
    """
    return msg_id - 1


def ledger_entry_to_line(entry: LedgerEntry, *, with_arrival: bool = True) -> str:
    """The ledger point of one (market, device, msg_id): the first content's digest.

    ``received_ns`` is what pruning looks for; the writer sets it on one entry a
    minute per device (``MsgIdLedger.record``), since a second field on
    every entry cost InfluxDB a tenth of the ingest benchmark's rate.
    """
    arrival = f",received_ns={entry.received_ns}i" if with_arrival else ""
    return (
        f"{MSG_ID_LEDGER},device={_tag(entry.device)},market={_tag(entry.market)} "
        f"digest={entry.digest}i{arrival} {msg_id_time(entry.msg_id)}"
    )
