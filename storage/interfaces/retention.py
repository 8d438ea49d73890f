"""Retention: removing each market's data once its kind's time is up (``schemas.retention``).

Contract tests: ``tests/storage/contract/test_retention.py``.

What every backend keeps to:

* a row goes when its time (device time; a dead letter's arrival; a rollup's
  hour) is before its (market, kind) cut-off, :meth:`RetentionPolicy.cutoff`,
  which is floored to the UTC hour: an hour is expired or kept as a whole;
* nothing leaves a rollup because its raw rows expired: queries over expired
  days answer from the rollups for whole hours (their edge hours, read raw,
  come back empty), until the rollups expire in turn;
* a series' newest price, gate count and scale status before the cut-off is its
  state then (the price in force, the baseline of the next count, the status in
  force; the current one if nothing came since) and is kept however old;
* markets without a policy are left alone (say, a market no longer served).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Final

from schemas.retention import DataKind, RetentionPolicy

#: Which kind each stored measurement (InfluxDB) or table (SQLite) belongs to. Internal
#: bookkeeping (the msg_id ledger, rollup marks, interned ids) keeps its own handling.
KIND_OF_MEASUREMENT: Final[Mapping[str, DataKind]] = MappingProxyType(
    {
        "sale": DataKind.TRACE,
        "batch": DataKind.TRACE,
        "rapid_test": DataKind.TRACE,
        "batch_sold": DataKind.TRACE,
        "batch_alert": DataKind.TRACE,
        "trace_index": DataKind.TRACE,
        "receipt_index": DataKind.TRACE,
        "price": DataKind.PRICES,
        "scale_status": DataKind.HEARTBEATS,
        "footfall": DataKind.GATE_COUNTS,
        "dead_letter": DataKind.DEAD_LETTERS,
        "sale_hourly": DataKind.ROLLUPS,
        "market_sale_hourly": DataKind.ROLLUPS,
        "scale_sale_hourly": DataKind.ROLLUPS,
        "footfall_hourly": DataKind.ROLLUPS,
    }
)


def kind_of(measurement: str) -> DataKind:
    """The kind of data a measurement or table holds; ``KeyError`` for internal ones."""
    return KIND_OF_MEASUREMENT[measurement]


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What one retention pass removed (or, dry, would remove): rows per (market, kind)."""

    now: datetime
    removed: Mapping[tuple[str, DataKind], int] = field(default_factory=dict)
    dry_run: bool = False

    @property
    def total(self) -> int:
        return sum(self.removed.values())


class RetentionStore(abc.ABC):
    """Where old data is removed by its kind's retention, per market."""

    @abc.abstractmethod
    def apply_retention(
        self, now: datetime, policies: Mapping[str, RetentionPolicy], *, dry_run: bool = False
    ) -> RetentionReport:
        """Remove each market's rows older than its kind's cut-off as of ``now``.

        ``policies`` maps market ids to their policy. Work is done in bounded
        steps, so that writers are not held up for long; an interrupted pass is
        finished by the next one. ``dry_run`` counts what would go and removes
        nothing. Raises :class:`StoreUnavailable` as writes do.
        """
