"""Where a trace code's and a receipt's points are, without trace codes or msg_ids as tags.

A trace code or a msg_id as a tag would make a series per code or receipt
(unbounded cardinality), and as a field it can only be scanned for. Two small
index measurements point at the raw points instead:

``trace_index`` (tags ``market``, ``bucket``; fields ``trace_code``, ``kind``,
``vendor``, ``plu``, ``scale`` (sales), ``point_ns``)
    An entry for every batch record and for every sale whose trace status is not
    verified (a verified sale is found through its batch: its vendor's series of
    the product, see ``queries.traceability``), so a sale naming an unknown code
    stays findable. ``bucket`` is the first two hex digits of the code's sha256:
    256 series per market, so a code's entries are one small series away. Time:
    the indexed point's millisecond, with a digest of (device, msg_id) in the
    sub-millisecond digits instead of the point's msg_id digits, so two points of
    different devices in the same millisecond (ids of the epoch-ms×1000+n kind
    agree there) do not overwrite each other's entry; ``point_ns`` is the point's
    exact time.

``receipt_index`` (tags ``market``, ``scale``; field ``point_ns``)
    An entry for one sale in about :data:`RECEIPT_EVERY`, chosen by a fixed
    multiplicative hash of its msg_id, so that consecutive ids, steps of 1000 and
    epoch-milliseconds×1000+n all get evenly spread entries. Time: msg_id − 1, as
    the msg_id ledger's (``lineprotocol.msg_id_time``), so the entries below and
    above an id are a time seek away; they bound the time range of the scale's
    series where that id's sale is, as long as a scale's msg_ids grow with its
    clock. Being timed near 1970, the entries live in the msg_id ledger's
    retention policy (a policy with a duration would refuse them).

Both are written with the readings (:func:`with_trace_entries` in the same
``/write`` as the points, :func:`receipt_lines` with the ledger's entries), and
built for the days stored before by :func:`index_day`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from schemas.messages import BatchIntake, Sale
from storage.influx.client import Row, Series
from storage.influx.influxql import Column, Condition, Query, Select, SelectColumns, equals
from storage.influx.lineprotocol import build_line, msg_id_time
from storage.influx.reader import Reader
from storage.influx.rows import int_column, str_column, tagged_rows
from storage.records import Reading, point_time_ns, to_ns
from storage.traceability import TraceStatus

TRACE_INDEX: Final = "trace_index"
RECEIPT_INDEX: Final = "receipt_index"

#: About one sale in this many gets a ``receipt_index`` entry.
RECEIPT_EVERY: Final = 64
#: 2⁶⁴ / φ, odd: Fibonacci hashing spreads any arithmetic progression of ids evenly.
_RECEIPT_MULTIPLIER: Final = 0x9E3779B97F4A7C15
_RECEIPT_SHIFT: Final = 64 - 6  # the top 6 bits of the product: 1 in 64
_MASK64: Final = 2**64 - 1

_NS_PER_MS: Final = 1_000_000
_KINDS: Final = ("batch", "sale")


def bucket(trace_code: str) -> str:
    """The code's ``trace_index`` series in its market: 2 hex digits of its sha256."""
    return hashlib.sha256(trace_code.encode("utf-8")).hexdigest()[:2]


def receipt_selected(msg_id: int) -> bool:
    """Whether the sale with ``msg_id`` gets a ``receipt_index`` entry (about 1 in 64)."""
    return ((msg_id * _RECEIPT_MULTIPLIER) & _MASK64) >> _RECEIPT_SHIFT == 0


def _entry_time(point_ns: int, device: str, msg_id: int) -> int:
    """The point's millisecond, and a digest of (device, msg_id) below it (see module)."""
    digest = hashlib.blake2b(f"{device}\n{msg_id}".encode(), digest_size=8).digest()
    return point_ns - point_ns % _NS_PER_MS + int.from_bytes(digest) % _NS_PER_MS


# -- lines -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """A ``trace_index`` entry: a batch record or a sale naming ``trace_code``."""

    market: str
    trace_code: str
    kind: str
    vendor: str
    plu: str
    #: the sale's scale; None for a batch
    scale: str | None
    point_ns: int

    def line(self, device: str, msg_id: int) -> str:
        fields: dict[str, int | str] = {
            "trace_code": self.trace_code,
            "kind": self.kind,
            "vendor": self.vendor,
            "plu": self.plu,
            "point_ns": self.point_ns,
        }
        if self.scale is not None:
            fields["scale"] = self.scale
        tags = {"market": self.market, "bucket": bucket(self.trace_code)}
        return build_line(TRACE_INDEX, tags, fields, _entry_time(self.point_ns, device, msg_id))


def receipt_line(market: str, scale: str, msg_id: int, point_ns: int) -> str:
    tags = {"market": market, "scale": scale}
    return build_line(RECEIPT_INDEX, tags, {"point_ns": point_ns}, msg_id_time(msg_id))


def _indexed(status: TraceStatus | None) -> bool:
    """Whether a sale with this trace status gets a ``trace_index`` entry (None: unchecked)."""
    return status is not TraceStatus.VERIFIED


def _trace_line(reading: Reading, status: TraceStatus | None) -> str | None:
    message = reading.message
    if isinstance(message, BatchIntake):
        kind, scale = "batch", None
    elif isinstance(message, Sale) and _indexed(status):
        kind, scale = "sale", reading.device
    else:
        return None
    entry = TraceEntry(
        reading.market,
        message.trace_code,
        kind,
        message.vendor,
        message.plu,
        scale,
        point_time_ns(reading),
    )
    return entry.line(reading.device, message.msg_id)


def with_trace_entries(
    lines: list[str],
    sources: Sequence[Reading],
    readings: Sequence[Reading],
    statuses: Mapping[int, TraceStatus],
) -> tuple[list[str], list[Reading]]:
    """``lines`` and their ``sources`` (the write's encoded readings), and their index entries.

    ``statuses`` holds each sale's trace status by its index in ``readings``.
    An entry goes in the same write as its point, with the point as its source:
    it carries only values the point's own line carries, so it is refused only
    with it.
    """
    encoded = {id(reading) for reading in sources}
    entries = [
        (line, reading)
        for index, reading in enumerate(readings)
        if id(reading) in encoded and (line := _trace_line(reading, statuses.get(index)))
    ]
    return [*lines, *(line for line, _ in entries)], [*sources, *(r for _, r in entries)]


def receipt_lines(written: Iterable[Reading]) -> list[str]:
    """The ``receipt_index`` entries of the written sales :func:`receipt_selected` picks."""
    return [
        receipt_line(reading.market, reading.device, message.msg_id, point_time_ns(reading))
        for reading in written
        if isinstance(message := reading.message, Sale) and receipt_selected(message.msg_id)
    ]


# -- reading the trace index -------------------------------------------------------------

_ENTRY_FIELDS: Final = ("trace_code", "kind", "vendor", "plu", "point_ns")


def trace_select(
    reader: Reader,
    market: str,
    trace_code: str,
    *,
    kind: str | None = None,
    number: int = 0,
    newest: int | None = None,
) -> Query:
    """The code's entries: one read of its bucket's series, filtered by ``trace_code``.

    ``number`` names the parameters, so several codes share a request;
    ``newest`` keeps that many newest entries only.
    """
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"no trace_index entries of kind {kind!r}")
    where = [
        equals("market", market, param=f"market{number}"),
        equals("bucket", bucket(trace_code), param=f"bucket{number}"),
        equals("trace_code", trace_code, param=f"code{number}"),
    ]
    if kind is not None:
        where.append(equals("kind", kind, param=f"kind{number}"))
    return Select(
        TRACE_INDEX,
        where=tuple(where),
        retention_policy=reader.retention_policy,
        newest_first=newest is not None,
        limit=newest,
    ).query()


def _trace_entry(row: Row) -> TraceEntry | None:
    """The entry, or None while its write is in flight (a field is missing)."""
    if any(row.get(name) is None for name in _ENTRY_FIELDS):
        return None
    scale = row.get("scale")
    return TraceEntry(
        market=str_column(row, "market"),
        trace_code=str_column(row, "trace_code"),
        kind=str_column(row, "kind"),
        vendor=str_column(row, "vendor"),
        plu=str_column(row, "plu"),
        scale=None if scale is None else str_column(row, "scale"),
        point_ns=int_column(row, "point_ns"),
    )


def trace_entries(series: Iterable[Series]) -> list[TraceEntry]:
    """The whole entries in answers to :func:`trace_select`."""
    found = (_trace_entry(row) for row in tagged_rows([s for s in series if s.name == TRACE_INDEX]))
    return [entry for entry in found if entry is not None]


# -- reading the receipt index -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceiptBounds:
    """The point times of the receipt entries at or below and at or above a msg_id."""

    floor_ns: int | None
    ceiling_ns: int | None


def receipt_bounds(receipts: Reader, market: str, scale: str, msg_id: int) -> ReceiptBounds:
    """The scale's entries nearest ``msg_id`` on either side: one request, two statements."""
    at = msg_id_time(msg_id)

    def nearest(side: str, operator: str, newest_first: bool) -> Query:
        return Select(
            RECEIPT_INDEX,
            where=(
                Condition("market", "=", f"market_{side}", market),
                Condition("scale", "=", f"scale_{side}", scale),
                Condition("time", operator, f"at_{side}", at),
            ),
            retention_policy=receipts.retention_policy,
            newest_first=newest_first,
            limit=1,
        ).query()

    series = receipts.statements([nearest("floor", "<=", True), nearest("ceiling", ">=", False)])
    # Both answers are rows of one series (the client merges them): their times,
    # the ids − 1, tell which is which.
    entries = [
        (int_column(row, "time"), int_column(row, "point_ns"))
        for row in tagged_rows(series)
        if row.get("point_ns") is not None
    ]
    return ReceiptBounds(
        floor_ns=max(((t, p) for t, p in entries if t <= at), default=(None, None))[1],
        ceiling_ns=min(((t, p) for t, p in entries if t >= at), default=(None, None))[1],
    )


# -- building the indexes of days stored before ------------------------------------------


@dataclass(frozen=True, slots=True)
class IndexedDay:
    """What :func:`index_day` wrote: entries of ``trace_index`` and ``receipt_index``."""

    day: date
    trace_entries: int
    receipt_entries: int


def _day_range(day: date) -> tuple[Condition, Condition]:
    start = datetime.combine(day, time(), tzinfo=UTC)
    return (
        Condition("time", ">=", "start", to_ns(start)),
        Condition("time", "<", "end", to_ns(start + timedelta(days=1))),
    )


def index_day(
    reader: Reader,
    market: str,
    day: date,
    *,
    receipts: Reader | None = None,
    batch_lines: int = 5000,
) -> IndexedDay:
    """Build both indexes of ``market``'s points of UTC ``day`` from its raw points.

    Reads the day's batches and sales (the fields the entries need, per
    series) and writes their entries: rewriting an entry is idempotent, so a day
    may be indexed again, or while ingest writes to it. ``receipts`` is the
    reader of the msg_id ledger's retention policy (``reader`` if None).
    A sale without ``trace_status`` (written before sales were checked) is
    indexed like an unverified one.
    """
    receipts = reader if receipts is None else receipts
    trace = _batch_entry_lines(reader, market, day)
    receipt: list[str] = []
    for row in _day_rows(reader, "sale", ("msg_id", "trace_code", "trace_status"), market, day):
        if row.get("msg_id") is None or row.get("trace_code") is None:
            continue  # a sale whose write is still in flight: the write path indexes it
        scale, msg_id, point_ns = str_column(row, "scale"), int_column(row, "msg_id"), row["time"]
        assert isinstance(point_ns, int)
        if receipt_selected(msg_id):
            receipt.append(receipt_line(market, scale, msg_id, point_ns))
        status = row.get("trace_status")
        if status != TraceStatus.VERIFIED.value:
            entry = TraceEntry(
                market,
                str_column(row, "trace_code"),
                "sale",
                str_column(row, "vendor"),
                str_column(row, "plu"),
                scale,
                point_ns,
            )
            trace.append(entry.line(scale, msg_id))
    for start in range(0, len(trace), batch_lines):
        reader.write(trace[start : start + batch_lines])
    for start in range(0, len(receipt), batch_lines):
        receipts.write(receipt[start : start + batch_lines])
    return IndexedDay(day, len(trace), len(receipt))


def _batch_entry_lines(reader: Reader, market: str, day: date) -> list[str]:
    lines = []
    for row in _day_rows(reader, "batch", ("msg_id", "trace_code"), market, day):
        if row.get("msg_id") is None or row.get("trace_code") is None:
            continue
        point_ns = int_column(row, "time")
        entry = TraceEntry(
            market,
            str_column(row, "trace_code"),
            "batch",
            str_column(row, "vendor"),
            str_column(row, "plu"),
            None,
            point_ns,
        )
        lines.append(entry.line(str_column(row, "station"), int_column(row, "msg_id")))
    return lines


def _day_rows(
    reader: Reader, measurement: str, fields: Sequence[str], market: str, day: date
) -> list[Row]:
    device = "scale" if measurement == "sale" else "station"
    series = reader.select_columns(
        SelectColumns(
            measurement,
            columns=tuple(Column(name) for name in fields),
            where=(equals("market", market), *_day_range(day)),
            group_by=(device, "vendor", "plu"),
        )
    )
    return list(tagged_rows(series))
