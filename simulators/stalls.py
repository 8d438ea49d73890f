"""A stall's day: its prices on the screen, its sales on the scales, and the scales' heartbeats.

A stall has stable traits (how popular it is, how it writes prices, whether it
rounds totals down, which of its products sell best) and a daily plan (the
opening prices, a few price changes, an evening clearance). Sales arrive at a
rate proportional to the number of people in the market and are taken from the
batches the vendor registered at intake, first in, first out.
"""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, time, timedelta
from enum import StrEnum

from schemas.messages import (
    DeviceKind,
    DeviceMessage,
    PriceSet,
    Promotion,
    Sale,
    ScaleStatus,
    expected_total_fen,
)
from schemas.registry import Category, Market, Vendor
from schemas.topics import topic_for
from simulators.catalog import (
    CategoryProfile,
    Portion,
    PortionKind,
    ProductKnowledge,
    category_profile,
    knowledge,
)
from simulators.config import DayConfig
from simulators.events import DayEvent, MarketHours, MessageIds
from simulators.intake import PlannedBatch
from simulators.prices import (
    PricingStyle,
    changed_price,
    pick_style,
    promo_price,
    raw_day_price,
    shelf_fen,
    to_fen_per_kg,
    wholesale_drift,
)
from simulators.randomness import chance, derive_rng, poisson, triangular_int

#: A weighing takes a while: one scale does not record two sales within this time.
_MIN_GAP_MS = 8_000
#: Leftovers smaller than this are sold to the next customer as if the batch held more.
_REMNANT_G = 100


class RoundingHabit(StrEnum):
    NEVER = "never"
    TO_JIAO = "jiao"  # 13.46 → 13.40
    TO_YUAN = "yuan"  # 13.46 → 13.00 for bigger totals, else to jiao


@dataclass(frozen=True, slots=True)
class ScaleTraits:
    scale: str
    verified_doy: int
    lapsed: bool  # its yearly verification (强制检定) is overdue

    def calibration_due(self, day: date) -> date:
        """The next anniversary of its verification, or for a lapsed scale the last one."""
        this_year = self._anniversary(day.year)
        if self.lapsed:
            return this_year if this_year < day else self._anniversary(day.year - 1)
        return this_year if this_year > day else self._anniversary(day.year + 1)

    def _anniversary(self, year: int) -> date:
        return date(year, 1, 1) + timedelta(days=self.verified_doy % 365)


@dataclass(frozen=True, slots=True)
class StallTraits:
    """What stays the same about a stall from one day to the next."""

    market: str
    vendor: Vendor
    items: tuple[ProductKnowledge, ...]
    category: Category
    popularity: float
    style: PricingStyle
    rounding: RoundingHabit
    demand: tuple[float, ...]  # relative, aligned with ``items``
    price_bias: tuple[float, ...]
    scales: tuple[ScaleTraits, ...]

    @property
    def profile(self) -> CategoryProfile:
        return category_profile(self.category)


def stall_traits(market: Market, vendor: Vendor, seed: int) -> StallTraits:
    rng = derive_rng(seed, market.id, "stall", vendor.id)
    items = tuple(knowledge(market.products[plu]) for plu in vendor.products)
    categories = Counter(item.product.category for item in items)
    category = categories.most_common(1)[0][0] if items else Category.OTHER
    return StallTraits(
        market=market.id,
        vendor=vendor,
        items=items,
        category=category,
        popularity=rng.lognormvariate(0, 0.3),
        style=pick_style(rng),
        rounding=rng.choices(list(RoundingHabit), weights=(0.35, 0.45, 0.2))[0],
        demand=tuple(item.demand * rng.lognormvariate(0, 0.25) for item in items),
        price_bias=tuple(max(-0.25, min(0.25, rng.gauss(0, 0.12))) for _ in items),
        scales=tuple(_scale_traits(seed, scale) for scale in vendor.scales),
    )


def _scale_traits(seed: int, scale: str) -> ScaleTraits:
    rng = derive_rng(seed, "scale", scale)
    return ScaleTraits(scale, rng.randrange(365), chance(rng, 0.03))


# -- the day's prices -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PriceChange:
    at_ms: int
    plu: str
    regular: int  # fen per kg
    promo: int | None = None  # fen per kg, until closing
    promo_text: str | None = None


@dataclass(frozen=True, slots=True)
class StallDay:
    """A stall's plan for one day."""

    traits: StallTraits
    expected_sales: float
    changes: tuple[PriceChange, ...]  # time-ordered; opening prices first

    def expected_count(self, index: int) -> float:
        total = sum(self.traits.demand)
        return self.expected_sales * self.traits.demand[index] / total if total else 0.0


def plan_stall_day(
    traits: StallTraits,
    hours: MarketHours,
    *,
    day_factor: float,
    config: DayConfig,
    seed: int,
) -> StallDay:
    rng = derive_rng(seed, hours.day.isoformat(), "prices", traits.vendor.id)
    shelf = {
        item.product.plu: _opening_shelf(traits, index, hours.day, seed, rng)
        for index, item in enumerate(traits.items)
    }
    changes = list(_opening_prices(traits, shelf, hours, rng))
    changes += _regular_changes(traits, shelf, hours, config, rng)
    changes += _clearance(traits, shelf, hours, config, rng)
    expected = traits.profile.daily_sales * traits.popularity * day_factor * config.sales_scale
    return StallDay(traits, expected if traits.items else 0.0, tuple(changes))


def _opening_shelf(
    traits: StallTraits, index: int, day: date, seed: int, rng: random.Random
) -> int:
    item = traits.items[index]
    phases = derive_rng(seed, "drift", item.product.plu)
    drift = wholesale_drift(day, (phases.uniform(0, 2 * math.pi), phases.uniform(0, 2 * math.pi)))
    raw = raw_day_price(
        item, day, drift=drift, vendor_bias=traits.price_bias[index], noise=rng.gauss(0, 0.04)
    )
    return shelf_fen(raw, traits.style, rng)


def _opening_prices(
    traits: StallTraits, shelf: dict[str, int], hours: MarketHours, rng: random.Random
) -> Iterator[PriceChange]:
    at = hours.opens_ms + rng.randrange(5_000, 60_000)
    for item in traits.items:
        plu = item.product.plu
        yield PriceChange(at, plu, to_fen_per_kg(shelf[plu], item.product.unit))
        at += rng.randrange(2_000, 6_000)


def _regular_changes(
    traits: StallTraits,
    shelf: dict[str, int],
    hours: MarketHours,
    config: DayConfig,
    rng: random.Random,
) -> list[PriceChange]:
    window_start = hours.opens_ms + 2 * 3_600_000
    window_end = hours.at(config.clearance_from) - 30 * 60_000
    count = min(len(traits.items), poisson(rng, config.price_changes_per_stall))
    if count == 0 or window_end <= window_start:
        return []
    noon = hours.at(time(12, 0))
    chosen = rng.sample(range(len(traits.items)), count)
    times = sorted(rng.randrange(window_start, window_end) for _ in chosen)
    changes = []
    for at, index in zip(times, chosen, strict=True):
        item = traits.items[index]
        plu = item.product.plu
        upward = chance(rng, 0.6 if at < noon else 0.3)  # dearer when stock is short in the morning
        shelf[plu] = changed_price(shelf[plu], rng, upward=upward, style=traits.style)
        changes.append(PriceChange(at, plu, to_fen_per_kg(shelf[plu], item.product.unit)))
    return changes


def _clearance(
    traits: StallTraits,
    shelf: dict[str, int],
    hours: MarketHours,
    config: DayConfig,
    rng: random.Random,
) -> list[PriceChange]:
    """Evening clearance (晚市特价): perishables cheaper until closing."""
    if traits.profile.clearance_text is None or not chance(rng, config.clearance_share):
        return []
    start = max(hours.at(config.clearance_from), hours.opens_ms)
    if start >= hours.closes_ms - 15 * 60_000:
        return []
    changes = []
    for item in traits.items:
        text = item.category.clearance_text
        if text is None or not chance(rng, 0.6):
            continue
        plu = item.product.plu
        promo = promo_price(shelf[plu], rng, traits.style)
        if promo is None:
            continue
        at = rng.randrange(start, min(start + 45 * 60_000, hours.closes_ms - 10 * 60_000))
        unit = item.product.unit
        changes.append(
            PriceChange(at, plu, to_fen_per_kg(shelf[plu], unit), to_fen_per_kg(promo, unit), text)
        )
    return sorted(changes, key=lambda change: change.at_ms)


# -- the day's events ---------------------------------------------------------------
@dataclass(slots=True)
class _Lot:
    trace_code: str
    available_ms: int
    remaining_g: int


class Stock:
    """The vendor's batches on sale per product (all but those that failed their intake
    test), sold first in, first out."""

    def __init__(self, batches: Sequence[PlannedBatch]) -> None:
        self._lots: dict[str, deque[_Lot]] = {}
        for batch in sorted(batches, key=lambda b: b.at_ms):
            if not batch.failed:  # an untested batch is sold; a failed one never
                lot = _Lot(batch.trace_code, batch.at_ms, batch.quantity_g)
                self._lots.setdefault(batch.plu, deque()).append(lot)
        self.oversold = 0

    def has(self, plu: str, at_ms: int) -> bool:
        lots = self._lots.get(plu)
        return lots is not None and len(lots) > 0 and lots[0].available_ms <= at_ms

    def take(self, plu: str, at_ms: int, weight_g: int) -> tuple[str, int]:
        """Sell ``weight_g`` from the oldest lot; returns its trace code and the weight sold."""
        lots = self._lots[plu]
        lot = lots[0]
        while lot.remaining_g < weight_g and len(lots) > 1 and lots[1].available_ms <= at_ms:
            lots.popleft()  # the remnant is written off; the next crate is opened
            lot = lots[0]
        if lot.remaining_g < weight_g:
            if lot.remaining_g >= _REMNANT_G:
                weight_g = lot.remaining_g  # the customer takes what is left
            else:
                self.oversold += 1  # the batch held a little more than declared
        lot.remaining_g -= weight_g
        if lot.remaining_g <= 0:
            lots.popleft()
        return lot.trace_code, weight_g


def scale_division_g(weight_g: int) -> int:
    """Scale interval of a multi-range market scale: 6 kg/2 g, 15 kg/5 g, 30 kg/10 g."""
    if weight_g <= 6_000:
        return 2
    return 5 if weight_g <= 15_000 else 10


def on_scale(weight_g: int) -> int:
    division = scale_division_g(weight_g)
    return max(division, (weight_g + division // 2) // division * division)


def draw_portion(portion: Portion, rng: random.Random) -> int:
    if portion.kind is PortionKind.COUNTED:
        count = rng.randint(portion.count_low, portion.count_high)
        low, high = portion.mode_g - portion.spread_g, portion.mode_g + portion.spread_g
        return on_scale(sum(rng.randint(low, high) for _ in range(count)))
    if chance(rng, portion.jin_share):
        jin = 1 if portion.mode_g < 700 or chance(rng, 0.5) else 2
        return on_scale(round(jin * 500 * rng.uniform(0.97, 1.05)))
    return on_scale(triangular_int(rng, portion.low_g, portion.mode_g, portion.high_g))


def charged_total(
    weight_g: int, price_fen_per_kg: int, habit: RoundingHabit, rng: random.Random
) -> int:
    """The amount charged: weight × price, sometimes rounded down (抹零) by less than ¥1."""
    exact = expected_total_fen(weight_g, price_fen_per_kg)
    if habit is RoundingHabit.TO_YUAN and exact >= 1_000 and chance(rng, 0.3):
        return exact - exact % 100
    if habit is not RoundingHabit.NEVER and chance(rng, 0.6):
        return exact - exact % 10
    return exact


@dataclass(frozen=True, slots=True)
class _Heartbeat:
    online: bool
    zero_ok: bool
    seal_intact: bool
    calibration_due: date


@dataclass(frozen=True, slots=True)
class _Due:
    """Something one of the stall's devices publishes at ``at_ms``; ``order`` settles ties."""

    at_ms: int
    device: str
    order: int
    what: PriceChange | _Heartbeat | None  # None: a sale, decided when it happens

    @property
    def key(self) -> tuple[int, str, int]:
        return (self.at_ms, self.device, self.order)


class StallSimulation:
    """Generates one stall's events for one day, minute by minute."""

    def __init__(
        self,
        plan: StallDay,
        batches: Sequence[PlannedBatch],
        occupancy_share: Sequence[float],
        hours: MarketHours,
        *,
        seed: int,
        config: DayConfig,
    ) -> None:
        self.plan = plan
        self.traits = plan.traits
        self.hours = hours
        self.stock = Stock(batches)
        self._occupancy_share = occupancy_share
        self._config = config
        self._rng = derive_rng(seed, hours.day.isoformat(), "sales", self.traits.vendor.id)
        self._status_rng = derive_rng(seed, hours.day.isoformat(), "status", self.traits.vendor.id)
        self._ids = MessageIds(hours.day)
        self._regular: dict[str, int] = {}
        self._promo: dict[str, tuple[int, str]] = {}
        self._last_sale: dict[str, int] = {}
        self._seal_broken = {s.scale: chance(self._status_rng, 0.001) for s in self.traits.scales}
        self._index = {item.product.plu: i for i, item in enumerate(self.traits.items)}

    def events(self) -> Iterator[DayEvent]:
        scheduled = sorted(self._scheduled(), key=_due_key)
        position = 0
        for minute in range(self.hours.minutes):
            end = min(self.hours.minute_start(minute + 1), self.hours.closes_ms)
            due_now = []
            while position < len(scheduled) and scheduled[position].at_ms < end:
                due_now.append(scheduled[position])
                position += 1
            sales = self._sale_slots(minute, end)
            for due in (
                sorted(due_now + sales, key=_due_key) if due_now and sales else due_now or sales
            ):
                event = self._publish(due)
                if event is not None:
                    yield event
        for due in scheduled[position:]:  # the scales switching off at closing time
            event = self._publish(due)
            if event is not None:
                yield event

    # -- what is known in advance --------------------------------------------------
    def _scheduled(self) -> Iterator[_Due]:
        screen = self.traits.vendor.screens[0] if self.traits.vendor.screens else ""
        for change in self.plan.changes:
            yield _Due(change.at_ms, screen, 0, change)
        for scale in self.traits.scales:
            yield from self._heartbeats(scale)

    def _heartbeats(self, scale: ScaleTraits) -> Iterator[_Due]:
        rng, hours = self._status_rng, self.hours
        interval = self._config.heartbeat_interval_s * 1000
        at = hours.opens_ms + rng.randrange(90_000)
        while at < hours.closes_ms:
            yield _Due(at, scale.scale, 1, self._heartbeat(scale, online=True))
            at += interval + rng.randint(-5_000, 5_000)
        yield _Due(hours.closes_ms, scale.scale, 2, self._heartbeat(scale, online=False))

    def _heartbeat(self, scale: ScaleTraits, *, online: bool) -> _Heartbeat:
        return _Heartbeat(
            online=online,
            zero_ok=not chance(self._status_rng, 0.005),
            seal_intact=not self._seal_broken[scale.scale],
            calibration_due=scale.calibration_due(self.hours.day),
        )

    # -- sales -----------------------------------------------------------------------
    def _sale_slots(self, minute: int, end: int) -> list[_Due]:
        if not self.traits.scales or minute >= len(self._occupancy_share):
            return []
        start = self.hours.minute_start(minute)
        count = poisson(self._rng, self.plan.expected_sales * self._occupancy_share[minute])
        times = sorted(start + self._rng.randrange(60_000) for _ in range(count))
        slots = []
        for at in times:
            scale = self._rng.choice(self.traits.scales).scale
            if at >= end or at - self._last_sale.get(scale, -_MIN_GAP_MS) < _MIN_GAP_MS:
                continue  # after closing, or that scale is still busy: the customer buys elsewhere
            self._last_sale[scale] = at
            slots.append(_Due(at, scale, 3, None))
        return sorted(slots, key=_due_key)

    def _sale(self, at_ms: int, scale: str) -> Sale | None:
        candidates = [
            index
            for plu, index in self._index.items()
            if plu in self._regular and self.stock.has(plu, at_ms)
        ]
        if not candidates:
            return None
        weights = [self.traits.demand[index] for index in candidates]
        item = self.traits.items[self._rng.choices(candidates, weights=weights)[0]]
        plu = item.product.plu
        trace_code, weight = self.stock.take(plu, at_ms, draw_portion(item.portion, self._rng))
        price = self._promo[plu][0] if plu in self._promo else self._regular[plu]
        tare = None
        if chance(self._rng, item.category.tare_share):
            tare = on_scale(triangular_int(self._rng, 20, 60, 200))
        return Sale(
            msg_id=self._ids.next(scale),
            ts=self.hours.local(at_ms),
            vendor=self.traits.vendor.id,
            plu=plu,
            weight_g=weight,
            tare_g=tare,
            unit_price_fen_per_kg=price,
            total_fen=charged_total(weight, price, self.traits.rounding, self._rng),
            trace_code=trace_code,
        )

    # -- publishing -----------------------------------------------------------------
    def _publish(self, due: _Due) -> DayEvent | None:
        message: DeviceMessage | None
        if due.what is None:
            message = self._sale(due.at_ms, due.device)
            kind, channel = DeviceKind.SCALE, "sale"
        elif isinstance(due.what, PriceChange):
            message = self._price(due.at_ms, due.what)
            kind, channel = DeviceKind.SCREEN, "price"
        else:
            message = self._status(due.at_ms, due.device, due.what)
            kind, channel = DeviceKind.SCALE, "status"
        if message is None:
            return None
        return DayEvent(
            due.at_ms, due.device, topic_for(self.traits.market, kind, due.device, channel), message
        )

    def _status(self, at_ms: int, scale: str, heartbeat: _Heartbeat) -> ScaleStatus:
        return ScaleStatus(
            msg_id=self._ids.next(scale),
            ts=self.hours.local(at_ms),
            online=heartbeat.online,
            zero_ok=heartbeat.zero_ok,
            calibration_due=heartbeat.calibration_due,
            seal_intact=heartbeat.seal_intact,
        )

    def _price(self, at_ms: int, change: PriceChange) -> PriceSet | None:
        self._regular[change.plu] = change.regular
        promo = None
        if change.promo is not None and change.promo_text is not None:
            self._promo[change.plu] = (change.promo, change.promo_text)
            promo = Promotion(
                price_fen_per_kg=change.promo,
                text=change.promo_text,
                until=self.hours.local(self.hours.closes_ms),
            )
        else:
            self._promo.pop(change.plu, None)
        if not self.traits.vendor.screens:
            return None  # the price applies at the scale, but there is no screen to show it
        return PriceSet(
            msg_id=self._ids.next(self.traits.vendor.screens[0]),
            ts=self.hours.local(at_ms),
            vendor=self.traits.vendor.id,
            plu=change.plu,
            price_fen_per_kg=change.regular,
            promo=promo,
        )


def _due_key(due: _Due) -> tuple[int, str, int]:
    return due.key
