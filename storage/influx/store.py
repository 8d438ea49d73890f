"""``InfluxStore``: the :class:`~storage.base.Store` on InfluxDB's v1 ``/write`` and ``/query``.

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
                                              certificate_no, rapid_test_passed,
                                              inhibition_permille, received_ns
scale_status    market, scale                 msg_id, online, will, zero_ok?, seal_intact?,
                                              calibration_due?, received_ns
dead_letter     market, device (, dup)        topic, reason, payload_b64, payload_size
msg_id_ledger   market, device                digest, received_ns? (time: the msg_id − 1)
==============  ============================  ==============================================

A point's fields become visible to readers one by one while a write is in
flight, so the row decoders treat a sale without all of its required fields
as not written yet and leave it out, rather than failing the read. A sale
without ``trace_status`` was written before sales were checked: it reads as
``unchecked`` (never as verified).

Point time is :func:`storage.records.point_time_ns` (device time to the
millisecond, ``msg_id`` in the sub-millisecond digits), so a replayed message
overwrites itself. Rows therefore report device time truncated to the
millisecond, and range bounds are compared at millisecond resolution; a Last
Will and dead letters are stamped with their arrival time in nanoseconds.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import replace
from datetime import date, datetime
from typing import Final

import httpx

from schemas.messages import Sale
from storage import msgids
from storage._exceptions import StoreQueryError, StoreRejected
from storage.base import Store
from storage.influx.client import InfluxClient, RetryPolicy, Row, Series
from storage.influx.influxql import (
    Column,
    Condition,
    Delete,
    ParamValue,
    Query,
    Select,
    SelectColumns,
    equals,
    not_equals,
    statements,
    time_before,
    time_from,
)
from storage.influx.lineprotocol import (
    MSG_ID_LEDGER,
    LineProtocolError,
    dead_letter_to_line,
    is_portable_tag_value,
    ledger_entry_to_line,
    msg_id_time,
    reading_to_line,
    sale_trace_status_line,
)
from storage.interfaces.devices import (
    STATUS_LOOKBACK_NS,
    STATUS_LOOKBACK_ROWS,
    ScaleStatusRow,
    statuses_in_force,
)
from storage.interfaces.footfall import GateCountRow
from storage.interfaces.prices import PriceRow, PromotionRow
from storage.interfaces.sales import SaleRow, SalesHourRow, SalesSummaryRow
from storage.interfaces.traceability import BatchBalanceRow, BatchRow, UnverifiedSalesRow
from storage.records import (
    UNREGISTERED,
    DeadLetter,
    Reading,
    dead_letter_ordinals,
    device_time,
    from_ns,
    permille_to_pct,
    reading_as_dead_letter,
    time_bound_ns,
    to_ns,
)
from storage.traceability import (
    LATE_BATCH_GRACE,
    LATE_BATCH_GRACE_NS,
    BatchKey,
    TraceStatus,
    batches_written,
    merge_batches,
    sale_statuses,
)

log = logging.getLogger(__name__)

#: How far before a batch's intake time :meth:`InfluxStore.sales_of_batch` looks,
#: because scale clocks drift and an intake station may report late: the grace
#: window of sale verification.
SALES_BEFORE_INTAKE: Final = LATE_BATCH_GRACE
#: Registered batches remembered for checking sales (see ``InfluxStore.write``).
_BATCH_CACHE: Final = 100_000
#: The fields every point of a measurement is written with. InfluxDB shows a point's
#: fields to readers one by one while it is written, so a row lacking one is a write in
#: flight: readers leave it out (it is there whole on the next read), never fail on it.
_WRITTEN_WITH: Final[Mapping[str, tuple[str, ...]]] = {
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
        "rapid_test_passed",
        "inhibition_permille",
        "received_ns",
    ),
    "scale_status": ("msg_id", "online", "will", "received_ns"),
    "dead_letter": ("topic", "reason", "payload_b64", "payload_size"),
}
#: A promotion's fields come together or not at all.
_PROMO_FIELDS: Final = ("promo_price_fen_per_kg", "promo_text", "promo_until_ns")
#: Newest-first reads of "the latest point per series" ask for this many, so that a
#: newest point still being written leaves the one before it to show.
_NEWEST_WITH_FALLBACK: Final = 2
REJECTED_PREFIX: Final = "store rejected: "

#: Lookups (ledger ranges, batches) per request: ~200 bytes of query each, well inside a
#: URL's limits.
_LOOKUPS_PER_REQUEST: Final = 200
#: Measurements whose device is a tag, and that tag (a price's screen is a field).
_DEVICE_TAGS: Final = (
    ("sale", "scale"),
    ("scale_status", "scale"),
    ("footfall", "gate"),
    ("batch", "station"),
)


# -- conversions -----------------------------------------------------------------------


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} is naive; the store takes timezone-aware datetimes")
    return moment


def _ns(moment: datetime) -> int:
    return to_ns(_aware(moment))


def _bound_ns(moment: datetime) -> int:
    """Range bound on point times for device times (see ``time_bound_ns``)."""
    return time_bound_ns(_aware(moment))


def _int(row: Row, column: str) -> int:
    value = row.get(column)
    if type(value) is not int:
        raise StoreQueryError(f"column {column!r} is {value!r}, expected an integer")
    return value


def _opt_int(row: Row, column: str) -> int | None:
    return None if row.get(column) is None else _int(row, column)


def _str(row: Row, column: str) -> str:
    value = row.get(column)
    if not isinstance(value, str):
        raise StoreQueryError(f"column {column!r} is {value!r}, expected a string")
    return value


def _bool(row: Row, column: str) -> bool:
    value = row.get(column)
    if not isinstance(value, bool):
        raise StoreQueryError(f"column {column!r} is {value!r}, expected a boolean")
    return value


def _opt_bool(row: Row, column: str) -> bool | None:
    return None if row.get(column) is None else _bool(row, column)


def _rows(series: Sequence[Series]) -> Iterator[Row]:
    """Rows with the series' GROUP BY tags merged in."""
    for one in series:
        for row in one.rows:
            yield {**one.tags, **row} if one.tags else row


#: How far apart in arrival the ledger entries of a device that carry their arrival are.
_ARRIVAL_MARK_NS: Final = 60 * 1_000_000_000


def _ledger_lines(entries: Sequence[msgids.LedgerEntry]) -> list[str]:
    """The entries' lines, with ``received_ns`` on one entry a minute per device.

    Pruning (``forget_msg_ids``) deletes a device's ids up to the newest entry
    that carries an arrival before the cutoff, so the unmarked entries after it
    are kept at most a minute longer than the window: never forgotten early.
    """
    marked_at: dict[tuple[str, str], int] = {}
    lines = []
    for entry in entries:
        device = (entry.market, entry.device)
        last = marked_at.get(device)
        mark = last is None or not 0 <= entry.received_ns - last < _ARRIVAL_MARK_NS
        if mark:
            marked_at[device] = entry.received_ns
        lines.append(ledger_entry_to_line(entry, with_arrival=mark))
    return lines


def _codes_named(readings: Sequence[Reading]) -> set[tuple[str, str]]:
    """The (market, trace code) each sale among ``readings`` names."""
    return {
        (reading.market, message.trace_code)
        for reading in readings
        if isinstance(message := reading.message, Sale)
    }


def _ledger_digests(series: Iterable[Series]) -> dict[msgids.MsgIdKey, int]:
    return {
        (_str(row, "market"), _str(row, "device"), _int(row, "time") + 1): _int(row, "digest")
        for row in _rows(list(series))  # time is the msg_id - 1: see lineprotocol.msg_id_time
    }


def _newest_batch_keys(series: Iterable[Series]) -> dict[tuple[str, str], BatchKey]:
    found: dict[tuple[str, str], BatchKey] = {}
    for row in _rows(list(series)):
        code = (_str(row, "market"), _str(row, "trace_code"))
        key = BatchKey(_str(row, "vendor"), _str(row, "plu"), _int(row, "time"))
        if code not in found or key.time_ns > found[code].time_ns:
            found[code] = key
    return found


def _is_whole(measurement: str, row: Row) -> bool:
    """False while the point's write is in flight: a field it is always written with is missing."""
    if any(row.get(name) is None for name in _WRITTEN_WITH[measurement]):
        return False
    if measurement == "price":
        promo = [row.get(name) is None for name in _PROMO_FIELDS]
        return all(promo) or not any(promo)
    return True


def _whole_rows(measurement: str, series: Sequence[Series]) -> Iterator[Row]:
    """The rows of points written whole (see :data:`_WRITTEN_WITH`)."""
    return (row for row in _rows(series) if _is_whole(measurement, row))


def _newest_whole_rows(measurement: str, series: Sequence[Series]) -> Iterator[Row]:
    """Per series of a newest-first read, its newest point written whole."""
    for one in series:
        rows = ({**one.tags, **row} for row in one.rows)
        newest = next((row for row in rows if _is_whole(measurement, row)), None)
        if newest is not None:
            yield newest


def _whole_sale_row(row: Row) -> SaleRow | None:
    """The sale, or None while a write of it is still in flight (a field is missing)."""
    return _sale_row(row) if _is_whole("sale", row) else None


def _trace_status(row: Row) -> TraceStatus:
    value = row.get("trace_status")
    if value is None:
        return TraceStatus.UNCHECKED
    try:
        return TraceStatus(_str(row, "trace_status"))
    except ValueError as exc:
        raise StoreQueryError(f"column 'trace_status' is {value!r}, not a status") from exc


def _sale_row(row: Row) -> SaleRow:
    return SaleRow(
        market=_str(row, "market"),
        scale=_str(row, "scale"),
        vendor=_str(row, "vendor"),
        plu=_str(row, "plu"),
        ts=device_time(_int(row, "time")),
        msg_id=_int(row, "msg_id"),
        weight_g=_int(row, "weight_g"),
        tare_g=_opt_int(row, "tare_g"),
        unit_price_fen_per_kg=_int(row, "unit_price_fen_per_kg"),
        total_fen=_int(row, "total_fen"),
        trace_code=_str(row, "trace_code"),
        received_ns=_int(row, "received_ns"),
        trace_status=_trace_status(row),
    )


def _price_row(row: Row) -> PriceRow:
    promo = None
    if row.get("promo_price_fen_per_kg") is not None:
        promo = PromotionRow(
            price_fen_per_kg=_int(row, "promo_price_fen_per_kg"),
            text=_str(row, "promo_text"),
            until=from_ns(_int(row, "promo_until_ns")),
        )
    return PriceRow(
        market=_str(row, "market"),
        vendor=_str(row, "vendor"),
        plu=_str(row, "plu"),
        screen=_str(row, "screen"),
        price_fen_per_kg=_int(row, "price_fen_per_kg"),
        promo=promo,
        ts=device_time(_int(row, "time")),
        msg_id=_int(row, "msg_id"),
    )


def _batch_row(row: Row) -> BatchRow:
    return BatchRow(
        market=_str(row, "market"),
        station=_str(row, "station"),
        vendor=_str(row, "vendor"),
        plu=_str(row, "plu"),
        trace_code=_str(row, "trace_code"),
        origin=_str(row, "origin"),
        supplier=_str(row, "supplier"),
        quantity_g=_int(row, "quantity_g"),
        certificate_no=_str(row, "certificate_no"),
        rapid_test_passed=_bool(row, "rapid_test_passed"),
        inhibition_pct=permille_to_pct(_int(row, "inhibition_permille")),
        ts=device_time(_int(row, "time")),
        msg_id=_int(row, "msg_id"),
        received_ns=_int(row, "received_ns"),
    )


def _gate_count_row(row: Row) -> GateCountRow:
    return GateCountRow(
        market=_str(row, "market"),
        gate=_str(row, "gate"),
        ts=device_time(_int(row, "time")),
        in_total=_int(row, "in_total"),
        out_total=_int(row, "out_total"),
    )


def _scale_status_row(row: Row) -> ScaleStatusRow:
    will = _bool(row, "will")
    time_ns = _int(row, "time")
    due = row.get("calibration_due")
    return ScaleStatusRow(
        market=_str(row, "market"),
        scale=_str(row, "scale"),
        # A will is stamped with its arrival time, which has no msg_id digits to drop.
        ts=from_ns(time_ns) if will else device_time(time_ns),
        online=_bool(row, "online"),
        will=will,
        zero_ok=_opt_bool(row, "zero_ok"),
        seal_intact=_opt_bool(row, "seal_intact"),
        calibration_due=None if due is None else date.fromisoformat(_str(row, "calibration_due")),
        received=from_ns(_int(row, "received_ns")),
    )


def _dead_letter(row: Row) -> DeadLetter:
    try:
        payload = base64.b64decode(_str(row, "payload_b64"), validate=True)
    except binascii.Error as exc:
        raise StoreQueryError(f"dead letter payload is not base64: {exc}") from exc
    return DeadLetter(
        received_ns=_int(row, "time"),
        topic=_str(row, "topic"),
        payload=payload,
        reason=_str(row, "reason"),
        market=_str(row, "market"),
        device=_str(row, "device"),
        payload_size=_int(row, "payload_size"),
    )


def rejected_reading(reading: Reading, detail: str) -> DeadLetter:
    """A reading the store refused, as a dead letter with its re-serialized payload."""
    return reading_as_dead_letter(reading, REJECTED_PREFIX + detail)


# -- the store ---------------------------------------------------------------------------


class InfluxStore(Store):
    """Readings in InfluxDB, through the v1 API that 1.x, 2.x and 3.x all serve.

    ``write`` sends lines in chunks of ``batch_lines``. When InfluxDB refuses a
    chunk (400) it is bisected until the refused lines are isolated: every good
    line is written, and only the refused readings come back as dead letters
    (also stored in ``dead_letter``). On 1.x a refused chunk is a partial write;
    rewriting its good lines is harmless because a point's identity is its
    series and timestamp. :class:`~storage._exceptions.StoreUnavailable` propagates
    so the caller keeps the data and retries; some chunks may already be
    written then, which a retry simply overwrites.
    """

    def __init__(
        self,
        url: str,
        database: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        retention_policy: str | None = None,
        msg_id_retention_policy: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        create_database: bool = False,
        batch_lines: int = 5000,
        retry: RetryPolicy | None = None,
    ) -> None:
        if batch_lines < 1:
            raise ValueError("batch_lines must be at least 1")
        self._database = database
        self._rp = retention_policy
        # The ledger's points are timed by msg_id (near 1970): a policy that drops old
        # points refuses them, so the ledger may live in a policy of its own that keeps
        # data forever (docs/influxdb-compatibility.md).
        self._ledger_rp = msg_id_retention_policy or retention_policy
        self._ledger_refused = False
        self._batch_keys: dict[tuple[str, str], BatchKey] = {}
        self._batch_lines = batch_lines
        self._client = InfluxClient(
            url,
            token=token,
            username=username,
            password=password,
            timeout=timeout,
            transport=transport,
            retry=retry,
        )
        if create_database:
            try:
                self._client.create_database(database)
                if msg_id_retention_policy is not None:
                    self._client.create_forever_retention_policy(database, msg_id_retention_policy)
            except BaseException:
                self._client.close()
                raise

    # -- writing -----------------------------------------------------------------------
    def write(
        self, readings: Sequence[Reading], dead_letters: Sequence[DeadLetter] = ()
    ) -> list[DeadLetter]:
        """See :meth:`Store.write`.

        Besides :class:`~storage._exceptions.StoreUnavailable`, raises
        :class:`StoreRejected` only if InfluxDB refuses a *dead letter* line (which
        the fixed ``dead_letter`` schema should make impossible); all other lines
        are written by then.
        """
        digests, batches = self._look_up(readings)
        claims = msgids.sort_claims(readings, digests)
        accepted = claims.accepted
        statuses = self._trace_statuses(accepted, batches)
        lines, sources, not_stored = _encode(accepted, statuses)
        for start in range(0, len(lines), self._batch_lines):
            chunk = lines[start : start + self._batch_lines]
            for index, detail in self._write_isolating(chunk):
                not_stored.append((sources[start + index], detail))
        not_written = {id(reading) for reading, _ in not_stored}
        written = [reading for reading in sources if id(reading) not in not_written]
        self._verify_late_sales(written)
        self._verify_if_batch_came_meanwhile(written, statuses, accepted)
        self._record_msg_ids(claims.new, [reading for reading, _ in not_stored])
        refused = [rejected_reading(reading, detail) for reading, detail in not_stored]
        refused += [
            reading_as_dead_letter(reading, msgids.REUSED_MSG_ID) for reading in claims.reused
        ]
        refused = [_storable(letter) for letter in refused]
        letters = [*map(_storable, dead_letters), *refused]
        if letters:
            self._write_dead_letters(letters)
        return refused

    def _look_up(
        self, readings: Sequence[Reading]
    ) -> tuple[dict[msgids.MsgIdKey, int], dict[tuple[str, str], BatchKey]]:
        """What a write must know first, in one request: the ledger's digests of the keys
        the readings claim, and the batches their sales name that are not known yet.

        A code without a batch is asked for again in every write that names it, so
        a batch another ingest process registered is found. (A query per code and
        one for the ledger cost the ingest benchmark a third of its rate.)
        """
        selects = self._ledger_selects(readings)
        unseen = {
            code
            for code in _codes_named(readings) - batches_written(readings).keys()
            if code not in self._batch_keys
        }
        batch_selects = self._batch_selects(unseen, first_number=len(selects))
        series = self._query_statements([*selects, *batch_selects])
        digests = _ledger_digests(one for one in series if one.name == MSG_ID_LEDGER)
        batches = _newest_batch_keys(one for one in series if one.name == "batch")
        if batches:
            self._remember_batches(batches)
        return digests, batches

    def _trace_statuses(
        self, readings: Sequence[Reading], looked_up: Mapping[tuple[str, str], BatchKey]
    ) -> dict[int, TraceStatus]:
        """Each sale's trace status, by index (see ``storage.traceability``).

        The newest record of each batch the sales name comes from this write, the
        batches just ``looked_up``, or the cache of the batches seen.
        """
        named = _codes_named(readings)
        if not named:
            return {}
        written = batches_written(readings)
        stored = {code: key for code in named if (key := self._batch_keys.get(code)) is not None}
        stored.update(looked_up)
        return sale_statuses(readings, merge_batches(stored, written))

    def _newest_batches(self, codes: Set[tuple[str, str]]) -> dict[tuple[str, str], BatchKey]:
        """The newest record of each (market, trace code) that has one, remembered."""
        found = _newest_batch_keys(self._query_statements(self._batch_selects(codes)))
        if found:
            self._remember_batches(found)
        return found

    def _batch_selects(self, codes: Set[tuple[str, str]], *, first_number: int = 0) -> list[Query]:
        """A newest-first statement per code: ``trace_code`` is a field, so each is its own scan."""
        return [
            Select(
                "batch",
                where=(
                    equals("market", market, param=f"market{number}"),
                    equals("trace_code", code, param=f"code{number}"),
                ),
                retention_policy=self._rp,
                newest_first=True,
                limit=1,
            ).query()
            for number, (market, code) in enumerate(sorted(codes), start=first_number)
        ]

    def _query_statements(self, selects: Sequence[Query]) -> list[Series]:
        """Run the statements, :data:`_LOOKUPS_PER_REQUEST` to a request."""
        series: list[Series] = []
        for start in range(0, len(selects), _LOOKUPS_PER_REQUEST):
            query = statements(selects[start : start + _LOOKUPS_PER_REQUEST])
            series += self._client.query(self._database, query)
        return series

    def _remember_batches(self, keys: Mapping[tuple[str, str], BatchKey]) -> None:
        if len(self._batch_keys) + len(keys) > _BATCH_CACHE:
            self._batch_keys.clear()  # rarely: a year of batches fits; start over, never grow
        self._batch_keys.update(merge_batches(self._batch_keys, keys))

    def _verify_late_sales(self, written: Sequence[Reading]) -> None:
        """Turn the sales each written batch was late for verified, on the same points.

        Lists the batch vendor's ``unknown_batch`` sales of its product naming it
        since the grace window (a field scan of those series) and rewrites only
        their ``trace_status`` field; InfluxDB merges it into each point.
        """
        batches = batches_written(written)
        if batches:
            self._remember_batches(batches)
            self._verify_sales_of(batches)

    def _verify_if_batch_came_meanwhile(
        self,
        written: Sequence[Reading],
        statuses: Mapping[int, TraceStatus],
        readings: Sequence[Reading],
    ) -> None:
        """Look again for the batches of the sales just written as ``unknown_batch``.

        Another ingest process may have written such a batch after this write
        looked for it and before these sales were stored; its own late-batch
        check then ran too early to see them. Each writer writing first and
        looking second means one of the two sees the other.
        """
        stored = {id(reading) for reading in written}
        unknown = {
            (reading.market, message.trace_code)
            for index, reading in enumerate(readings)
            if statuses.get(index) is TraceStatus.UNKNOWN_BATCH
            and id(reading) in stored
            and isinstance(message := reading.message, Sale)
        }
        found = self._newest_batches(unknown) if unknown else {}
        if found:
            self._verify_sales_of(found)

    def _verify_sales_of(self, batches: Mapping[tuple[str, str], BatchKey]) -> None:
        lines: list[str] = []
        for (market, trace_code), key in batches.items():
            series = self._select(
                "sale",
                equals("market", market),
                equals("vendor", key.vendor),
                equals("plu", key.plu),
                equals("trace_code", trace_code),
                equals("trace_status", TraceStatus.UNKNOWN_BATCH.value),
                time_from(key.time_ns - LATE_BATCH_GRACE_NS),
            )
            lines += [
                sale_trace_status_line(
                    {tag: _str(row, tag) for tag in ("market", "plu", "scale", "vendor")},
                    _int(row, "time"),
                    TraceStatus.VERIFIED,
                )
                for row in _rows(series)
            ]
        for start in range(0, len(lines), self._batch_lines):
            self._client.write(
                self._database, lines[start : start + self._batch_lines], retention_policy=self._rp
            )

    def _ledger_selects(self, readings: Sequence[Reading]) -> list[Query]:
        """Statements for the ledger's digests of the keys these readings claim.

        One per (market, device): a time range seek from its lowest to its
        highest msg_id in the write (InfluxQL has no OR of time ranges).
        """
        ranges: dict[tuple[str, str], tuple[int, int]] = {}
        for market, device, msg_id in msgids.ledger_keys(readings):
            low, high = ranges.get((market, device), (msg_id, msg_id))
            ranges[(market, device)] = (min(low, msg_id), max(high, msg_id))
        return [
            self._ledger_select(number, market, device, low, high)
            for number, ((market, device), (low, high)) in enumerate(ranges.items())
        ]

    def _ledger_select(self, number: int, market: str, device: str, low: int, high: int) -> Query:
        return Select(
            MSG_ID_LEDGER,
            where=(
                Condition("market", "=", f"market{number}", market),
                Condition("device", "=", f"device{number}", device),
                Condition("time", ">=", f"low{number}", msg_id_time(low)),
                Condition("time", "<=", f"high{number}", msg_id_time(high)),
            ),
            retention_policy=self._ledger_rp,
            group_by=("market", "device"),
        ).query()

    def _record_msg_ids(
        self, entries: Sequence[msgids.LedgerEntry], not_stored: Sequence[Reading]
    ) -> None:
        """Add the write's new ledger entries, after its readings, except refused ones.

        Without transactions two instances can both find a key unused and both
        write a reading with it (see docs/architecture.md); the ledger keeps the
        later digest then.
        """
        refused = {(r.market, r.device, r.message.msg_id) for r in not_stored}
        lines = _ledger_lines([e for e in entries if e.key not in refused])
        try:
            for start in range(0, len(lines), self._batch_lines):
                chunk = lines[start : start + self._batch_lines]
                self._client.write(self._database, chunk, retention_policy=self._ledger_rp)
        except StoreRejected as exc:
            self._on_ledger_refused(exc)
        else:
            if lines and self._ledger_refused:
                log.info("InfluxDB stores the msg_id ledger again")
                self._ledger_refused = False

    def _on_ledger_refused(self, exc: StoreRejected) -> None:
        """The readings are stored; only the memory of their msg_ids is not.

        Holding the readings back would stop ingest for the sake of a check, so
        they go on, and the operator is told once (until the ledger is written
        again) what to fix: typically a retention policy that drops the ledger's
        1970-timed points.
        """
        if self._ledger_refused:
            log.debug("InfluxDB still refuses the msg_id ledger: %s", exc.detail or exc)
            return
        self._ledger_refused = True
        log.error(
            "InfluxDB refuses the msg_id ledger (%s): reused msg_ids go undetected until it is "
            "stored; give it a retention policy that keeps data forever "
            "(STALLWATCH_INFLUX_MSG_ID_RETENTION_POLICY)",
            exc.detail or exc,
        )

    def forget_msg_ids(self, before: datetime) -> None:
        """See :meth:`Store.forget_msg_ids`: per device, up to its newest id that arrived before.

        The ledger's time is the msg_id, not an age, so for each device the
        highest msg_id that arrived before ``before`` is looked up (a field scan
        of the ledger) and everything up to it deleted. A device's ids increase
        with time, so that is what is older.
        """
        cutoff = (Condition("received_ns", "<", "before", _ns(before)),)
        newest_old = self._select(
            MSG_ID_LEDGER,
            *cutoff,
            group_by=("market", "device"),
            newest_first=True,
            limit=1,
            retention_policy=self._ledger_rp,
        )
        for row in _rows(newest_old):
            delete = Delete(
                MSG_ID_LEDGER,
                (
                    equals("market", _str(row, "market")),
                    equals("device", _str(row, "device")),
                    Condition("time", "<=", "through", _int(row, "time")),
                ),
            )
            self._client.execute(delete.query(), database=self._database)

    def _write_isolating(self, lines: list[str]) -> list[tuple[int, str]]:
        """Write ``lines``; return (index, server's reason) of each line it refuses.

        One request when all is well; k refused lines among n cost about
        2·k·log2(n) more, and never more than 2·n.
        """
        refused: list[tuple[int, str]] = []
        pending = [(0, len(lines))]
        while pending:
            low, high = pending.pop()
            try:
                self._client.write(self._database, lines[low:high], retention_policy=self._rp)
            except StoreRejected as exc:
                if high - low == 1:
                    refused.append((low, exc.detail))
                else:
                    middle = (low + high) // 2
                    pending += [(middle, high), (low, middle)]
        refused.sort()
        return refused

    def _write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        lines = _dead_letter_lines(letters)
        refused: list[tuple[int, str]] = []
        for start in range(0, len(lines), self._batch_lines):
            refused += self._write_isolating(lines[start : start + self._batch_lines])
        if refused:
            # A dead letter cannot itself be dead-lettered: say so loudly, after
            # everything else has been written.
            raise StoreRejected(
                f"InfluxDB refused {len(refused)} dead letter(s): {refused[0][1]}",
                detail=refused[0][1],
            )

    # -- querying ----------------------------------------------------------------------
    def _select(
        self,
        measurement: str,
        *where: Condition | None,
        group_by: tuple[str, ...] = (),
        newest_first: bool = False,
        limit: int | None = None,
        count_of: str | None = None,
        retention_policy: str | None = None,
    ) -> list[Series]:
        """One SELECT in the store's retention policy, or in ``retention_policy``."""
        select = Select(
            measurement,
            where=tuple(condition for condition in where if condition is not None),
            retention_policy=retention_policy or self._rp,
            count_of=count_of,
            group_by=group_by,
            newest_first=newest_first,
            limit=limit,
        )
        return self._client.query(self._database, select.query())

    def latest_prices(self, market: str) -> list[PriceRow]:
        # LAST(*) would pick each field's last value independently; the newest
        # point per series keeps a price and its promotion together.
        series = self._select(
            "price",
            equals("market", market),
            group_by=("vendor", "plu"),
            newest_first=True,
            limit=_NEWEST_WITH_FALLBACK,
        )
        rows = map(_price_row, _newest_whole_rows("price", series))
        return sorted(rows, key=lambda r: (r.vendor, r.plu))

    def price_history(
        self,
        market: str,
        start: datetime,
        end: datetime,
        *,
        plu: str | None = None,
        vendor: str | None = None,
    ) -> list[PriceRow]:
        series = self._select(
            "price",
            equals("market", market),
            _optional("plu", plu),
            _optional("vendor", vendor),
            *_device_range(start, end),
        )
        rows = map(_price_row, _whole_rows("price", series))
        return sorted(rows, key=lambda r: (r.ts, r.vendor, r.plu, r.msg_id))

    def prices_before(
        self, market: str, moment: datetime, *, plu: str | None = None
    ) -> list[PriceRow]:
        # The newest point per series (as in latest_prices) keeps a price and its promotion.
        series = self._select(
            "price",
            equals("market", market),
            _optional("plu", plu),
            time_before(_bound_ns(moment)),
            group_by=("vendor", "plu"),
            newest_first=True,
            limit=_NEWEST_WITH_FALLBACK,
        )
        rows = map(_price_row, _newest_whole_rows("price", series))
        return sorted(rows, key=lambda r: (r.vendor, r.plu))

    def sales(
        self,
        market: str,
        start: datetime,
        end: datetime,
        *,
        vendor: str | None = None,
        scale: str | None = None,
        plu: str | None = None,
    ) -> list[SaleRow]:
        series = self._select(
            "sale",
            equals("market", market),
            _optional("vendor", vendor),
            _optional("scale", scale),
            _optional("plu", plu),
            *_device_range(start, end),
        )
        return _sorted_sales(series)

    def sales_of_batch(self, market: str, trace_code: str) -> list[SaleRow]:
        """See :meth:`Store.sales_of_batch`: the batch's own sales.

        ``trace_code`` is a field (an unbounded id must not be a tag), so this is
        a field scan. When the batch is known the scan is narrowed to its
        vendor's series of that product, from :data:`SALES_BEFORE_INTAKE` before
        its intake; otherwise it covers every sale of the market.
        """
        batch = self.batch(market, trace_code)
        narrowing: tuple[Condition, ...] = ()
        if batch is not None:
            since = _ns(batch.ts - SALES_BEFORE_INTAKE)
            narrowing = (equals("vendor", batch.vendor), equals("plu", batch.plu), time_from(since))
        series = self._select(
            "sale", equals("market", market), equals("trace_code", trace_code), *narrowing
        )
        return _sorted_sales(series)

    def sale_by_receipt(self, market: str, scale: str, msg_id: int) -> SaleRow | None:
        """The sale with this ``msg_id`` (a field scan of that scale's series)."""
        series = self._select(
            "sale",
            equals("market", market),
            equals("scale", scale),
            equals("msg_id", msg_id),
            newest_first=True,
            limit=1,
        )
        rows = _sorted_sales(series)
        return rows[-1] if rows else None

    def unverified_sales(
        self, market: str, start: datetime, end: datetime
    ) -> list[UnverifiedSalesRow]:
        """See :meth:`Store.unverified_sales`: lists the status of those sales per vendor and scale.

        ``trace_status`` is a field, so this scans the field over the range and
        only the (rare) sales that did not check out travel; they are counted here.
        """
        series = self._select_columns(
            SelectColumns(
                "sale",
                columns=(Column("trace_status"),),
                where=(
                    equals("market", market),
                    not_equals("trace_status", TraceStatus.VERIFIED.value),
                    *_device_range(start, end),
                ),
                group_by=("vendor", "scale"),
            )
        )
        counts: dict[tuple[str, str, TraceStatus], int] = defaultdict(int)
        for row in _rows(series):
            counts[(_str(row, "vendor"), _str(row, "scale"), _trace_status(row))] += 1
        order = list(TraceStatus)
        return [
            UnverifiedSalesRow(market, vendor, scale, status, sales)
            for (vendor, scale, status), sales in sorted(
                counts.items(), key=lambda item: (*item[0][:2], order.index(item[0][2]))
            )
        ]

    def sales_summary(self, market: str, start: datetime, end: datetime) -> list[SalesSummaryRow]:
        """See :meth:`Store.sales_summary`: one ``COUNT``/``SUM`` query per vendor and PLU."""
        series = self._select_columns(
            SelectColumns(
                "sale",
                columns=(
                    Column("total_fen", "COUNT", "sales"),
                    Column("total_fen", "SUM", "total_fen"),
                    Column("weight_g", "SUM", "weight_g"),
                ),
                where=(equals("market", market), *_device_range(start, end)),
                group_by=("vendor", "plu"),
            )
        )
        summary = [
            SalesSummaryRow(
                market=market,
                vendor=one.tags.get("vendor", ""),
                plu=one.tags.get("plu", ""),
                sales=_int(row, "sales"),
                total_fen=_int(row, "total_fen"),
                weight_g=_int(row, "weight_g"),
            )
            for one in series
            for row in one.rows
            if row.get("sales")
        ]
        return sorted(summary, key=lambda r: (r.vendor, r.plu))

    def sales_by_hour(self, market: str, start: datetime, end: datetime) -> list[SalesHourRow]:
        """See :meth:`Store.sales_by_hour`: ``COUNT``/``SUM`` per ``time(1h)`` bucket.

        InfluxDB aligns the buckets to the epoch, so they are UTC hours, and the
        ``WHERE`` range clips the first and last.
        """
        series = self._select_columns(
            SelectColumns(
                "sale",
                columns=(
                    Column("total_fen", "COUNT", "transactions"),
                    Column("total_fen", "SUM", "turnover_fen"),
                    Column("weight_g", "SUM", "weight_g"),
                ),
                where=(equals("market", market), *_device_range(start, end)),
                every_s=3600,
            )
        )
        hours = [
            SalesHourRow(
                market=market,
                hour=from_ns(_int(row, "time")),
                transactions=_int(row, "transactions"),
                turnover_fen=_int(row, "turnover_fen"),
                weight_g=_int(row, "weight_g"),
            )
            for row in _rows(series)
            if row.get("transactions")
        ]
        return sorted(hours, key=lambda r: r.hour)

    def batch(self, market: str, trace_code: str) -> BatchRow | None:
        """The batch's newest record (``trace_code`` is a field: scans the market's batches)."""
        series = self._select(
            "batch",
            equals("market", market),
            equals("trace_code", trace_code),
            newest_first=True,
            limit=_NEWEST_WITH_FALLBACK,
        )
        rows = [_batch_row(row) for row in _newest_whole_rows("batch", series)]
        return max(rows, key=lambda r: r.ts) if rows else None

    def batches(
        self, market: str, start: datetime, end: datetime, *, vendor: str | None = None
    ) -> list[BatchRow]:
        series = self._select(
            "batch",
            equals("market", market),
            _optional("vendor", vendor),
            *_device_range(start, end),
        )
        rows = map(_batch_row, _whole_rows("batch", series))
        return sorted(rows, key=lambda r: (r.ts, r.station, r.msg_id))

    def batch_balances(self, market: str, start: datetime, end: datetime) -> list[BatchBalanceRow]:
        """See :meth:`Store.batch_balances`: the batches, and one query for their sales.

        ``trace_code`` is a field, so the market's sales since
        :data:`SALES_BEFORE_INTAKE` before ``start`` are listed (time, trace code
        and weight, per vendor and PLU) and added up here. A batch counts the
        sales of its own vendor and product from :data:`SALES_BEFORE_INTAKE`
        before its intake, the sales :meth:`sales_of_batch` finds.
        """
        batches = self.batches(market, start, end)
        if not batches:
            return []
        series = self._select_columns(
            SelectColumns(
                "sale",
                columns=(Column("trace_code"), Column("weight_g")),
                where=(equals("market", market), time_from(_ns(start - SALES_BEFORE_INTAKE))),
                group_by=("vendor", "plu"),
            )
        )
        sales: dict[tuple[str, str, str], list[tuple[int, int]]] = defaultdict(list)
        for row in _rows(series):
            if row.get("trace_code") is None or row.get("weight_g") is None:
                continue  # a sale whose write is still in flight
            key = (_str(row, "trace_code"), _str(row, "vendor"), _str(row, "plu"))
            sales[key].append((_int(row, "time"), _int(row, "weight_g")))
        return [
            _batch_balance(batch, sales[(batch.trace_code, batch.vendor, batch.plu)])
            for batch in batches
        ]

    def gate_counts(self, market: str, start: datetime, end: datetime) -> list[GateCountRow]:
        series = self._select("footfall", equals("market", market), *_device_range(start, end))
        rows = map(_gate_count_row, _whole_rows("footfall", series))
        return sorted(rows, key=lambda r: (r.gate, r.ts))

    def gate_counts_before(self, market: str, moment: datetime) -> list[GateCountRow]:
        # LAST(in_total), LAST(out_total) could come from different points; the
        # newest point per gate keeps the pair consistent.
        series = self._select(
            "footfall",
            equals("market", market),
            time_before(_bound_ns(moment)),
            group_by=("gate",),
            newest_first=True,
            limit=_NEWEST_WITH_FALLBACK,
        )
        rows = map(_gate_count_row, _newest_whole_rows("footfall", series))
        return sorted(rows, key=lambda r: r.gate)

    def scale_status(self, market: str) -> list[ScaleStatusRow]:
        # The newest STATUS_LOOKBACK_ROWS per scale, then those within STATUS_LOOKBACK
        # of its newest: the same candidates as SQLite's, in one request.
        series = self._select(
            "scale_status",
            equals("market", market),
            group_by=("scale",),
            newest_first=True,
            limit=STATUS_LOOKBACK_ROWS,
        )
        candidates: list[ScaleStatusRow] = []
        for one in series:
            rows = [_scale_status_row(row) for row in _whole_rows("scale_status", [one])]
            if rows:
                newest = max(to_ns(row.ts) for row in rows)
                candidates += [r for r in rows if to_ns(r.ts) >= newest - STATUS_LOOKBACK_NS]
        return statuses_in_force(candidates)

    def device_last_seen(self, market: str, since: datetime) -> dict[str, datetime]:
        """See :meth:`Store.device_last_seen`: the arrival of the newest point per series.

        A price's screen is a field, so the screens of the prices since ``since``
        are listed (two short columns) and the newest per screen kept here. A point
        whose write is in flight is passed over, as everywhere (``_WRITTEN_WITH``).
        """
        bounds = (equals("market", market), time_from(_bound_ns(since)))
        arrivals: dict[str, int] = {}

        def saw(device: str, received_ns: int) -> None:
            arrivals[device] = max(received_ns, arrivals.get(device, received_ns))

        for measurement, device_tag in _DEVICE_TAGS:
            # A Last Will is the broker's message, not the device's.
            not_a_will = equals("will", False) if measurement == "scale_status" else None
            latest = self._select(
                measurement,
                *bounds,
                not_a_will,
                group_by=(device_tag,),
                newest_first=True,
                limit=_NEWEST_WITH_FALLBACK,
            )
            for row in _newest_whole_rows(measurement, latest):
                saw(_str(row, device_tag), _int(row, "received_ns"))
        for screen, received_ns in self._newest_price_per_screen(bounds).items():
            saw(screen, received_ns)
        return {device: from_ns(arrivals[device]) for device in sorted(arrivals)}

    def _newest_price_per_screen(self, bounds: tuple[Condition, ...]) -> dict[str, int]:
        """The arrival of the newest price (by point time) of each screen within ``bounds``."""
        listed = self._select_columns(
            SelectColumns("price", columns=(Column("screen"), Column("received_ns")), where=bounds)
        )
        newest: dict[str, tuple[int, int]] = {}  # screen -> (point time, arrival)
        for row in _rows(listed):
            if row.get("screen") is None or row.get("received_ns") is None:
                continue  # a write in flight: whole on the next read
            screen, time_ns = _str(row, "screen"), _int(row, "time")
            if screen not in newest or time_ns > newest[screen][0]:
                newest[screen] = (time_ns, _int(row, "received_ns"))
        return {screen: received_ns for screen, (_, received_ns) in newest.items()}

    def dead_letters(
        self, start: datetime, end: datetime, *, market: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        if limit <= 0:
            return []
        series = self._select(
            "dead_letter",
            _optional("market", market),
            time_from(_ns(start)),
            time_before(_ns(end)),
            newest_first=True,
            limit=limit,
        )
        letters = map(_dead_letter, _whole_rows("dead_letter", series))
        return sorted(letters, key=lambda d: d.received_ns, reverse=True)[:limit]

    def message_counts(self, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
        """See :meth:`Store.message_counts`: a ``COUNT`` per device tag.

        A price's screen is a field, not a tag, so price points in the range are
        listed (one short column) and counted here.
        """
        bounds = _device_range(start, end)
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for measurement, device_tag in _DEVICE_TAGS:
            grouped = self._select(
                measurement, *bounds, count_of="msg_id", group_by=("market", device_tag)
            )
            for one in grouped:
                key = (one.tags.get("market", ""), one.tags.get(device_tag, ""))
                counts[key] += sum(_int(row, "count") for row in one.rows)
        screens = self._select_columns(
            SelectColumns("price", columns=(Column("screen"),), where=bounds, group_by=("market",))
        )
        for one in screens:
            for row in one.rows:
                counts[(one.tags.get("market", ""), _str(row, "screen"))] += 1
        return {key: count for key, count in counts.items() if count}

    def _select_columns(self, select: SelectColumns) -> list[Series]:
        if self._rp is not None:
            select = replace(select, retention_policy=self._rp)
        return self._client.query(self._database, select.query())

    def reject_counts(self, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
        series = self._select(
            "dead_letter",
            time_from(_ns(start)),
            time_before(_ns(end)),
            count_of="payload_size",
            group_by=("market", "device"),
        )
        counts: dict[tuple[str, str], int] = {}
        for one in series:
            key = (one.tags.get("market", ""), one.tags.get("device", ""))
            for row in one.rows:
                counts[key] = counts.get(key, 0) + _int(row, "count")
        return {key: count for key, count in counts.items() if count}

    # -- lifecycle ---------------------------------------------------------------------
    def ping(self) -> None:
        self._client.ping()

    def close(self) -> None:
        self._client.close()


#: A reading the store did not write, and why.
_NotStored = tuple[Reading, str]


def _encode(
    readings: Sequence[Reading], statuses: Mapping[int, TraceStatus]
) -> tuple[list[str], Sequence[Reading], list[_NotStored]]:
    """Lines for the readings, the readings they belong to, and those that cannot be encoded.

    ``statuses`` holds each sale's trace status by its index in ``readings``.
    """
    try:
        lines = [reading_to_line(reading, statuses.get(i)) for i, reading in enumerate(readings)]
    except LineProtocolError:
        # Rare (contract validation prevents it): redo one by one to find the
        # culprits, so the common case keeps its tight list comprehension.
        return _encode_one_by_one(readings, statuses)
    return lines, readings, []


def _encode_one_by_one(
    readings: Sequence[Reading], statuses: Mapping[int, TraceStatus]
) -> tuple[list[str], Sequence[Reading], list[_NotStored]]:
    lines: list[str] = []
    kept: list[Reading] = []
    refused: list[_NotStored] = []
    for index, reading in enumerate(readings):
        try:
            lines.append(reading_to_line(reading, statuses.get(index)))
        except LineProtocolError as exc:
            refused.append((reading, f"cannot encode as line protocol: {exc}"))
        else:
            kept.append(reading)
    return lines, kept, refused


def _dead_letter_lines(letters: Sequence[DeadLetter]) -> list[str]:
    """Lines for the letters; those sharing a point identity get a ``dup`` tag each.

    Only collisions within one call are seen; across calls a collision would
    need the same device rejected twice in the same nanosecond of arrival.
    """
    return [
        dead_letter_to_line(letter, duplicate=ordinal)
        for letter, ordinal in zip(letters, dead_letter_ordinals(letters), strict=True)
    ]


def _storable(letter: DeadLetter) -> DeadLetter:
    """The letter, or a copy with placeholder tags if its ids cannot be tags.

    The ids it claimed survive in the ``topic`` field.
    """
    if is_portable_tag_value(letter.market) and is_portable_tag_value(letter.device):
        return letter
    return replace(letter, market=UNREGISTERED, device=UNREGISTERED)


def _optional(column: str, value: ParamValue | None) -> Condition | None:
    return None if value is None else equals(column, value)


def _device_range(start: datetime, end: datetime) -> tuple[Condition, Condition]:
    return time_from(_bound_ns(start)), time_before(_bound_ns(end))


def _batch_balance(batch: BatchRow, sales: Sequence[tuple[int, int]]) -> BatchBalanceRow:
    """``batch`` with its ``sales`` (time, grams) from :data:`SALES_BEFORE_INTAKE` before intake."""
    since = _ns(batch.ts - SALES_BEFORE_INTAKE)
    counted = [(time_ns, weight_g) for time_ns, weight_g in sales if time_ns >= since]
    newest = max((time_ns for time_ns, _ in counted), default=None)
    return BatchBalanceRow.of(
        batch,
        sales=len(counted),
        sold_g=sum(weight_g for _, weight_g in counted),
        last_sale=None if newest is None else device_time(newest),
    )


def _sorted_sales(series: Sequence[Series]) -> list[SaleRow]:
    rows = [sale for sale in map(_whole_sale_row, _rows(series)) if sale is not None]
    return sorted(rows, key=lambda r: (r.ts, r.scale, r.msg_id))
