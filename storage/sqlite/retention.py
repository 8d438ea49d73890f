"""The SQLite store's retention pass: old raw rows deleted in bounded chunks, rollups kept.

Each (market, kind) has a cut-off (``schemas.retention``); every table of that
kind (``storage.interfaces.retention.KIND_OF_MEASUREMENT``) loses its rows of
the market older than it. Why it is done this way:

* **Chunks.** A year of a 300-vendor market is ~22 M sales; one transaction
  deleting them would hold the write lock for minutes and stall ingest (and
  grow the WAL by gigabytes). Each transaction deletes about :data:`CHUNK_ROWS`
  rows and commits, releasing the lock between chunks; a pass cut short is
  finished by the next one.
* **Keys.** Per-series tables are walked per series on their ``(series,
  time_ns)`` key; time-clustered ones (sales, batches, hourly sales) from the
  oldest end of their time key, filtered on the market's series (the ``+``
  keeps the planner on the time key: through the per-series index it would sort
  every expired row for each chunk).
* **Rollups stay.** Each chunk's transaction sets ``retention_in_progress``
  (schema version 7), which silences the delete triggers that would take the
  rows out of the sale and footfall rollups, and clears it before committing.
  ``batch_sold`` (what is sold of each batch) is trace data: a row goes once
  all its sales are expired and no batch of its code is left, checked for the
  codes whose sales or batches the same transaction deleted.
* **The state at the cut-off stays.** A series' newest price, gate count and
  scale status before the cut-off is kept however old: the price then in force
  (the current one, if it has not changed since), the baseline the next gate
  count's increase is taken from (a count arriving late just after the cut-off
  still finds its predecessor), the status then in force.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from schemas.retention import DataKind, RetentionPolicy
from storage.interfaces.retention import RetentionReport, kind_of
from storage.records import to_ns
from storage.sqlite.connections import Connections, sqlite_errors, transaction

#: Rows one transaction deletes, roughly: ~50 ms of write lock on a year-sized file.
CHUNK_ROWS: Final = 5_000


@dataclass(frozen=True, slots=True)
class _Table:
    """A table that expires, and how its rows of one market are found (SQL names only)."""

    name: str
    #: the column naming the row's series (or market)
    key: str
    #: the row's time column
    time: str
    #: the market's series ids (``:market`` bound); ``None``: ``key`` is the market itself
    series: str | None
    #: walk the whole market along the time key instead of series by series
    by_time: bool = False
    #: a series' newest row before the cut-off is its state then, and stays
    keep_newest: bool = False
    #: deleted rows name trace codes whose ``batch_sold`` rows may go with them
    traced: bool = False

    @property
    def kind(self) -> DataKind:
        return kind_of(self.name)


TABLES: Final = (
    _Table(
        "sale",
        "source",
        "time_ns",
        "SELECT id FROM sale_source WHERE market = :market",
        by_time=True,
        traced=True,
    ),
    _Table(
        "batch",
        "series",
        "time_ns",
        "SELECT id FROM batch_series WHERE market = :market",
        by_time=True,
        traced=True,
    ),
    _Table(
        "rapid_test",
        "series",
        "time_ns",
        "SELECT id FROM batch_series WHERE market = :market",
        by_time=True,
    ),
    _Table(
        "price",
        "series",
        "time_ns",
        "SELECT id FROM price_series WHERE market = :market",
        keep_newest=True,
    ),
    _Table(
        "scale_status",
        "series",
        "time_ns",
        "SELECT id FROM scale_status_series WHERE market = :market",
        keep_newest=True,
    ),
    _Table(
        "footfall",
        "series",
        "time_ns",
        "SELECT id FROM footfall_series WHERE market = :market",
        keep_newest=True,
    ),
    _Table("dead_letter", "market", "received_ns", None),
    _Table(
        "sale_hourly",
        "source",
        "hour_ns",
        "SELECT id FROM sale_source WHERE market = :market",
        by_time=True,
    ),
    _Table("market_sale_hourly", "market", "hour_ns", None),
    _Table(
        "footfall_hourly",
        "series",
        "hour_ns",
        "SELECT id FROM footfall_series WHERE market = :market",
    ),
)

#: A ``batch_sold`` row goes once all its sales are expired and its code has no batch left.
_FORGET_BATCH_SOLD = """
DELETE FROM batch_sold
WHERE trace = :trace AND last_sale_ns < :cutoff
  AND NOT EXISTS (SELECT 1 FROM batch WHERE trace = :trace)
"""


def apply_retention(
    connections: Connections,
    now: datetime,
    policies: Mapping[str, RetentionPolicy],
    *,
    dry_run: bool = False,
    chunk_rows: int | None = None,
) -> RetentionReport:
    """See :meth:`Store.apply_retention`; ``chunk_rows`` defaults to :data:`CHUNK_ROWS`."""
    if chunk_rows is None:
        chunk_rows = CHUNK_ROWS
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    removed: Counter[tuple[str, DataKind]] = Counter()
    for market, policy in sorted(policies.items()):
        for table in TABLES:
            cutoff_ns = to_ns(policy.cutoff(table.kind, now))
            expiry = _Expiry(connections, table, market, cutoff_ns, chunk_rows)
            removed[(market, table.kind)] += expiry.count() if dry_run else expiry.run()
    return RetentionReport(now=now, removed=dict(removed), dry_run=dry_run)


class _Expiry:
    """One table's expired rows of one market, removed chunk by chunk."""

    def __init__(
        self,
        connections: Connections,
        table: _Table,
        market: str,
        cutoff_ns: int,
        chunk_rows: int,
    ) -> None:
        self._connections = connections
        self._table = table
        self._market = market
        self._cutoff_ns = cutoff_ns
        self._chunk_rows = chunk_rows
        name, key, time = table.name, table.key, table.time
        scope = f"+{key} IN ({table.series})" if table.by_time else f"{key} = :series"
        expired = f"{scope} AND {time} < :upper"
        self._first_rows = (
            f"SELECT {time} FROM {name} WHERE {expired} ORDER BY {time} LIMIT 1 OFFSET :skip"  # noqa: S608 - names of this module only, values bound
        )
        returning = " RETURNING trace" if table.traced else ""
        self._delete_all = f"DELETE FROM {name} WHERE {expired}{returning}"  # noqa: S608 - names of this module only
        self._delete_through = f"DELETE FROM {name} WHERE {expired} AND {time} <= :bound{returning}"  # noqa: S608 - names of this module only
        self._count = f"SELECT COUNT(*) FROM {name} WHERE {expired}"  # noqa: S608 - names of this module only
        self._newest = f"SELECT MAX({time}) FROM {name} WHERE {key} = :series AND {time} < :cutoff"  # noqa: S608 - names of this module only

    def _action(self, what: str) -> str:
        return f"{what} expired {self._table.name} rows of market {self._market!r}"

    def _scopes(self, conn: sqlite3.Connection) -> list[dict[str, object]]:
        """The parameters of each walk: per series, or one for the whole market."""
        market = {"market": self._market}
        if self._table.by_time or self._table.series is None:
            return [{**market, "series": self._market}]
        ids = [series for (series,) in conn.execute(self._table.series, market)]
        return [{**market, "series": series} for series in ids]

    def _upper(self, conn: sqlite3.Connection, scope: dict[str, object]) -> int | None:
        """Rows before this go; ``None`` when the series has nothing to expire."""
        # A series keeps its newest row before the cut-off: rows before that one go.
        if not self._table.keep_newest:
            return self._cutoff_ns
        (newest,) = conn.execute(self._newest, {**scope, "cutoff": self._cutoff_ns}).fetchone()
        return None if newest is None else int(newest)

    def count(self) -> int:
        with sqlite_errors(self._action("counting")):
            conn = self._connections.reader()
            total = 0
            for scope in self._scopes(conn):
                upper = self._upper(conn, scope)
                if upper is not None:
                    total += conn.execute(self._count, {**scope, "upper": upper}).fetchone()[0]
            return total

    def run(self) -> int:
        with sqlite_errors(self._action("listing")):
            scopes = self._scopes(self._connections.reader())
        total = 0
        while scopes:
            with (
                self._connections.writer() as conn,
                sqlite_errors(self._action("deleting")),
                transaction(conn),
            ):
                total += self._chunk(conn, scopes)
        return total

    def _chunk(self, conn: sqlite3.Connection, scopes: list[dict[str, object]]) -> int:
        """Delete up to about a chunk's rows, from the first scopes; drop the scopes finished."""
        conn.execute("UPDATE retention_in_progress SET active = 1")
        budget = self._chunk_rows
        traces: set[int] = set()
        while scopes and budget > 0:
            deleted, finished = self._delete_some(conn, scopes[0], budget, traces)
            budget -= deleted
            if finished:
                scopes.pop(0)
        if traces:
            conn.executemany(
                _FORGET_BATCH_SOLD,
                [{"trace": trace, "cutoff": self._cutoff_ns} for trace in sorted(traces)],
            )
        conn.execute("UPDATE retention_in_progress SET active = 0")
        return self._chunk_rows - budget

    def _delete_some(
        self, conn: sqlite3.Connection, scope: dict[str, object], limit: int, traces: set[int]
    ) -> tuple[int, bool]:
        """Delete the scope's oldest expired rows, ``limit`` or a few more (equal times).

        Returns how many went and whether the scope has none left.
        """
        upper = self._upper(conn, scope)
        if upper is None:
            return 0, True
        params = {**scope, "upper": upper, "skip": limit - 1}
        row = conn.execute(self._first_rows, params).fetchone()
        if row is None:
            cursor = conn.execute(self._delete_all, params)
            finished = True
        else:
            cursor = conn.execute(self._delete_through, {**params, "bound": row[0]})
            finished = False
        if not self._table.traced:
            return cursor.rowcount, finished
        named = cursor.fetchall()
        traces.update(trace for (trace,) in named)
        return len(named), finished
