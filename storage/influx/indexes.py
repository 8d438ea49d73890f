"""Where a trace code's and a receipt's points are, without trace codes or msg_ids as tags.

A trace code or a msg_id as a tag would make a series per code or receipt
(unbounded cardinality), and as a field it can only be scanned for. Two small
index measurements point at the raw points instead:

``trace_index`` (tags ``market``, ``bucket``, ``kind``; fields ``trace_code``,
``vendor``, ``plu``, and ``point_ns`` (batches) or ``scale`` and ``day_ns`` (sales))
    ``bucket`` is the first two hex digits of the code's sha256 and ``kind`` is
    ``batch`` or ``sale``: 512 series per market, so a code's entries are one
    small series away whatever the market's history.

    An entry for every batch record, timed by the batch point's millisecond
    with a digest of (device, msg_id) in the sub-millisecond digits instead of
    the point's msg_id digits, so two points of different devices in the same
    millisecond (ids of the epoch-ms×1000+n kind agree there) do not overwrite
    each other's entry; ``point_ns`` is the point's exact time.

    An entry for each (scale, vendor, product, UTC day) with sales naming the
    code whose trace status is not verified, so a sale naming an unknown code
    stays findable: its scale's series of the product that day. Verified sales
    are found through their batch (its vendor's series of the product, see
    ``queries.traceability``). One entry per day and not per sale: a scale
    printing an unregistered code on every sale would otherwise double the
    points ingest writes. Timed by the day's start plus a digest of the rest, so
    every write naming the same ones rewrites the same entry.

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
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from schemas.messages import BatchIntake, Sale
from storage.influx.client import Row, Series
from storage.influx.influxql import Column, Condition, Query, Select, SelectColumns, equals
from storage.influx.lineprotocol import build_line, msg_id_time
from storage.influx.reader import Reader
from storage.influx.rows import int_column, str_column, tagged_rows
from storage.records import Reading, to_ns
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
_NS_PER_DAY: Final = 86_400 * 1_000_000_000
_KINDS: Final = ("batch", "sale")


def bucket(trace_code: str) -> str:
    """The code's ``trace_index`` series in its market: 2 hex digits of its sha256."""
    return hashlib.sha256(trace_code.encode("utf-8")).hexdigest()[:2]


def receipt_selected(msg_id: int) -> bool:
    """Whether the sale with ``msg_id`` gets a ``receipt_index`` entry (about 1 in 64)."""
    return ((msg_id * _RECEIPT_MULTIPLIER) & _MASK64) >> _RECEIPT_SHIFT == 0


def _digest(*parts: object) -> int:
    text = "\n".join(map(str, parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest())


def _entry_time(point_ns: int, device: str, msg_id: int) -> int:
    """The point's millisecond, and a digest of (device, msg_id) below it (see module)."""
    return point_ns - point_ns % _NS_PER_MS + _digest(device, msg_id) % _NS_PER_MS


# -- lines -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """A ``trace_index`` entry: a batch record, or a day of a scale's sales naming the code."""

    market: str
    trace_code: str
    kind: str
    vendor: str
    plu: str
    #: the sales' scale; None for a batch
    scale: str | None
    #: a batch: its point's time (field ``point_ns``); sales: the start of their UTC day
    #: (field ``day_ns``)
    at_ns: int

    def line(self, device: str = "", msg_id: int = 0) -> str:
        """The entry's line; a batch's names the ``device`` and ``msg_id`` of its point."""
        fields: dict[str, int | str] = {
            "trace_code": self.trace_code,
            "vendor": self.vendor,
            "plu": self.plu,
        }
        if self.scale is None:
            fields["point_ns"] = self.at_ns
            time_ns = _entry_time(self.at_ns, device, msg_id)
        else:
            fields["scale"] = self.scale
            fields["day_ns"] = self.at_ns
            time_ns = self.at_ns + _digest(self.trace_code, self.scale, self.vendor, self.plu) % (
                _NS_PER_DAY
            )
        tags = {"market": self.market, "bucket": bucket(self.trace_code), "kind": self.kind}
        return build_line(TRACE_INDEX, tags, fields, time_ns)


def receipt_line(market: str, scale: str, msg_id: int, point_ns: int) -> str:
    tags = {"market": market, "scale": scale}
    return build_line(RECEIPT_INDEX, tags, {"point_ns": point_ns}, msg_id_time(msg_id))


def day_start_ns(point_ns: int) -> int:
    return point_ns - point_ns % _NS_PER_DAY


@dataclass(frozen=True, slots=True)
class Indexed:
    """A write's lines and their sources, index entries included."""

    lines: list[str]
    sources: list[Reading]
    #: the sale entries among them, with their sources (see :class:`SaleEntriesWritten`)
    sale_entries: list[tuple[str, Reading]] = field(default_factory=list)


class SaleEntriesWritten:
    """The sale entries one writer has written, so its later writes do not send them again.

    A scale printing an unregistered code names the same entry in every write of
    the day, and each was one more line influxd parsed and merged onto itself
    (in the ingest benchmark, where every sale names such a code, 300 lines in
    every write of 5,000 sales). Bounded: when full it starts over, which only
    costs writing some entries once more.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._limit = limit
        self._lines: set[str] = set()

    def __contains__(self, line: object) -> bool:
        return line in self._lines

    def remember(self, lines: Iterable[str]) -> None:
        """``lines`` are stored (their write succeeded)."""
        if len(self._lines) > self._limit:
            self._lines.clear()
        self._lines.update(lines)


def with_trace_entries(
    lines: list[str],
    sources: Sequence[Reading],
    readings: Sequence[Reading],
    statuses: Mapping[int, TraceStatus],
    *,
    written_before: Container[str] = frozenset(),
) -> Indexed:
    """``lines`` and their ``sources`` (the write's encoded readings), and their index entries
    but the sale entries ``written_before``.

    ``statuses`` holds each sale's trace status by its index in ``readings``.
    An entry goes in the same write as its point(s), with a point as its source:
    it carries only values the point's own line carries, so it is refused only
    with it. Sales share the entry of their scale, product, code and day, so a
    write of sales naming an unregistered code adds a line or two per scale.
    """
    encoded = None if sources is readings else {id(reading) for reading in sources}
    added: list[tuple[str, Reading]] = []
    # per (market, code, scale, vendor, PLU): the first sale's reading and the sales' times
    unverified: dict[tuple[str, str, str, str, str], tuple[Reading, list[int]]] = {}
    for index, reading in enumerate(readings):
        message = reading.message
        if encoded is not None and id(reading) not in encoded:
            continue
        if isinstance(message, Sale):
            if statuses.get(index) is TraceStatus.VERIFIED:
                continue  # found through its batch
            key = (reading.market, message.trace_code, reading.device, message.vendor, message.plu)
            held = unverified.get(key)
            if held is None:
                unverified[key] = held = (reading, [])
            held[1].append(reading.time_ns)
        elif isinstance(message, BatchIntake):
            entry = TraceEntry(
                reading.market,
                message.trace_code,
                "batch",
                message.vendor,
                message.plu,
                None,
                reading.time_ns,
            )
            added.append((entry.line(reading.device, message.msg_id), reading))
    sale_entries: list[tuple[str, Reading]] = []
    for (market, code, scale, vendor, plu), (first, times) in unverified.items():
        for day_ns in _days_of(times):
            line = TraceEntry(market, code, "sale", vendor, plu, scale, day_ns).line()
            if line not in written_before:
                sale_entries.append((line, first))
    added += sale_entries
    return Indexed(
        [*lines, *(line for line, _ in added)], [*sources, *(r for _, r in added)], sale_entries
    )


def _days_of(times_ns: Sequence[int]) -> set[int]:
    """The starts of the UTC days of the point times; the earliest and the latest
    usually share a day."""
    earliest, latest = day_start_ns(min(times_ns)), day_start_ns(max(times_ns))
    if earliest == latest:
        return {earliest}
    return {day_start_ns(time_ns) for time_ns in times_ns}


def receipt_lines(written: Iterable[Reading]) -> list[str]:
    """The ``receipt_index`` entries of the written sales :func:`receipt_selected` picks.

    A reading may be listed twice (as the source of its point and of an index
    entry): it gets one entry.
    """
    lines = {
        id(reading): receipt_line(reading.market, reading.device, message.msg_id, reading.time_ns)
        for reading in written
        if isinstance(message := reading.message, Sale) and receipt_selected(message.msg_id)
    }
    return list(lines.values())


# -- reading the trace index -------------------------------------------------------------

_ENTRY_FIELDS: Final = ("trace_code", "kind", "vendor", "plu")


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
        retention_policy=reader.policy_for(TRACE_INDEX, market),
        newest_first=newest is not None,
        limit=newest,
    ).query()


def _trace_entry(row: Row) -> TraceEntry | None:
    """The entry, or None while its write is in flight (a field is missing)."""
    if any(row.get(name) is None for name in _ENTRY_FIELDS):
        return None
    kind = str_column(row, "kind")
    at = "day_ns" if kind == "sale" else "point_ns"
    if row.get(at) is None or (kind == "sale" and row.get("scale") is None):
        return None
    return TraceEntry(
        market=str_column(row, "market"),
        trace_code=str_column(row, "trace_code"),
        kind=kind,
        vendor=str_column(row, "vendor"),
        plu=str_column(row, "plu"),
        scale=str_column(row, "scale") if kind == "sale" else None,
        at_ns=int_column(row, at),
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
    sales: set[TraceEntry] = set()
    for row in _day_rows(reader, "sale", ("msg_id", "trace_code", "trace_status"), market, day):
        if row.get("msg_id") is None or row.get("trace_code") is None:
            continue  # a sale whose write is still in flight: the write path indexes it
        scale, msg_id, point_ns = str_column(row, "scale"), int_column(row, "msg_id"), row["time"]
        assert isinstance(point_ns, int)
        if receipt_selected(msg_id):
            receipt.append(receipt_line(market, scale, msg_id, point_ns))
        if row.get("trace_status") != TraceStatus.VERIFIED.value:
            sales.add(
                TraceEntry(
                    market,
                    str_column(row, "trace_code"),
                    "sale",
                    str_column(row, "vendor"),
                    str_column(row, "plu"),
                    scale,
                    day_start_ns(point_ns),
                )
            )
    trace += [entry.line() for entry in sales]
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
