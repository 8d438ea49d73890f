"""Copying a database's points from its base retention policy into the routed ones, a day at a time.

A database written before retention by kind (``storage.influx.routing``) has every
point in its base policy, which a routed store no longer reads. For each UTC
day, each routed measurement and each market found in it, one statement copies
the points (1.x)::

    SELECT * INTO "sw_<market>_<kind>"."<measurement>" FROM "<base>"."<measurement>"
    WHERE "market" = $market AND time >= $start AND time < $end GROUP BY *

``GROUP BY *`` keeps tags as tags (without it they would become fields). A
point's identity is its series and time, so copying a day again overwrites
the same points: an interrupted copy is resumed from its checkpoint (a
``routed_copy_progress`` point) and the day it was on is copied again.

Points already beyond their routed policy's duration are left out (InfluxDB
would refuse them): they are older than their kind's cut-off, and the exact
retention pass removes them from the base policy too. The copied points stay
in the base policy, unread, until that pass (whose ``DELETE`` covers every
policy) removes them with their kind; shorten the base policy's duration to
reclaim the space sooner (the msg_id ledger must keep its own, see
``STALLWATCH_INFLUX_MSG_ID_RETENTION_POLICY``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from storage.influx.client import Series
from storage.influx.influxql import Query, quote_ident
from storage.influx.lineprotocol import build_line
from storage.influx.reader import Reader
from storage.influx.routing import MARGIN_DAYS, Routing
from storage.influx.rows import int_column, str_column, tagged_rows
from storage.interfaces.retention import KIND_OF_MEASUREMENT

ROUTED_COPY_PROGRESS: Final = "routed_copy_progress"
DAY_NS: Final = 24 * 3_600 * 1_000_000_000
#: Statements per request: each is ~200 characters of the POST body.
_STATEMENTS_PER_REQUEST: Final = 50


@dataclass(frozen=True, slots=True)
class _Copy:
    market: str
    measurement: str
    policy: str
    #: points before this are beyond the policy's duration
    oldest_ns: int


class RoutedCopy:
    """The copy of a database's base policy into ``routing``'s policies, through ``reader``."""

    def __init__(self, reader: Reader, routing: Routing, now_ns: int) -> None:
        self._reader = reader
        self._routing = routing
        self._now_ns = now_ns
        self._measurements = [m for m in KIND_OF_MEASUREMENT if routing.kind_of(m) is not None]

    def _base(self, measurement: str) -> str:
        source = quote_ident(measurement)
        policy = self._reader.retention_policy
        return source if policy is None else f"{quote_ident(policy)}.{source}"

    def span_ns(self) -> tuple[int, int] | None:
        """The times of the oldest and the newest point of the base policy, if any."""
        statements = [
            f"SELECT * FROM {self._base(m)} ORDER BY time {order} LIMIT 1"  # noqa: S608 - quoted identifiers
            for m in self._measurements
            for order in ("ASC", "DESC")
        ]
        series = self._reader.client.query(self._reader.database, Query("; ".join(statements)))
        times = [int_column(row, "time") for row in tagged_rows(series)]
        return (min(times), max(times)) if times else None

    def copies(self) -> list[_Copy]:
        """A copy per routed measurement and market it has (the tag index: every policy)."""
        statements = [
            f"SHOW TAG VALUES FROM {quote_ident(m)} WITH KEY = {quote_ident('market')}"
            for m in self._measurements
        ]
        series = self._reader.client.query(self._reader.database, Query("; ".join(statements)))
        copies = []
        for one in series:
            measurement = self._measurements[one.statement_id]
            kind = KIND_OF_MEASUREMENT[measurement]
            for row in one.rows:
                market = str_column(row, "value")
                days = self._routing.policy_of(market).days(kind) + MARGIN_DAYS
                oldest = self._now_ns - days * DAY_NS + DAY_NS  # a day's leeway to the expiry
                copies.append(_Copy(market, measurement, self._routing.name(market, kind), oldest))
        return copies

    def copy_day(self, copies: Sequence[_Copy], day_start_ns: int) -> int:
        """Copy one UTC day of every copy; returns the points written."""
        end = day_start_ns + DAY_NS
        statements = []
        for number, copy in enumerate(copies):
            start = max(day_start_ns, copy.oldest_ns)
            if start >= end:
                continue
            statements.append(
                Query(
                    f"SELECT * INTO {quote_ident(copy.policy)}.{quote_ident(copy.measurement)} "  # noqa: S608 - quoted identifiers, bound values
                    f"FROM {self._base(copy.measurement)} WHERE {quote_ident('market')} = "
                    f"$market{number} AND time >= $start{number} AND time < $end{number} "
                    "GROUP BY *",
                    {f"market{number}": copy.market, f"start{number}": start, f"end{number}": end},
                )
            )
        written = 0
        for first in range(0, len(statements), _STATEMENTS_PER_REQUEST):
            chunk = statements[first : first + _STATEMENTS_PER_REQUEST]
            params = {name: value for query in chunk for name, value in query.params.items()}
            batch = Query("; ".join(query.text for query in chunk), params)
            written += _written(self._reader.client.execute(batch, database=self._reader.database))
        return written

    def copied_through(self) -> int | None:
        """The start of the last UTC day copied, or None."""
        series = self._reader.client.query(
            self._reader.database,
            Query(f"SELECT * FROM {self._base(ROUTED_COPY_PROGRESS)} ORDER BY time DESC LIMIT 1"),  # noqa: S608 - quoted identifiers
        )
        rows = list(tagged_rows(series))
        return int_column(rows[0], "day_ns") if rows else None

    def record_copied(self, day_start_ns: int) -> None:
        self._reader.write(
            [build_line(ROUTED_COPY_PROGRESS, {}, {"day_ns": day_start_ns}, self._now_ns)]
        )


def _written(series: list[Series]) -> int:
    return sum(int_column(row, "written") for row in tagged_rows(series))
