"""Visitors and gate counters.

Arrivals follow a daily curve with a morning peak (around 7:45, later at
weekends), a small pre-lunch bump and an evening peak after work (around 17:40),
with a quiet midday. Each visitor enters through a gate, stays a while (median
about 25 minutes) and leaves through a gate; whoever is still inside at closing
leaves then. The number of people inside (occupancy) drives the stalls' sales.

Gate counters are cumulative: each report carries the totals counted since the
counter last started. A counter that reboots misses the people passing during
the reboot and starts again from 0.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from schemas.messages import DeviceKind, GateCount
from schemas.topics import topic_for
from simulators.config import DayConfig
from simulators.events import DayEvent, MarketHours, MessageIds
from simulators.randomness import chance, derive_rng, poisson

_REBOOT_MS = 90_000
_REPORT_JITTER_MS = 1_500
#: People count only when they pass the sensor: minute m is credited at its midpoint.
_MINUTE_MIDPOINT_MS = 30_000


@dataclass(frozen=True, slots=True)
class GateTotals:
    in_total: int = 0
    out_total: int = 0


@dataclass(frozen=True, slots=True)
class Footfall:
    """Who passed which gate in each minute of the day, and how many were inside."""

    entries: Mapping[str, Sequence[int]]
    exits: Mapping[str, Sequence[int]]
    occupancy: Sequence[int]

    @property
    def visitors(self) -> int:
        return sum(sum(per_minute) for per_minute in self.entries.values())


def arrival_weight(hour: float, *, weekend: bool) -> float:
    """Relative arrival rate at local ``hour`` (fractional)."""
    morning_peak = 8.25 if weekend else 7.75
    return (
        0.22
        + 1.0 * _bump(hour, morning_peak, 0.85)
        + 0.22 * _bump(hour, 10.6, 0.5)
        + 0.8 * _bump(hour, 17.65, 0.55)
    )


def _bump(hour: float, centre: float, width: float) -> float:
    return math.exp(-0.5 * ((hour - centre) / width) ** 2)


def gate_weights(gates: Sequence[str], seed: int) -> list[float]:
    """How busy each gate is; stable under a seed, so the main gate stays the main gate."""
    return [0.3 + derive_rng(seed, "gate-weight", gate).random() for gate in gates]


def simulate_footfall(
    hours: MarketHours,
    gates: Sequence[str],
    weights: Sequence[float],
    *,
    visitors: float,
    rng: random.Random,
) -> Footfall:
    minutes = hours.minutes
    weekend = hours.day.weekday() >= 5
    shift = rng.uniform(-0.15, 0.15)  # peaks wander a little from day to day
    curve = [arrival_weight(_local_hour(hours, m) + shift, weekend=weekend) for m in range(minutes)]
    scale = visitors / sum(curve)
    entries = {gate: [0] * minutes for gate in gates}
    exits = {gate: [0] * minutes for gate in gates}
    inside_delta = [0] * (minutes + 1)
    cumulative = list(_cumulative(weights))
    for minute, weight in enumerate(curve):
        for _ in range(poisson(rng, weight * scale)):
            gate_in = rng.choices(gates, cum_weights=cumulative)[0]
            gate_out = (
                gate_in if chance(rng, 0.6) else rng.choices(gates, cum_weights=cumulative)[0]
            )
            leaves = min(minutes - 1, minute + _dwell_minutes(rng))
            entries[gate_in][minute] += 1
            exits[gate_out][leaves] += 1
            inside_delta[minute] += 1
            inside_delta[leaves] -= 1
    occupancy, inside = [], 0
    for minute in range(minutes):
        inside += inside_delta[minute]
        occupancy.append(inside)
    return Footfall(entries, exits, occupancy)


def _local_hour(hours: MarketHours, minute: int) -> float:
    local = hours.local(hours.minute_start(minute))
    return local.hour + local.minute / 60


def _cumulative(weights: Sequence[float]) -> Iterator[float]:
    total = 0.0
    for weight in weights:
        total += weight
        yield total


def _dwell_minutes(rng: random.Random) -> int:
    return min(90, max(4, round(rng.lognormvariate(math.log(25), 0.45))))


@dataclass(frozen=True, slots=True)
class GateCounter:
    """One gate's counter for one day: where it starts and whether (when) it reboots."""

    market: str
    gate: str
    start: GateTotals
    reset_at_ms: int | None

    def rebooting(self, at_ms: int) -> bool:
        return (
            self.reset_at_ms is not None
            and self.reset_at_ms <= at_ms < self.reset_at_ms + _REBOOT_MS
        )


class CounterReadings:
    """What a gate counter shows at any instant of the day, in O(1) per reading."""

    def __init__(self, counter: GateCounter, footfall: Footfall, hours: MarketHours) -> None:
        self._counter = counter
        self._hours = hours
        self._in = list(_prefix_sums(footfall.entries[counter.gate]))
        self._out = list(_prefix_sums(footfall.exits[counter.gate]))

    def at(self, at_ms: int) -> GateTotals:
        counted = self._minutes_passed(at_ms)
        reset_at = self._counter.reset_at_ms
        if reset_at is None or at_ms < reset_at:
            start, first = self._counter.start, 0
        else:
            # people passing while the counter reboots are never counted
            start, first = (
                GateTotals(),
                min(counted, self._minutes_passed(reset_at + _REBOOT_MS - 1)),
            )
        return GateTotals(
            start.in_total + self._in[counted] - self._in[first],
            start.out_total + self._out[counted] - self._out[first],
        )

    def _minutes_passed(self, at_ms: int) -> int:
        """Minutes whose people have passed the sensor by ``at_ms`` (credited at mid-minute)."""
        elapsed = at_ms - self._hours.opens_ms - _MINUTE_MIDPOINT_MS
        return min(len(self._in) - 1, max(0, elapsed // 60_000 + 1))


def _prefix_sums(values: Sequence[int]) -> Iterator[int]:
    total = 0
    yield total
    for value in values:
        total += value
        yield total


def plan_counter(
    market: str,
    gate: str,
    start: GateTotals,
    hours: MarketHours,
    config: DayConfig,
    rng: random.Random,
) -> GateCounter:
    reset_at = None
    if chance(rng, config.counter_reset_probability):
        # not in the first or last hour (if the market is open long enough), so the
        # reboot shows between ordinary reports
        earliest, latest = hours.opens_ms + 3_600_000, hours.closes_ms - 3_600_000
        if latest <= earliest:
            earliest, latest = hours.opens_ms, hours.closes_ms
        reset_at = rng.randrange(earliest, latest)
    return GateCounter(market, gate, start, reset_at)


def report_times(hours: MarketHours, interval_s: int, rng: random.Random) -> Iterator[int]:
    """Roughly every ``interval_s`` from opening, then one last report at closing."""
    interval_ms = interval_s * 1000
    at = hours.opens_ms + rng.randrange(interval_ms)
    while True:
        jittered = at + rng.randint(-_REPORT_JITTER_MS, _REPORT_JITTER_MS)
        if jittered >= hours.closes_ms:
            break
        yield max(hours.opens_ms, jittered)
        at += interval_ms
    yield hours.closes_ms


def gate_events(
    counter: GateCounter,
    footfall: Footfall,
    hours: MarketHours,
    config: DayConfig,
    rng: random.Random,
) -> Iterator[DayEvent]:
    """The counter's reports, computed incrementally (one pass over the day)."""
    topic = topic_for(counter.market, DeviceKind.GATE, counter.gate, "count")
    ids = MessageIds(hours.day)
    readings = CounterReadings(counter, footfall, hours)
    for at_ms in report_times(hours, config.gate_interval_s, rng):
        if counter.rebooting(at_ms):
            continue
        totals = readings.at(at_ms)
        message = GateCount(
            msg_id=ids.next(counter.gate),
            ts=hours.local(at_ms),
            in_total=totals.in_total,
            out_total=totals.out_total,
        )
        yield DayEvent(at_ms, counter.gate, topic, message)
