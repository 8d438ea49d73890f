"""``stallwatch store backfill``: build an InfluxDB database's rollups from its raw points.

A database written before the rollups existed (or after they were dropped) has
raw points and no marks. The backfill marks, day by day from the oldest UTC day
with raw points to the newest, every bucket that has raw points in it, and
settles (``storage.influx.rollups``): each day's rollups are recomputed from raw,
so running it again is harmless. After each day it records a checkpoint (a
``backfill_progress`` point); an interrupted run resumes after the last day it
finished. Ingest may run meanwhile: its own marks are settled with the backfill's.

SQLite keeps its rollups in each write's transaction (and its migrations built
them from the rows already stored): there is nothing to backfill.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime

from storage.base import Store

#: One UTC day in nanoseconds.
_DAY_NS = 24 * 3_600 * 1_000_000_000


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser("store", help="maintain a store")
    actions = cmd.add_subparsers(dest="action", required=True)
    backfill = actions.add_parser(
        "backfill", help="build an InfluxDB database's hourly rollups from its raw points"
    )
    backfill.add_argument(
        "--store",
        dest="store_spec",
        help="sqlite:PATH or influx:http://host:8086/DATABASE (default: the configured store)",
    )
    backfill.add_argument(
        "--max-days", type=int, help="stop after this many days (run again to go on)"
    )


def backfill(
    store: Store, *, max_days: int | None = None, out: Callable[[str], None] = print
) -> int:
    """Backfill ``store``'s rollups from its checkpoint on; returns the days done in this run."""
    from storage.influx.store import InfluxStore  # a SQLite deployment never loads it

    if not isinstance(store, InfluxStore):
        out("nothing to backfill: this store keeps its rollups in each write's transaction")
        return 0
    rollups = store.rollups
    span = rollups.raw_span_ns()
    if span is None:
        out("nothing to backfill: the database has no sales, gate counts or batches")
        return 0
    first, last = (_day_start(ns) for ns in span)
    done = rollups.backfilled_through()
    day = first if done is None else max(first, done + _DAY_NS)
    if day > last:
        out(f"backfilled through {_date(last)} already: nothing to do")
        return 0
    total = (last - day) // _DAY_NS + 1
    count = 0
    while day <= last and (max_days is None or count < max_days):
        started = time.monotonic()
        marked = rollups.mark_day(day)
        settled = store.settle_rollups()
        rollups.record_backfilled(day)
        count += 1
        out(
            f"{_date(day)}: {marked} buckets marked, {settled} settled "
            f"in {time.monotonic() - started:.1f}s ({count}/{total})"
        )
        day += _DAY_NS
    if day <= last:
        out(f"stopped after {count} days; run again to go on from {_date(day)}")
    return count


def _day_start(time_ns: int) -> int:
    return time_ns - time_ns % _DAY_NS


def _date(day_ns: int) -> str:
    return datetime.fromtimestamp(day_ns // 1_000_000_000, UTC).date().isoformat()
