"""One market day as a time-ordered stream of device messages, seeded and pure.

``MarketDay(market, date, seed=…)`` plans the day up front (footfall, every
stall's prices and expected sales, the morning's batches, gate counter reboots),
which is small, and then *generates* the messages lazily: ``events()`` merges
one generator per stall, gate and intake station by time, so a year of a large
market streams in constant memory.

Determinism: the same market, date, seed and config give byte-identical
messages. Every component draws from its own random stream (see
``simulators.randomness``). Message ids come from per-day blocks (see
``simulators.events.msg_id_base``), so any day can be generated on its own.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from schemas.registry import Market
from simulators.config import DayConfig
from simulators.events import DayEvent, MarketHours
from simulators.footfall import (
    CounterReadings,
    Footfall,
    GateCounter,
    GateTotals,
    gate_events,
    gate_weights,
    plan_counter,
    simulate_footfall,
)
from simulators.intake import (
    PlannedBatch,
    PlannedCheck,
    intake_events,
    plan_intake,
    plan_spot_checks,
)
from simulators.randomness import chance, derive_rng
from simulators.stalls import StallDay, StallSimulation, StallTraits, plan_stall_day, stall_traits

#: Stands in for the gates of a market file that declares none: visitors still come.
_UNCOUNTED_GATE = "_uncounted"


@dataclass(frozen=True, slots=True)
class DayConditions:
    """How busy the day is compared with an ordinary dry weekday."""

    factor: float
    weekend: bool
    rain: bool


def day_conditions(market: str, day: date, seed: int) -> DayConditions:
    rng = derive_rng(seed, market, day.isoformat(), "conditions")
    weekend = day.weekday() >= 5
    rain = chance(rng, 0.12)
    factor = (1.2 if day.weekday() == 5 else 1.15 if weekend else 1.0) * (0.82 if rain else 1.0)
    return DayConditions(factor * max(0.8, min(1.2, rng.gauss(1.0, 0.06))), weekend, rain)


def all_traits(market: Market, seed: int) -> dict[str, StallTraits]:
    """Stall traits for every vendor; they hold for every day of a run."""
    return {vendor.id: stall_traits(market, vendor, seed) for vendor in market.active_vendors}


class MarketDay:
    """The plan and the message stream of one market on one day."""

    def __init__(
        self,
        market: Market,
        day: date,
        *,
        seed: int,
        config: DayConfig | None = None,
        gate_start: Mapping[str, GateTotals] | None = None,
        traits: Mapping[str, StallTraits] | None = None,
    ) -> None:
        self.market = market
        self.day = day
        self.seed = seed
        self.config = config or DayConfig()
        info = market.spec.market
        self.hours = MarketHours.of(day, market.tz, info.opens, info.closes)
        self.conditions = day_conditions(market.id, day, seed)
        traits = traits if traits is not None else all_traits(market, seed)
        self.footfall = self._footfall()
        self.counters = self._counters(gate_start or {})
        self.stalls: tuple[StallDay, ...] = tuple(
            plan_stall_day(
                traits[vendor.id],
                self.hours,
                day_factor=self.conditions.factor,
                config=self.config,
                seed=seed,
            )
            for vendor in market.active_vendors
        )
        self.batches: tuple[PlannedBatch, ...] = tuple(
            plan_intake(market, self.stalls, self.hours, seed=seed, config=self.config)
        )
        self.spot_checks: tuple[PlannedCheck, ...] = tuple(
            plan_spot_checks(market, self.batches, self.hours, seed=seed, config=self.config)
        )

    def _footfall(self) -> Footfall:
        gates = [gate.id for gate in self.market.spec.gates] or [_UNCOUNTED_GATE]
        visitors = (
            len(self.market.active_vendors)
            * self.config.visitors_per_vendor
            * self.conditions.factor
        )
        rng = derive_rng(self.seed, self.market.id, self.day.isoformat(), "footfall")
        return simulate_footfall(
            self.hours,
            gates,
            gate_weights([f"{self.market.id}/{g}" for g in gates], self.seed),
            visitors=visitors,
            rng=rng,
        )

    def _counters(self, start: Mapping[str, GateTotals]) -> dict[str, GateCounter]:
        counters = {}
        for gate in self.market.spec.gates:
            rng = derive_rng(self.seed, self.market.id, self.day.isoformat(), "counter", gate.id)
            counters[gate.id] = plan_counter(
                self.market.id,
                gate.id,
                start.get(gate.id, GateTotals()),
                self.hours,
                self.config,
                rng,
            )
        return counters

    @property
    def gate_totals_at_close(self) -> dict[str, GateTotals]:
        """What each gate counter shows at closing: tomorrow's starting point."""
        return {
            gate: CounterReadings(counter, self.footfall, self.hours).at(self.hours.closes_ms)
            for gate, counter in self.counters.items()
        }

    def events(self) -> Iterator[DayEvent]:
        """Every message of the day in time order (ties by device id, then message id)."""
        streams: list[Iterator[DayEvent]] = [
            *self._stall_streams(),
            *self._gate_streams(),
            *self._intake_streams(),
        ]
        return heapq.merge(*streams, key=_sort_key)

    def _stall_streams(self) -> Iterator[Iterator[DayEvent]]:
        occupancy = self.footfall.occupancy
        inside = sum(occupancy)
        share = [people / inside for people in occupancy] if inside else [0.0] * len(occupancy)
        batches_of: dict[str, list[PlannedBatch]] = defaultdict(list)
        for batch in self.batches:
            batches_of[batch.vendor].append(batch)
        for stall in self.stalls:
            vendor = stall.traits.vendor.id
            simulation = StallSimulation(
                stall, batches_of[vendor], share, self.hours, seed=self.seed, config=self.config
            )
            yield simulation.events()

    def _gate_streams(self) -> Iterator[Iterator[DayEvent]]:
        for gate, counter in self.counters.items():
            rng = derive_rng(self.seed, self.market.id, self.day.isoformat(), "reports", gate)
            yield gate_events(counter, self.footfall, self.hours, self.config, rng)

    def _intake_streams(self) -> Iterator[Iterator[DayEvent]]:
        for station in self.market.spec.intake:
            yield intake_events(
                self.market.id, station.id, self.batches, self.hours, self.spot_checks
            )


def _sort_key(event: DayEvent) -> tuple[int, str, int]:
    return event.sort_key


def market_days(
    market: Market,
    start: date,
    days: int,
    *,
    seed: int,
    config: DayConfig | None = None,
    gate_start: Mapping[str, GateTotals] | None = None,
) -> Iterator[MarketDay]:
    """Consecutive market days; gate counters keep counting from one day to the next."""
    traits = all_traits(market, seed)
    totals = dict(gate_start or {})
    for offset in range(days):
        day = MarketDay(
            market,
            start + timedelta(days=offset),
            seed=seed,
            config=config,
            gate_start=totals,
            traits=traits,
        )
        yield day
        totals = day.gate_totals_at_close
