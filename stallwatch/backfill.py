"""``stallwatch store backfill``: build an InfluxDB database's rollups and indexes from raw.

A database written before the rollups and the lookup indexes existed (or after they
were dropped) has raw points and no marks. Each day it first builds the markets'
trace and receipt indexes (``storage.influx.indexes.index_day``, idempotent like the
rest; every market in the database when none is named), since the rollups find a
batch's records through them. The backfill recomputes from raw, day by day from the
oldest UTC day with raw points to the newest, every bucket that has raw points in it
(``Rollups.rebuild_day``): once each, with no marks, since a settle would recompute
earlier days' marks again for its whole slack. Running it again is harmless. After
each day it records a checkpoint (a ``backfill_progress`` point); an interrupted run
resumes after the last day it finished. Ingest may run meanwhile: it marks and
settles its own writes. A run that finishes the last day records that every rollup point
is of the current format (``Rollups.record_all_of_format``), so readers stop checking.

``--into-routed`` (:func:`copy_into_routed`) instead copies a database written
before retention by kind from its base retention policy into the policies per
market and kind (``storage.influx.routedcopy``), also day by day and resumable.

SQLite keeps its rollups in each write's transaction (and its migrations built
them from the rows already stored): there is nothing to backfill.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime

from storage.base import Store
from storage.records import to_ns

#: One UTC day in nanoseconds.
_DAY_NS = 24 * 3_600 * 1_000_000_000


def backfill(
    store: Store,
    markets: Sequence[str],
    *,
    max_days: int | None = None,
    since: date | None = None,
    out: Callable[[str], None] = print,
) -> int:
    """Backfill ``store``'s rollups, and ``markets``' lookup indexes, from its checkpoint on.

    With ``since`` (a UTC day), from that day if it is later, and without moving the
    checkpoint: the recent days now, and a later run without it does the older ones.

    Returns the days done in this run.
    """
    from storage.influx.store import InfluxStore  # a SQLite deployment never loads it

    if not isinstance(store, InfluxStore):
        out("nothing to backfill: this store keeps its rollups in each write's transaction")
        return 0
    rollups = store.rollups
    span = rollups.raw_span_ns()
    if span is None:
        out("nothing to backfill: the database has no sales, gate counts or batches")
        return 0
    if not markets:
        # The settle finds a batch's records through the trace index: every market with
        # raw points gets its indexes, named or not.
        markets = rollups.raw_markets()
        out(f"no market files named: indexing the markets in the database ({', '.join(markets)})")
    first, last = (_day_start(ns) for ns in span)
    done = rollups.backfilled_through()
    day = first if done is None else max(first, done + _DAY_NS)
    if since is not None:
        day = max(day, _day_start(to_ns(datetime.combine(since, datetime.min.time(), UTC))))
    if day > last:
        if since is None:
            rollups.record_all_of_format()
        out(f"backfilled through {_date(last)} already: nothing to do")
        return 0
    total = (last - day) // _DAY_NS + 1
    count = 0
    while day <= last and (max_days is None or count < max_days):
        started = time.monotonic()
        # Indexes first: the rebuild finds the day's batch records through them.
        indexed = [store.index_day(market, _as_date(day)) for market in markets]
        rebuilt = rollups.rebuild_day(day)
        if since is None:
            rollups.record_backfilled(day)
        count += 1
        out(
            f"{_date(day)}: {rebuilt} buckets rebuilt, "
            f"{sum(i.trace_entries for i in indexed)} trace and "
            f"{sum(i.receipt_entries for i in indexed)} receipt index entries "
            f"in {time.monotonic() - started:.1f}s ({count}/{total})"
        )
        day += _DAY_NS
    if day <= last:
        out(f"stopped after {count} days; run again to go on from {_date(day)}")
    elif since is None:
        # Every day rebuilt: readers may skip their censuses of older points.
        rollups.record_all_of_format()
    return count


def copy_into_routed(
    store: Store, *, max_days: int | None = None, out: Callable[[str], None] = print
) -> int:
    """Copy the base retention policy's points into the routed ones, day by day (resumable).

    See ``storage.influx.routedcopy``; returns the days done in this run.
    """
    from storage.influx.store import InfluxStore

    copy = store.routed_copy() if isinstance(store, InfluxStore) else None
    if copy is None:
        out("nothing to copy: the store does not keep a retention policy per market and kind")
        return 0
    span = copy.span_ns()
    if span is None:
        out("nothing to copy: the base retention policy has no points")
        return 0
    first, last = (_day_start(ns) for ns in span)
    done = copy.copied_through()
    day = first if done is None else max(first, done + _DAY_NS)
    if day > last:
        out(f"copied through {_date(last)} already: nothing to do")
        return 0
    copies = copy.copies()
    total = (last - day) // _DAY_NS + 1
    count = 0
    while day <= last and (max_days is None or count < max_days):
        started = time.monotonic()
        written = copy.copy_day(copies, day)
        copy.record_copied(day)
        count += 1
        out(
            f"{_date(day)}: {written} points copied into the routed retention policies "
            f"in {time.monotonic() - started:.1f}s ({count}/{total})"
        )
        day += _DAY_NS
    if day <= last:
        out(f"stopped after {count} days; run again to go on from {_date(day)}")
    return count


def _day_start(time_ns: int) -> int:
    return time_ns - time_ns % _DAY_NS


def _as_date(day_ns: int) -> date:
    return datetime.fromtimestamp(day_ns // 1_000_000_000, UTC).date()


def _date(day_ns: int) -> str:
    return _as_date(day_ns).isoformat()
