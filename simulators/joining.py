"""Vendors and devices that join or leave while a day is played: the simulators follow
the registry, as ingest and the web app do.

A played day is planned when it starts (``simulators.day.MarketDay``). When the
registry a run follows changes, :class:`RegistryWatch` says what changed:

* a vendor who now trades and was not in the plan **joins**: their own day is
  planned as a market of that vendor alone (their stall's shoppers, their batches
  through the market's intake desks, their price screen), and only the part still
  to come is played;
* a device the registry no longer lets publish (disabled, or its vendor left)
  **falls silent**: its remaining messages are dropped, as a device switched off.

The joiners' plans use the market's seed, so a replay of the same changes is the
same day.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date

from schemas.registry import Market, MarketFile, Registry, RegistrySource, Vendor
from simulators.config import DayConfig
from simulators.day import MarketDay


def joiners_market(market: Market, vendors: Sequence[Vendor]) -> Market:
    """``market`` with only ``vendors`` trading, and none of its gate counters (the
    shoppers they count are already in the day being played)."""
    spec = market.spec
    theirs = {d for v in vendors for d in (*v.scales, *v.screens)}
    intake = {station.id for station in spec.intake}
    disabled = frozenset(d for d in spec.disabled_devices if d in theirs | intake)
    return Market(
        MarketFile(
            **{
                **dict(spec),
                "vendors": tuple(vendors),
                "gates": (),
                "disabled_devices": disabled,
            }
        )
    )


@dataclass
class Changes:
    """What the registry changed since the last look, per market."""

    #: market id -> the days planned for vendors who joined
    joined: dict[str, MarketDay] = field(default_factory=dict)


@dataclass
class RegistryWatch:
    """The registry a run follows, and who is in the plan being played."""

    source: RegistrySource
    day: date
    seed: int
    config: DayConfig | None
    #: market id -> vendor ids in the plan
    planned: dict[str, set[str]]
    _seen: Registry | None = None

    @classmethod
    def of(
        cls,
        source: RegistrySource,
        days: Sequence[MarketDay],
        day: date,
        seed: int,
        config: DayConfig | None,
    ) -> RegistryWatch:
        planned = {d.market.id: {v.id for v in d.market.active_vendors} for d in days}
        return cls(source, day, seed, config, planned, source.current())

    def may_publish(self, market: str, device: str) -> bool:
        """Whether the registry lets ``device`` publish now (unknown devices may not)."""
        registry = self._seen if self._seen is not None else self.source.current()
        found = registry.device(market, device)
        return found is not None and found.enabled

    def changes(self) -> Changes:
        """Vendors who joined since the last call (an unchanged registry: none)."""
        current = self.source.current()
        if current is self._seen:
            return Changes()
        self._seen = current
        changes = Changes()
        for market_id, planned in self.planned.items():
            market = current.markets.get(market_id)
            if market is None:
                continue
            joining = [v for v in market.active_vendors if v.id not in planned]
            if joining:
                planned.update(v.id for v in joining)
                changes.joined[market_id] = MarketDay(
                    joiners_market(market, joining),
                    self.day,
                    seed=self.seed,
                    config=_unstaged(self.config),
                )
        return changes


def _unstaged(config: DayConfig | None) -> DayConfig | None:
    """A joiner's day as an ordinary one: failures staged for the market's day (the
    demo's) are the market's, not forced again on a newcomer's few batches."""
    if config is None or not config.spot_check_failures_at_least:
        return config
    return replace(config, spot_check_failures_at_least=0)


def devices_of(days: Mapping[str, MarketDay]) -> Iterator[tuple[str, str]]:
    """(market, device) of every device a joiners' day publishes from."""
    for market_id, day in days.items():
        for vendor in day.market.active_vendors:
            for device in (*vendor.scales, *vendor.screens):
                yield market_id, device
