"""People through the gates, from the gates' cumulative counters.

How counters become people per hour is in ``storage.footfall``.
Contract tests: ``tests/storage/contract/test_footfall.py``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime

from storage.footfall import hourly_footfall


@dataclass(frozen=True, slots=True)
class GateCountRow:
    """One cumulative counter reading of a gate."""

    market: str
    gate: str
    ts: datetime
    in_total: int
    out_total: int


@dataclass(frozen=True, slots=True)
class FootfallRow:
    """People through one gate during one local hour starting at ``hour``."""

    market: str
    gate: str
    hour: datetime
    people_in: int
    people_out: int


class FootfallStore(abc.ABC):
    """The footfall part of a store."""

    @abc.abstractmethod
    def gate_counts(self, market: str, start: datetime, end: datetime) -> list[GateCountRow]:
        """Raw counter readings in the range, per gate and time."""

    @abc.abstractmethod
    def gate_counts_before(self, market: str, moment: datetime) -> list[GateCountRow]:
        """The last counter reading of each gate strictly before ``moment`` (the baseline)."""

    def footfall_hourly(self, market: str, start: datetime, end: datetime) -> list[FootfallRow]:
        """People in/out per gate and hour; hours are in ``start``'s time zone.

        Built from cumulative counters, so lost or repeated messages do not skew it
        and a counter reset counts its new value as growth: each reading in the
        range adds its increase over the gate's previous reading (also one before
        ``start``) to its own hour. A gate's hour is present when it has a reading
        in the range, even with no increase.
        """
        baseline = self.gate_counts_before(market, start)
        readings = self.gate_counts(market, start, end)
        return hourly_footfall(market, baseline, readings, start, end)
