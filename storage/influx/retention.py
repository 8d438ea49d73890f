"""The InfluxDB store's exact retention pass: old points deleted per (market, kind).

Retention policies (``storage.influx.routing``) expire whole shards, by the
server's clock and a shard at a time, so they are only a backstop: they carry
a margin past each kind's days. This pass removes exactly what the SQLite pass
removes (``storage.sqlite.retention``), with the same cut-offs
(:meth:`RetentionPolicy.cutoff`, floored to the hour):

* **Rollups first.** The pass settles the rollups before deleting anything, so
  no raw point goes before the rollup that summarises it is written.
* **The state at the cut-off stays.** A series' newest price, gate count and
  scale status before the cut-off is kept however old: per series, the newest
  point before the cut-off is found and only the points before it go.
* **Indexes go with their records.** ``trace_index`` entries and ``batch_sold``
  (both timed as the point they describe) go with the trace records;
  ``receipt_index`` entries (timed by msg_id, with the ledger) go per scale up to
  the highest msg_id whose sale is before the cut-off (a field scan, as the
  ledger's ``forget``). They are not counted in the report, which counts what
  SQLite counts: the records and the rollups.
* **DELETE on 1.x only.** ``DELETE`` over the v1 API is served by 1.x alone (it
  removes the matching points from every retention policy of the database). On
  2.x/3.x the pass logs once that bucket retention applies and reports 0.

Work is bounded by series, not by points: a ``DELETE`` of a market's expired
range is one statement whatever its size (InfluxDB drops whole shards it
covers and tombstones the rest), so ingest is not held up for long.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from schemas.retention import DataKind, RetentionPolicy
from storage._exceptions import StoreError, StoreUnavailable
from storage.influx.client import Series
from storage.influx.indexes import RECEIPT_INDEX, TRACE_INDEX
from storage.influx.influxql import Condition, Delete, equals
from storage.influx.reader import Reader, bound_ns
from storage.influx.rollups import Kind, Rollups
from storage.influx.rows import int_column, str_column, tagged_rows
from storage.interfaces.retention import RetentionReport, kind_of

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Expiring:
    """A measurement whose points of a market expire by its kind's cut-off."""

    name: str
    #: a field every point has, to count them; ``None``: an index, not counted
    count_field: str | None
    #: the series' tags besides ``market``, when its newest point before the cut-off stays
    keep_newest_by: tuple[str, ...] = ()

    @property
    def kind(self) -> DataKind:
        return kind_of(self.name)


MEASUREMENTS: Final = (
    _Expiring("sale", "msg_id"),
    _Expiring("batch", "msg_id"),
    _Expiring("rapid_test", "msg_id"),
    _Expiring("batch_sold", None),
    _Expiring("batch_alert", None),
    _Expiring(TRACE_INDEX, None),
    _Expiring("price", "msg_id", keep_newest_by=("vendor", "plu")),
    _Expiring("scale_status", "msg_id", keep_newest_by=("scale",)),
    _Expiring("footfall", "msg_id", keep_newest_by=("gate",)),
    _Expiring("dead_letter", "payload_size"),
    _Expiring("sale_hourly", "transactions"),
    _Expiring("market_sale_hourly", "transactions"),
    _Expiring("scale_sale_hourly", "transactions"),
    _Expiring("footfall_hourly", "readings"),
)

#: The raw kind each kind of rollup bucket is recomputed from.
_ROLLED_UP: Final = {Kind.SALE: DataKind.TRACE, Kind.FOOTFALL: DataKind.GATE_COUNTS}

#: Where a market's points of a measurement are read: ``(measurement, market) -> reader``.
ReaderFor = Callable[[str, str], Reader]


class InfluxRetention:
    """The pass; ``reader_for`` gives the reader (retention policy) of a market's measurement."""

    def __init__(self, reader_for: ReaderFor, rollups: Rollups) -> None:
        self._reader_for = reader_for
        self._rollups = rollups
        self._delete_refused = False

    def apply(
        self, now: datetime, policies: Mapping[str, RetentionPolicy], *, dry_run: bool = False
    ) -> RetentionReport:
        """See :meth:`Store.apply_retention`."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if not dry_run:
            self._rollups.settle()  # nothing expires before its rollup is written
        removed: Counter[tuple[str, DataKind]] = Counter()
        for market, policy in sorted(policies.items()):
            if not dry_run:
                for kind, raw in _ROLLED_UP.items():
                    self._rollups.record_expiry(market, kind, bound_ns(policy.cutoff(raw, now)))
            for measurement in MEASUREMENTS:
                cutoff_ns = bound_ns(policy.cutoff(measurement.kind, now))
                removed[(market, measurement.kind)] += self._expire(
                    measurement, market, cutoff_ns, dry_run=dry_run
                )
            if not dry_run:
                self._prune_receipts(market, bound_ns(policy.cutoff(DataKind.TRACE, now)))
        if self._delete_refused and not dry_run:
            removed = Counter(dict.fromkeys(removed, 0))
        return RetentionReport(now=now, removed=dict(removed), dry_run=dry_run)

    def _expire(self, measurement: _Expiring, market: str, cutoff_ns: int, *, dry_run: bool) -> int:
        """Count (and unless ``dry_run`` delete) the market's expired points; returns the count."""
        reader = self._reader_for(measurement.name, market)
        market_only = (equals("market", market),)
        if measurement.count_field is None:
            # An index: its entries go with their records, uncounted (SQLite has none).
            if not dry_run:
                self._delete(reader, measurement.name, market_only, cutoff_ns)
            return 0
        if not measurement.keep_newest_by:
            count = self._count(
                reader, measurement.name, measurement.count_field, market_only, cutoff_ns
            )
            if not dry_run and count:
                self._delete(reader, measurement.name, market_only, cutoff_ns)
            return count
        total = 0
        for tags, newest_ns in self._newest_per_series(reader, measurement, market, cutoff_ns):
            where = tuple(equals(tag, value) for tag, value in tags.items())
            count = self._count(reader, measurement.name, measurement.count_field, where, newest_ns)
            if not dry_run and count:
                self._delete(reader, measurement.name, where, newest_ns)
            total += count
        return total

    @staticmethod
    def _count(
        reader: Reader,
        measurement: str,
        count_field: str,
        where: tuple[Condition, ...],
        before_ns: int,
    ) -> int:
        series = reader.select(
            measurement, *where, Condition("time", "<", "before", before_ns), count_of=count_field
        )
        return sum(int_column(row, "count") for one in series for row in one.rows)

    def _newest_per_series(
        self, reader: Reader, measurement: _Expiring, market: str, cutoff_ns: int
    ) -> list[tuple[dict[str, str], int]]:
        """Each series' tags (market included) and its newest point time before the cut-off."""
        series = reader.select(
            measurement.name,
            equals("market", market),
            Condition("time", "<", "before", cutoff_ns),
            group_by=measurement.keep_newest_by,
            newest_first=True,
            limit=1,
        )
        newest = []
        for one in series:
            for row in one.rows:
                tags = {
                    "market": market,
                    **{tag: one.tags[tag] for tag in measurement.keep_newest_by},
                }
                newest.append((tags, int_column(row, "time")))
        return newest

    def _delete(
        self, reader: Reader, measurement: str, where: tuple[Condition, ...], before_ns: int
    ) -> None:
        self._run_delete(
            reader, Delete(measurement, (*where, Condition("time", "<", "before", before_ns)))
        )

    def _run_delete(self, reader: Reader, delete: Delete) -> None:
        """Run ``delete``; after the first refusal (2.x/3.x), none is sent again."""
        if self._delete_refused:
            return
        try:
            reader.client.execute(delete.query(), database=reader.database)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            # Only 1.x serves DELETE over the v1 API; 2.x/3.x expire by bucket retention.
            self._delete_refused = True
            log.warning(
                "InfluxDB refuses DELETE (%s): only bucket retention applies (2.x/3.x); "
                "the exact retention pass removes nothing",
                exc,
            )

    def _prune_receipts(self, market: str, cutoff_ns: int) -> None:
        """Per scale, delete the receipt entries up to its newest one of a sale before the cut-off.

        Entries are timed by msg_id − 1 and a scale's msg_ids grow with its clock,
        so those are the entries of expired sales.
        """
        reader = self._reader_for(RECEIPT_INDEX, market)
        newest = reader.select(
            RECEIPT_INDEX,
            equals("market", market),
            Condition("point_ns", "<", "before", cutoff_ns),
            group_by=("scale",),
            newest_first=True,
            limit=1,
        )
        for scale, through_ns in _per_scale(newest):
            delete = Delete(
                RECEIPT_INDEX,
                (
                    equals("market", market),
                    equals("scale", scale),
                    Condition("time", "<=", "through", through_ns),
                ),
            )
            self._run_delete(reader, delete)


def _per_scale(series: list[Series]) -> list[tuple[str, int]]:
    return [(str_column(row, "scale"), int_column(row, "time")) for row in tagged_rows(series)]
