"""Hourly rollups on InfluxDB: marks written with the raw points, settled from raw.

Why not continuous queries or increments (docs/influxdb-compatibility.md): CQs
exist only on 1.x and miss points later than their resample window (a device
replaying a backlog); increments without transactions double-count or lose
when a crash falls between a raw write and its increment.

Instead, **marks + settle**:

* :meth:`Rollups.mark_lines` gives ``Writer.write`` a tiny ``rollup_mark`` point
  per bucket a write touches, sent in the same request as the raw points (last,
  so a write that fails is retried whole, marks included). Tags ``market`` and
  ``kind``; fields name the bucket: ``hour_ns`` (``sale``, ``footfall``) or the
  batch's ``vendor``, ``plu`` and ``trace_code`` (``batch``). Time: the writer's
  clock, one nanosecond apart, never reused by one store object.
* :meth:`Rollups.settle` reads the marks since the persisted watermark minus
  :data:`SETTLE_SLACK_NS`, recomputes each marked bucket **from the raw points**
  with aggregate queries (statements batched into few requests), writes the
  rollup points (a point overwrites itself: idempotent), then advances the
  watermark. A crash anywhere redoes work; a redelivery re-marks and recomputes;
  two ingest instances converge because a settle after the last write reads
  all raw points. The slack also covers a write whose points are still becoming
  visible when its mark is read (InfluxDB shows a write's points one by one).
  A settle every few seconds reads the same marks again for the whole slack, so
  a ``Rollups`` object recomputes a mark's bucket only twice: when it first
  sees the mark, and once more when the mark is :data:`_SECOND_PASS_AFTER_NS`
  old, by which time every point written with it is visible. A mark of its own
  writer whose write has returned (:meth:`Rollups.written`) needs one pass only:
  all of that write's points are visible then, and the points of other writes
  in the bucket have marks of their own.

Rollup measurements (bounded tags only):

==================  ============================  ========================================
measurement         tags                          fields (time)
==================  ============================  ========================================
sale_hourly         market, scale, vendor, plu    transactions, total_fen, weight_g (hour)
scale_sale_hourly   market, vendor, scale         transactions, total_fen, weight_g (hour)
market_sale_hourly  market                        transactions, total_fen, weight_g (hour)
footfall_hourly     market, gate                  readings, people_in, people_out (hour)
batch_sold          market, station, vendor, plu  sales, sold_g, trace_code, first_sale_ns?,
                                                  last_sale_ns?, quantity_g,
                                                  rapid_test_passed?, alert (the batch
                                                  point's time)
==================  ============================  ========================================

``batch_sold`` repeats its batch record's quantity and test result (none for a
batch not tested at intake, which has not failed), and ``alert``
says whether the batch failed its test and sold or sold beyond its quantity, so
that the dashboard's alerts ask for the few such points of a week and not for a
week's 12,000 batches (``BatchBalanceRow.needs_alert``). Points written before
those fields existed (format 1) are rebuilt by ``stallwatch store backfill``;
until then readers see that a range holds some and read the balances whole.

``scale_sale_hourly`` sums ``sale_hourly`` over products: a day of a 300-vendor market
is ~300 series where ``sale_hourly`` has ~2,000, and InfluxDB 1.x costs per series and
field read, so the vendors' day (``Store.sales_by_scale``) reads this one. Every settle
of an hour writes all of the hour's scales, from the same raw sums (no query more).
Points written before it existed (format 2) are rebuilt by ``stallwatch store
backfill``; until then readers see that its hours do not add up to the market's and
read ``sale_hourly`` instead.

A bucket of ``sale_hourly`` that lost all its sales (never, short of a delete)
is written as zeros; readers skip rows without transactions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, NamedTuple

from schemas.messages import BatchIntake, GateCount, Sale
from storage._exceptions import StoreError, StoreUnavailable
from storage.footfall import counter_increase
from storage.hours import HOUR_NS, hour_of
from storage.influx.client import Row, Series
from storage.influx.indexes import TraceEntry, trace_entries, trace_select
from storage.influx.influxql import (
    Column,
    Condition,
    Delete,
    Query,
    Select,
    SelectColumns,
    quote_ident,
)
from storage.influx.lineprotocol import build_line, is_portable_tag_value
from storage.influx.reader import Reader
from storage.influx.routing import market_of
from storage.influx.rows import (
    NEWEST_WITH_FALLBACK,
    int_column,
    optional_bool_column,
    str_column,
    tagged_rows,
    whole_rows,
)
from storage.records import Reading, device_time, time_bound_ns
from storage.traceability import LATE_BATCH_GRACE, BatchKey, TraceStatus

log = logging.getLogger(__name__)

ROLLUP_MARK: Final = "rollup_mark"
ROLLUP_WATERMARK: Final = "rollup_watermark"
SALE_HOURLY: Final = "sale_hourly"
MARKET_SALE_HOURLY: Final = "market_sale_hourly"
SCALE_SALE_HOURLY: Final = "scale_sale_hourly"
FOOTFALL_HOURLY: Final = "footfall_hourly"
BATCH_SOLD: Final = "batch_sold"
#: Beside each ``batch_sold`` point, at its time, in a series per market and intake
#: station: the ``alert`` flag and the record's vendor and PLU. ``batch_alerts`` finds
#: the flagged balances in these few series; filtering ``batch_sold`` on the flag made
#: InfluxDB 1.x open a cursor on every batch series of the range (~8,000 a week of a
#: 300-vendor market, 80-180 ms) for a handful of alerts.
BATCH_ALERT: Final = "batch_alert"
BACKFILL_PROGRESS: Final = "backfill_progress"
#: The format of the rollup points: 2 added ``batch_sold``'s record fields and ``alert``,
#: 3 ``scale_sale_hourly``, 4 ``batch_alert``. A backfill checkpoint of an older format
#: does not count (the backfill starts over).
ROLLUP_FORMAT: Final = 4
#: "Every rollup point in this database is of :data:`ROLLUP_FORMAT`" (field ``format``):
#: written when a database is found holding no raw points yet, and when a backfill has
#: rebuilt every day. Readers then skip the censuses that find points of an older format,
#: each a count over every series it reads (``Rollups.all_of_format``).
ROLLUP_FORMAT_COMPLETE: Final = "rollup_format"
#: A database not known to be all of the format is asked again after this long.
_FORMAT_RECHECK_NS: Final = 60 * 1_000_000_000
#: Per market and kind of bucket, the hour before which the raw points are expired
#: (written by the retention pass): such buckets are never recomputed from raw again.
ROLLUP_EXPIRED: Final = "rollup_expired"

#: How far before the watermark each settle reads marks again: the clock skew
#: tolerated between ingest instances, and time for a write's points to become
#: visible. A mark ahead of the settler's clock keeps the watermark at its clock.
SETTLE_SLACK_NS: Final = 5 * 60 * 1_000_000_000
#: A mark this old (by the settler's clock) is recomputed a second and last time.
_SECOND_PASS_AFTER_NS: Final = 60 * 1_000_000_000
#: Marks and watermarks older than this behind the watermark are deleted, hourly.
_KEEP_MARKS_NS: Final = HOUR_NS
DAY_NS: Final = 24 * HOUR_NS
#: Statements per request of a settle (answers are matched to statements by their
#: ``statement_id``, which counts from 0 in each request). A busy hour's sums cost
#: influxd up to 0.3 s (5,000 sales over 1,600 series); at 100 statements (33 hours
#: of sales) a fast-forward's settle took 10 s a request, the client's timeout, and
#: failed on every retry while the machine was busy. 24 are eight hours, ~2.5 s.
_STATEMENTS_PER_REQUEST: Final = 24

#: Statuses that say a sale's code names no registered batch: a recomputed hour's
#: sales with another status have their batches recounted. A sale whose batch comes
#: later is counted when that batch's own write marks it.
_NO_BATCH: Final = frozenset({TraceStatus.UNKNOWN_BATCH.value, TraceStatus.UNCHECKED.value})


class Kind(StrEnum):
    SALE = "sale"
    FOOTFALL = "footfall"
    BATCH = "batch"


class Bucket(NamedTuple):
    """What a mark names: an hour of a market (sales, footfall) or a batch code of a
    vendor's product (the batch records and the sales that may be theirs)."""

    kind: Kind
    market: str
    hour_ns: int = 0
    vendor: str = ""
    plu: str = ""
    trace_code: str = ""


def buckets_of(readings: Sequence[Reading]) -> set[Bucket]:
    """The buckets the readings touch: the hours of their sales and gate counts, and the
    codes of their batch records.

    A sale marks only its hour: the settle finds the batches an hour's sales name
    when it lists them (a mark per batch sold made 290,000 marks in 5 minutes of a
    fast-forward, and hundreds of lines in every write).

    Runs on every write (5000 readings a call in the ingest benchmark), so the
    hour comes from the reading's point time, worked out once per reading, and
    each (market, hour) is turned into a bucket once.
    """
    sale_hours: set[tuple[str, int]] = set()
    gate_hours: set[tuple[str, int]] = set()
    buckets: set[Bucket] = set()
    for reading in readings:
        message = reading.message
        if isinstance(message, Sale):
            sale_hours.add((reading.market, reading.time_ns // HOUR_NS))
        elif isinstance(message, GateCount):
            gate_hours.add((reading.market, reading.time_ns // HOUR_NS))
        elif isinstance(message, BatchIntake):
            buckets.add(_batch(reading.market, message.vendor, message.plu, message.trace_code))
    for kind, hours in ((Kind.SALE, sale_hours), (Kind.FOOTFALL, gate_hours)):
        buckets.update(Bucket(kind, market, hour * HOUR_NS) for market, hour in hours)
    # A market that cannot be a tag is refused as a line too (see writer._storable).
    return {bucket for bucket in buckets if is_portable_tag_value(bucket.market)}


def _batch(market: str, vendor: str, plu: str, code: str) -> Bucket:
    return Bucket(Kind.BATCH, market, vendor=vendor, plu=plu, trace_code=code)


def batch_buckets(batches: Mapping[tuple[str, str], BatchKey]) -> set[Bucket]:
    """The buckets of batches by (market, trace code)."""
    return {_batch(market, key.vendor, key.plu, code) for (market, code), key in batches.items()}


def mark_line(bucket: Bucket, time_ns: int) -> str:
    fields: dict[str, int | str]
    if bucket.kind is Kind.BATCH:
        fields = {"vendor": bucket.vendor, "plu": bucket.plu, "trace_code": bucket.trace_code}
    else:
        fields = {"hour_ns": bucket.hour_ns}
    return build_line(
        ROLLUP_MARK, {"market": bucket.market, "kind": bucket.kind.value}, fields, time_ns
    )


def _bucket_of_mark(row: Row) -> Bucket | None:
    """The bucket a stored mark names, or None for one still being written."""
    try:
        kind = Kind(str(row.get("kind")))
    except ValueError:
        return None
    market = row.get("market")
    if not isinstance(market, str):
        return None
    if kind is Kind.BATCH:
        vendor, plu, code = row.get("vendor"), row.get("plu"), row.get("trace_code")
        if isinstance(vendor, str) and isinstance(plu, str) and isinstance(code, str):
            return _batch(market, vendor, plu, code)
        return None
    hour_ns = row.get("hour_ns")
    return Bucket(kind, market, hour_ns) if type(hour_ns) is int else None


class _Params:
    """Unique parameter names for the statements of one request."""

    def __init__(self) -> None:
        self._count = 0

    def __call__(self, column: str, operator: str, value: int | str) -> Condition:
        self._count += 1
        return Condition(column, operator, f"p{self._count}", value)


@dataclass(frozen=True, slots=True)
class _Batch:
    """A stored batch record: its series tags and point time."""

    station: str
    vendor: str
    plu: str
    time_ns: int
    quantity_g: int
    #: None: not tested at intake
    rapid_test_passed: bool | None

    @property
    def sales_since_ns(self) -> int:
        """Its sales' first point time: the grace window before its (device) intake time."""
        return time_bound_ns(device_time(self.time_ns) - LATE_BATCH_GRACE)


#: A mark as a settle sees it: its time and what it names.
_MarkId = tuple[int, Bucket]


@dataclass(frozen=True, slots=True)
class Marks:
    """A write's mark lines, and the marks they are (for :meth:`Rollups.written`)."""

    lines: list[str]
    ids: tuple[_MarkId, ...]


class Rollups:
    """Marks for ``Writer.write``, and the settle pass, through ``reader``."""

    def __init__(
        self, reader: Reader, batch_lines: int, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self._reader = reader
        self._batch_lines = batch_lines
        self._clock = clock
        self._last_mark_ns = 0
        self._pruned_at_ns: int | None = None
        self._all_of_format = False
        self._format_checked_ns: int | None = None
        #: marks this object recomputed at first sight, and for the last time
        self._seen: set[_MarkId] = set()
        self._done: set[_MarkId] = set()
        #: marks of this object's own writes that returned; the writer's thread adds
        #: to it while a settle may read it on another (the forwarder's retention pass)
        self._written: set[_MarkId] = set()
        self._written_lock = threading.Lock()

    # -- marks ---------------------------------------------------------------------

    def mark_lines(self, readings: Sequence[Reading]) -> Marks:
        """One mark per bucket the readings touch, one nanosecond apart."""
        return self.marks_for(buckets_of(readings))

    def marks_for(self, buckets: Iterable[Bucket]) -> Marks:
        ordered = sorted(buckets)
        if not ordered:
            return Marks([], ())
        first = max(self._clock(), self._last_mark_ns + 1)
        self._last_mark_ns = first + len(ordered) - 1
        ids = tuple((first + i, bucket) for i, bucket in enumerate(ordered))
        return Marks([mark_line(bucket, time_ns) for time_ns, bucket in ids], ids)

    def written(self, marks: Marks) -> None:
        """``marks`` were written, with every raw point they were made for: a settle
        recomputes their buckets once (the module's docstring)."""
        with self._written_lock:
            self._written.update(marks.ids)

    # -- settle --------------------------------------------------------------------

    def settle(self) -> int:
        """See :meth:`Store.settle_rollups`; returns the number of buckets recomputed."""
        now = self._clock()
        watermark = self._watermark()
        since = None if watermark is None else watermark - SETTLE_SLACK_NS
        marked = self._marked_since(since, now)
        buckets = self._with_raw_kept(marked.buckets) if marked.buckets else marked.buckets
        if buckets:
            self._recompute(buckets)
        # Only now, their buckets rewritten: a settle that fails part-way (a timeout)
        # leaves them to the next, which must not take them for done.
        self._seen, self._done = marked.seen, marked.done
        newest = marked.newest
        if newest is None:
            return 0
        advanced = min(newest, now)
        if watermark is None or advanced > watermark:
            self._write([build_line(ROLLUP_WATERMARK, {}, {"settled_ns": now}, advanced)])
            watermark = advanced
        self._prune(watermark, now)
        return len(buckets)

    def record_expiry(self, market: str, kind: Kind, before_ns: int) -> None:
        """Raw points of ``market``'s ``kind`` buckets before ``before_ns`` are (being) deleted.

        Written by the retention pass before it deletes: a bucket of an expired
        hour marked afterwards (a reading arriving late by years) must not be
        recomputed from the little raw left, which would shrink its rollup.
        """
        tags = {"market": market, "kind": kind.value}
        self._write([build_line(ROLLUP_EXPIRED, tags, {"before_ns": before_ns}, self._clock())])

    def _with_raw_kept(self, buckets: set[Bucket]) -> set[Bucket]:
        """The buckets whose hour's raw points are not expired (batches: all)."""
        series = self._reader.select(
            ROLLUP_EXPIRED, group_by=("market", "kind"), newest_first=True, limit=1
        )
        expired = {
            (str_column(row, "market"), str_column(row, "kind")): int_column(row, "before_ns")
            for row in tagged_rows(series)
        }
        if not expired:
            return buckets
        return {
            bucket
            for bucket in buckets
            if bucket.kind is Kind.BATCH
            or bucket.hour_ns >= expired.get((bucket.market, bucket.kind.value), bucket.hour_ns)
        }

    def _watermark(self) -> int | None:
        series = self._reader.select(ROLLUP_WATERMARK, newest_first=True, limit=1)
        rows = list(tagged_rows(series))
        return int_column(rows[0], "time") if rows else None

    def _marked_since(self, since_ns: int | None, now: int) -> _Marked:
        """The buckets to recompute of the marks since ``since_ns``, the newest mark's time,
        and the marks to remember as seen and as done once those buckets are rewritten.

        A mark counts at first sight and once more when it is
        :data:`_SECOND_PASS_AFTER_NS` old; in between, settles skip it (see the module).
        """
        where = None if since_ns is None else Condition("time", ">=", "since", since_ns)
        series = self._reader.select(ROLLUP_MARK, where)
        written = self._own_written_since(since_ns)
        second_pass_before = now - _SECOND_PASS_AFTER_NS
        buckets: set[Bucket] = set()
        newest: int | None = None
        seen: set[_MarkId] = set()
        done: set[_MarkId] = set()
        for row in tagged_rows(series):
            bucket = _bucket_of_mark(row)
            if bucket is None:
                continue
            time_ns = int_column(row, "time")
            newest = time_ns if newest is None else max(newest, time_ns)
            mark = (time_ns, bucket)
            seen.add(mark)
            if mark in self._done:
                done.add(mark)
            elif mark in written:
                buckets.add(bucket)
                done.add(mark)
            elif mark not in self._seen:
                buckets.add(bucket)
            elif time_ns <= second_pass_before:
                buckets.add(bucket)
                done.add(mark)
        # Only the marks still in the window are remembered.
        return _Marked(buckets, newest, seen, done)

    def _own_written_since(self, since_ns: int | None) -> set[_MarkId]:
        """A copy of the own marks written, forgetting those before ``since_ns`` (no
        settle reads them again)."""
        with self._written_lock:
            if since_ns is not None:
                self._written = {mark for mark in self._written if mark[0] >= since_ns}
            return set(self._written)

    def _write(self, lines: Sequence[str]) -> None:
        for start in range(0, len(lines), self._batch_lines):
            self._reader.write(lines[start : start + self._batch_lines])

    def _prune(self, watermark: int, now: int) -> None:
        """Hourly, delete the marks and watermarks no settle reads again."""
        if self._pruned_at_ns is not None and now - self._pruned_at_ns < HOUR_NS:
            return
        self._pruned_at_ns = now
        before = watermark - SETTLE_SLACK_NS - _KEEP_MARKS_NS
        for measurement in (ROLLUP_MARK, ROLLUP_WATERMARK):
            delete = Delete(measurement, (Condition("time", "<", "before", before),))
            try:
                self._reader.client.execute(delete.query(), database=self._reader.database)
            except StoreUnavailable:
                raise
            except StoreError as exc:
                # Only 1.x serves DELETE over the v1 API: on 2.x/3.x marks stay (small
                # points, one per bucket and write) and the settle goes on.
                log.warning("cannot delete old %s points (%s); they stay", measurement, exc)
                return

    def _statements(self, queries: Sequence[Query]) -> list[list[Series]]:
        """The answers to ``queries``, one list of series per statement, in order."""
        answers: list[list[Series]] = [[] for _ in queries]
        for first in range(0, len(queries), _STATEMENTS_PER_REQUEST):
            chunk = queries[first : first + _STATEMENTS_PER_REQUEST]
            for one in self._reader.statements(chunk):
                answers[first + one.statement_id].append(one)
        return answers

    def _select(
        self,
        measurement: str,
        *where: Condition,
        group_by: tuple[str, ...] = (),
        newest_first: bool = False,
        limit: int | None = None,
    ) -> Query:
        """A ``SELECT *`` in its market's retention policy, for a batch of statements."""
        return Select(
            measurement,
            where=where,
            retention_policy=self._reader.policy_for(measurement, market_of(where)),
            group_by=group_by,
            newest_first=newest_first,
            limit=limit,
        ).query()

    # -- sales ---------------------------------------------------------------------

    def _sale_lines(self, buckets: Sequence[Bucket]) -> tuple[list[str], set[Bucket]]:
        """Per (market, hour): the raw sums per scale, vendor and PLU, and the stored rollup;
        and the batches the hours' sales name (see :func:`buckets_of`). Three statements an
        hour: the sums and the stored rollup answer a row per group however many sales the
        hour holds (a replayed backlog, the ingest benchmark's 200,000), and only the sales
        whose code names a batch are listed for their codes."""
        if not buckets:
            return [], set()
        param = _Params()
        queries: list[Query] = []
        for bucket in buckets:
            market, start = bucket.market, bucket.hour_ns
            queries.append(_raw_sums(_hour_of(param, bucket), self._reader))
            stored = (param("market", "=", market), param("time", "=", start))
            queries.append(_listed(SALE_HOURLY, stored, _SUM_FIELDS, self._reader))
            naming = tuple(param("trace_status", "!=", status) for status in sorted(_NO_BATCH))
            where = (*_hour_of(param, bucket), *naming)
            queries.append(_listed("sale", where, ("trace_code",), self._reader))
        answers = self._statements(queries)
        lines: list[str] = []
        sold: set[Bucket] = set()
        for number, bucket in enumerate(buckets):
            raw = _raw_sums_by_group(answers[3 * number])
            stored_sums = _stored_sums_by_group(answers[3 * number + 1])
            lines += _sale_hourly_lines(bucket, raw, stored_sums)
            sold |= _batches_named(bucket.market, answers[3 * number + 2])
        return lines, sold

    # -- footfall ------------------------------------------------------------------

    def _footfall_lines(self, buckets: Sequence[Bucket]) -> list[str]:
        """Per (market, hour) and gate: readings and the increases over each one's predecessor.

        A reading that arrived out of order changes its successor's increase, which
        may lie in a later hour: the hour of the first reading after each recomputed
        hour is recomputed too (a second request, when there is one).
        """
        if not buckets:
            return []
        hours, successors = self._footfall_hours(buckets, chase=True)
        extra = sorted(successors - set(buckets))
        if extra:
            more, _ = self._footfall_hours(extra, chase=False)
            hours.update(more)
        return [
            build_line(
                FOOTFALL_HOURLY,
                {"market": market, "gate": gate},
                {"readings": totals[0], "people_in": totals[1], "people_out": totals[2]},
                hour_ns,
            )
            for (market, gate, hour_ns), totals in sorted(hours.items())
        ]

    def _footfall_hours(
        self, buckets: Sequence[Bucket], *, chase: bool
    ) -> tuple[dict[tuple[str, str, int], list[int]], set[Bucket]]:
        param = _Params()
        per_bucket = 3 if chase else 2
        queries: list[Query] = []
        for bucket in buckets:
            start, end = bucket.hour_ns, bucket.hour_ns + HOUR_NS
            market = param("market", "=", bucket.market)
            queries.append(
                self._select(
                    "footfall",
                    market,
                    param("time", ">=", start),
                    param("time", "<", end),
                    group_by=("gate",),
                )
            )
            queries.append(
                self._select(
                    "footfall",
                    param("market", "=", bucket.market),
                    param("time", "<", start),
                    group_by=("gate",),
                    newest_first=True,
                    limit=NEWEST_WITH_FALLBACK,
                )
            )
            if chase:
                queries.append(
                    self._select(
                        "footfall",
                        param("market", "=", bucket.market),
                        param("time", ">=", end),
                        group_by=("gate",),
                        limit=NEWEST_WITH_FALLBACK,
                    )
                )
        answers = self._statements(queries)
        hours: dict[tuple[str, str, int], list[int]] = {}
        successors: set[Bucket] = set()
        for number, bucket in enumerate(buckets):
            first = per_bucket * number
            baseline = {
                str_column(row, "gate"): row for row in _first_whole_per_gate(answers[first + 1])
            }
            for gate, rows in _whole_by_gate(answers[first]).items():
                hours[(bucket.market, gate, bucket.hour_ns)] = _footfall_totals(
                    baseline.get(gate), rows
                )
            if chase:
                for row in _first_whole_per_gate(answers[first + 2]):
                    successors.add(
                        Bucket(Kind.FOOTFALL, bucket.market, hour_of(int_column(row, "time")))
                    )
        return hours, successors

    # -- batches -------------------------------------------------------------------

    def _batch_lines_for(self, buckets: Sequence[Bucket]) -> list[str]:
        """Per batch record with a marked code: its own vendor's sales of its product naming
        the code, from ``LATE_BATCH_GRACE`` before its intake (two requests or so)."""
        if not buckets:
            return []
        records = self._batch_records(buckets)
        if not records:
            return []
        sales = self._sales_by_code(records)
        lines: list[str] = []
        for bucket, found in records.items():
            code_sales = sales.get(bucket, [])
            lines += [line for one in found for line in _batch_lines(bucket, one, code_sales)]
        return lines

    def _batch_records(self, buckets: Sequence[Bucket]) -> dict[Bucket, list[_Batch]]:
        """The stored batch records of each bucket's code (buckets without are left out).

        Found through the code's ``trace_index`` entries, which give each record's
        exact point time, and then read by that time: two requests of small reads.
        A select of the vendor's batch series by ``trace_code`` over all of time
        would read that series in every shard, and a settle would slow as the
        history grows (a year's load went from 17 to 27 s a day that way).
        """
        entries = self._batch_entries(buckets)
        located = [(b, entry) for b in buckets for entry in entries.get(b, [])]
        if not located:
            return {}
        param = _Params()
        answers = self._statements(
            [
                self._select(
                    "batch",
                    param("market", "=", b.market),
                    param("vendor", "=", b.vendor),
                    param("plu", "=", b.plu),
                    param("time", "=", entry.at_ns),
                    param("trace_code", "=", b.trace_code),
                    group_by=("station",),
                )
                for b, entry in located
            ]
        )
        records: dict[Bucket, list[_Batch]] = defaultdict(list)
        for (b, _), answer in zip(located, answers, strict=True):
            for row in whole_rows("batch", answer):
                one = _batch_of(b, row)
                if one not in records[b]:  # two entries of a record rewritten in place
                    records[b].append(one)
        return {b: found for b, found in records.items() if found}

    def _batch_entries(self, buckets: Sequence[Bucket]) -> dict[Bucket, list[TraceEntry]]:
        """Each bucket's ``trace_index`` batch entries of its own vendor and product."""
        answers = self._statements(
            [
                trace_select(self._reader, b.market, b.trace_code, kind="batch", number=number)
                for number, b in enumerate(buckets)
            ]
        )
        found: dict[Bucket, list[TraceEntry]] = {}
        for b, answer in zip(buckets, answers, strict=True):
            mine = [e for e in trace_entries(answer) if (e.vendor, e.plu) == (b.vendor, b.plu)]
            if mine:
                found[b] = mine
        return found

    def _sales_by_code(
        self, records: Mapping[Bucket, Sequence[_Batch]]
    ) -> dict[Bucket, list[tuple[int, int]]]:
        """(time, grams) of the sales naming each bucket's code, from its oldest record's
        grace window on.

        One select per (market, vendor, product) and not per code: a settle after a busy
        minute, or a day of history, holds several batches of most stalls' products, and a
        statement costs InfluxDB a pass over the series whatever it returns.
        """
        since: dict[_Product, int] = {}
        for bucket, found in records.items():
            group = (bucket.market, bucket.vendor, bucket.plu)
            oldest = min(one.sales_since_ns for one in found)
            since[group] = min(oldest, since.get(group, oldest))
        groups = sorted(since)
        param = _Params()
        answers = self._statements(
            [
                SelectColumns(
                    "sale",
                    columns=(Column("weight_g"), Column("trace_code")),
                    where=(
                        param("market", "=", market),
                        param("vendor", "=", vendor),
                        param("plu", "=", plu),
                        param("time", ">=", since[(market, vendor, plu)]),
                    ),
                    retention_policy=self._reader.policy_for("sale", market),
                ).query()
                for market, vendor, plu in groups
            ]
        )
        wanted = set(records)
        sales: dict[Bucket, list[tuple[int, int]]] = defaultdict(list)
        for (market, vendor, plu), answer in zip(groups, answers, strict=True):
            for row in tagged_rows(answer):
                code, grams = row.get("trace_code"), row.get("weight_g")
                if not isinstance(code, str) or type(grams) is not int:
                    continue  # a write in flight: whole on the next settle
                bucket = _batch(market, vendor, plu, code)
                if bucket in wanted:
                    sales[bucket].append((int_column(row, "time"), grams))
        return sales

    # -- backfill ------------------------------------------------------------------

    def raw_span_ns(self) -> tuple[int, int] | None:
        """The times of the oldest and the newest raw sale, gate count or batch, if any."""
        queries = [
            Select(measurement, retention_policy=rp, newest_first=newest, limit=1).query()
            for measurement in ("sale", "footfall", "batch")
            for rp in self._reader.policies_of(measurement)
            for newest in (False, True)
        ]
        times = [
            int_column(row, "time")
            for answer in self._statements(queries)
            for row in tagged_rows(answer)
        ]
        return (min(times), max(times)) if times else None

    def raw_markets(self) -> list[str]:
        """The markets with raw sales, gate counts or batches: their ``market`` tag values."""
        sources = [
            quote_ident(measurement)
            if rp is None
            else f"{quote_ident(rp)}.{quote_ident(measurement)}"
            for measurement in ("sale", "footfall", "batch")
            for rp in self._reader.policies_of(measurement)
        ]
        statements = [
            Query(f"SHOW TAG VALUES FROM {source} WITH KEY = {quote_ident('market')}")
            for source in sources
        ]
        answers = self._statements(statements)
        return sorted(
            {str_column(row, "value") for answer in answers for one in answer for row in one.rows}
        )

    def rebuild_day(self, day_start_ns: int) -> int:
        """Recompute, once, every bucket with raw points in the UTC day; returns how many.

        What a backfill wants: marking the day and settling would also recompute, a
        minute later and for the whole slack, the marks of the days done before.
        Ingest running meanwhile marks and settles its own writes as usual.
        """
        buckets = self._buckets_of_day(day_start_ns)
        # Every batch of the day is among them, and all its sales are stored: the
        # batches the hours' sales name (earlier days' batches) were counted whole already.
        self._recompute(buckets, batches_sold=False)
        return len(buckets)

    def _recompute(self, buckets: set[Bucket], *, batches_sold: bool = True) -> None:
        """Recompute ``buckets`` from raw, and (``batches_sold``) the batches named by the
        sales of their hours."""
        sale_lines, sold = self._sale_lines([b for b in buckets if b.kind is Kind.SALE])
        batches = {b for b in buckets if b.kind is Kind.BATCH}
        if batches_sold:
            batches |= sold
        self._write(
            [
                *sale_lines,
                *self._footfall_lines([b for b in buckets if b.kind is Kind.FOOTFALL]),
                *self._batch_lines_for(sorted(batches)),
            ]
        )

    def _buckets_of_day(self, day_start_ns: int) -> set[Bucket]:
        param = _Params()
        start, end = day_start_ns, day_start_ns + DAY_NS

        def day(*where: Condition) -> tuple[Condition, ...]:
            return (*where, param("time", ">=", start), param("time", "<", end))

        # Across markets: a statement per retention policy of the kind (routed stores).
        per_hour = [
            [
                SelectColumns(
                    measurement,
                    columns=(Column(counted, "COUNT"),),
                    where=day(),
                    retention_policy=rp,
                    group_by=("market",),
                    every_s=HOUR_NS // 1_000_000_000,
                ).query()
                for rp in self._reader.policies_of(measurement)
            ]
            for measurement, counted in (("sale", "total_fen"), ("footfall", "in_total"))
        ]
        batches = [
            SelectColumns(
                "batch",
                columns=(Column("trace_code"),),
                where=day(),
                retention_policy=rp,
                group_by=("market", "vendor", "plu"),
            ).query()
            for rp in self._reader.policies_of("batch")
        ]
        groups = [*per_hour, batches]
        answers = iter(self._statements([query for group in groups for query in group]))
        sales, footfall, batch = ([one for _ in group for one in next(answers)] for group in groups)
        buckets: set[Bucket] = set()
        for kind, answer in ((Kind.SALE, sales), (Kind.FOOTFALL, footfall)):
            for row in tagged_rows(answer):
                if row.get("count"):
                    buckets.add(Bucket(kind, str_column(row, "market"), int_column(row, "time")))
        for row in tagged_rows(batch):
            if isinstance(row.get("trace_code"), str):
                buckets.add(
                    _batch(
                        str_column(row, "market"),
                        str_column(row, "vendor"),
                        str_column(row, "plu"),
                        str_column(row, "trace_code"),
                    )
                )
        return buckets

    def backfilled_through(self) -> int | None:
        """The start of the last UTC day the backfill of :data:`ROLLUP_FORMAT` finished, or None.

        A checkpoint of an older format (format 1 had no ``format`` field) is no
        checkpoint: its days hold rollup points the backfill must write again.
        """
        series = self._reader.select(BACKFILL_PROGRESS, newest_first=True, limit=1)
        rows = list(tagged_rows(series))
        if not rows or rows[0].get("format") != ROLLUP_FORMAT:
            return None
        return int_column(rows[0], "day_ns")

    def all_of_format(self) -> bool:
        """Whether every rollup point in the database is of :data:`ROLLUP_FORMAT`.

        True once :data:`ROLLUP_FORMAT_COMPLETE` says so, and remembered; otherwise
        false, asked again after :data:`_FORMAT_RECHECK_NS` (a backfill finishing
        meanwhile writes the marker).
        """
        if self._all_of_format:
            return True
        now = self._clock()
        checked = self._format_checked_ns
        if checked is not None and now - checked < _FORMAT_RECHECK_NS:
            return False
        self._format_checked_ns = now
        series = self._reader.select(ROLLUP_FORMAT_COMPLETE, newest_first=True, limit=1)
        rows = list(tagged_rows(series))
        self._all_of_format = bool(rows) and rows[0].get("format") == ROLLUP_FORMAT
        return self._all_of_format

    def mark_format_if_new(self) -> None:
        """Record :data:`ROLLUP_FORMAT_COMPLETE` for a database without raw points yet: all
        it will hold is written by this version. (The index of measurements says so,
        without reading points.)"""
        if self.all_of_format():
            return
        shown = self._reader.client.query(self._reader.database, Query("SHOW MEASUREMENTS"))
        names = {row.get("name") for one in shown for row in one.rows}
        if not names & {"sale", "footfall", "batch"}:
            self.record_all_of_format()

    def record_all_of_format(self) -> None:
        """Every rollup point is of :data:`ROLLUP_FORMAT` now (see :meth:`all_of_format`)."""
        line = build_line(ROLLUP_FORMAT_COMPLETE, {}, {"format": ROLLUP_FORMAT}, self._clock())
        self._reader.write([line])
        self._all_of_format = True

    def record_backfilled(self, day_start_ns: int) -> None:
        fields = {"day_ns": day_start_ns, "format": ROLLUP_FORMAT}
        self._reader.write([build_line(BACKFILL_PROGRESS, {}, fields, self._clock())])


# -- helpers -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Marked:
    """What a settle read of the marks: the buckets to recompute, the newest mark's time,
    and the marks it has seen and is done with once those buckets are rewritten."""

    buckets: set[Bucket]
    newest: int | None
    seen: set[_MarkId]
    done: set[_MarkId]


_Group = tuple[str, str, str]  # (scale, vendor, plu)
_Product = tuple[str, str, str]  # (market, vendor, plu)


def _hour_of(param: _Params, bucket: Bucket) -> tuple[Condition, ...]:
    """The bucket's market and hour, in parameters of a statement's own."""
    return (
        param("market", "=", bucket.market),
        param("time", ">=", bucket.hour_ns),
        param("time", "<", bucket.hour_ns + HOUR_NS),
    )


def _raw_sums(where: tuple[Condition, ...], reader: Reader) -> Query:
    """Sales, fen and grams of raw sales per scale, vendor and PLU (``COUNT(total_fen)``:
    a sale whose fields are still being written is not counted yet)."""
    return SelectColumns(
        "sale",
        columns=(
            Column("total_fen", "COUNT", "transactions"),
            Column("total_fen", "SUM", "total_fen"),
            Column("weight_g", "SUM", "weight_g"),
        ),
        where=where,
        retention_policy=reader.policy_for("sale", market_of(where)),
        group_by=_GROUP_TAGS,
    ).query()


def _listed(
    measurement: str, where: tuple[Condition, ...], fields: tuple[str, ...], reader: Reader
) -> Query:
    """The ``fields`` and the group's tags (scale, vendor, PLU) of each point."""
    return SelectColumns(
        measurement,
        columns=tuple(Column(name) for name in (*fields, *_GROUP_TAGS)),
        where=where,
        retention_policy=reader.policy_for(measurement, market_of(where)),
    ).query()


_GROUP_TAGS: Final = ("scale", "vendor", "plu")
_SUM_FIELDS: Final = ("transactions", "total_fen", "weight_g")


def _batches_named(market: str, series: Sequence[Series]) -> set[Bucket]:
    """The batches named by listed sales (whose code named a registered batch)."""
    named: set[Bucket] = set()
    for row in tagged_rows(series):
        code, vendor, plu = row.get("trace_code"), row.get("vendor"), row.get("plu")
        if isinstance(code, str) and isinstance(vendor, str) and isinstance(plu, str):
            named.add(_batch(market, vendor, plu, code))
    return named


def _group_of(row: Row) -> _Group:
    scale, vendor, plu = (row.get(tag) for tag in _GROUP_TAGS)
    return (str(scale or ""), str(vendor or ""), str(plu or ""))


def _raw_sums_by_group(series: Sequence[Series]) -> dict[_Group, tuple[int, int, int]]:
    """The sums per (scale, vendor, plu) of an answer to :func:`_raw_sums`."""
    sums: dict[_Group, tuple[int, int, int]] = {}
    for one in series:
        group = tuple(one.tags.get(tag, "") for tag in _GROUP_TAGS)
        for row in one.rows:
            if row.get("transactions"):
                sums[(group[0], group[1], group[2])] = (
                    int_column(row, "transactions"),
                    _int_or_zero(row.get("total_fen")),
                    _int_or_zero(row.get("weight_g")),
                )
    return sums


def _stored_sums_by_group(series: Sequence[Series]) -> dict[_Group, tuple[int, int, int]]:
    """The stored ``sale_hourly`` sums per (scale, vendor, plu) of an hour."""
    return {
        _group_of(row): (
            int_column(row, "transactions"),
            _int_or_zero(row.get("total_fen")),
            _int_or_zero(row.get("weight_g")),
        )
        for row in tagged_rows(series)
        if row.get("transactions") is not None
    }


def _int_or_zero(value: object) -> int:
    return value if type(value) is int else 0


def _sale_hourly_lines(
    bucket: Bucket,
    raw: Mapping[_Group, tuple[int, int, int]],
    stored: Mapping[_Group, tuple[int, int, int]],
) -> list[str]:
    """The groups whose stored sums differ (zeros for those without sales now), and the
    market's hour."""
    lines = []
    for group in sorted(raw.keys() | stored.keys()):
        sums = raw.get(group, (0, 0, 0))
        if stored.get(group) != sums:
            scale, vendor, plu = group
            lines.append(
                build_line(
                    SALE_HOURLY,
                    {"market": bucket.market, "scale": scale, "vendor": vendor, "plu": plu},
                    _sum_fields(sums),
                    bucket.hour_ns,
                )
            )
    per_scale: dict[tuple[str, str], list[int]] = {}
    for scale, vendor, _plu in stored.keys() | raw.keys():
        per_scale.setdefault((scale, vendor), [0, 0, 0])
    for (scale, vendor, _plu), sums in raw.items():
        summed = per_scale[(scale, vendor)]
        for i in range(3):
            summed[i] += sums[i]
    lines += [
        build_line(
            SCALE_SALE_HOURLY,
            {"market": bucket.market, "vendor": vendor, "scale": scale},
            _sum_fields(sums),
            bucket.hour_ns,
        )
        for (scale, vendor), sums in sorted(per_scale.items())
    ]
    total = tuple(sum(sums[i] for sums in raw.values()) for i in range(3))
    lines.append(
        build_line(
            MARKET_SALE_HOURLY, {"market": bucket.market}, _sum_fields(total), bucket.hour_ns
        )
    )
    return lines


def _sum_fields(sums: Sequence[int]) -> dict[str, int | str]:
    return {"transactions": sums[0], "total_fen": sums[1], "weight_g": sums[2]}


def _whole_by_gate(series: Sequence[Series]) -> dict[str, list[Row]]:
    by_gate: dict[str, list[Row]] = defaultdict(list)
    for row in whole_rows("footfall", series):
        by_gate[str_column(row, "gate")].append(row)
    return by_gate


def _first_whole_per_gate(series: Sequence[Series]) -> list[Row]:
    """Per gate of an ordered read, its first point written whole."""
    firsts: dict[str, Row] = {}
    for row in whole_rows("footfall", series):
        firsts.setdefault(str_column(row, "gate"), row)
    return list(firsts.values())


def _footfall_totals(baseline: Row | None, rows: Sequence[Row]) -> list[int]:
    """[readings, people in, people out] of a gate's hour (``storage.footfall``'s rule)."""
    previous = None if baseline is None else _counts(baseline)
    totals = [0, 0, 0]
    for row in sorted(rows, key=lambda r: int_column(r, "time")):
        current = _counts(row)
        totals[0] += 1
        totals[1] += counter_increase(None if previous is None else previous[0], current[0])
        totals[2] += counter_increase(None if previous is None else previous[1], current[1])
        previous = current
    return totals


def _counts(row: Row) -> tuple[int, int]:
    return int_column(row, "in_total"), int_column(row, "out_total")


def _batch_of(bucket: Bucket, row: Row) -> _Batch:
    return _Batch(
        station=str_column(row, "station"),
        vendor=bucket.vendor,
        plu=bucket.plu,
        time_ns=int_column(row, "time"),
        quantity_g=int_column(row, "quantity_g"),
        rapid_test_passed=optional_bool_column(row, "rapid_test_passed"),
    )


def _batch_lines(bucket: Bucket, batch: _Batch, sales: Sequence[tuple[int, int]]) -> list[str]:
    """The record's ``batch_sold`` point and its ``batch_alert`` beside it."""
    counted = [(time_ns, grams) for time_ns, grams in sales if time_ns >= batch.sales_since_ns]
    sold_g = sum(grams for _, grams in counted)
    # ``is False``: a batch not tested at intake has not failed (BatchBalanceRow.failed_on_sale)
    failed_on_sale = batch.rapid_test_passed is False and bool(counted)
    # BatchBalanceRow.needs_alert, kept with the point so readers can filter on it
    alert = failed_on_sale or sold_g > batch.quantity_g
    flag = build_line(
        BATCH_ALERT,
        {"market": bucket.market, "station": batch.station},
        {"alert": alert, "vendor": batch.vendor, "plu": batch.plu},
        batch.time_ns,
    )
    return [_batch_sold_line(bucket, batch, counted, alert), flag]


def _batch_sold_line(
    bucket: Bucket, batch: _Batch, counted: Sequence[tuple[int, int]], alert: bool
) -> str:
    fields: dict[str, int | str | bool] = {
        "sales": len(counted),
        "sold_g": sum(grams for _, grams in counted),
        "trace_code": bucket.trace_code,
        "quantity_g": batch.quantity_g,
    }
    if batch.rapid_test_passed is not None:  # none: not tested at intake
        fields["rapid_test_passed"] = batch.rapid_test_passed
    fields["alert"] = alert
    if counted:
        fields["first_sale_ns"] = min(time_ns for time_ns, _ in counted)
        fields["last_sale_ns"] = max(time_ns for time_ns, _ in counted)
    tags = {
        "market": bucket.market,
        "station": batch.station,
        "vendor": batch.vendor,
        "plu": batch.plu,
    }
    return build_line(BATCH_SOLD, tags, fields, batch.time_ns)
