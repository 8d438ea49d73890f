"""Morning deliveries: every stall's batches, registered at an intake station, a sample tested.

Each vendor's delivery arrives between ``intake_from`` and ``intake_until`` (most
before opening) and every product is registered as one batch with a trace code,
origin, supplier and certificate. Markets rapid-test a sample of their batches, not
every one: the desk tests ``intake_test_share`` of the vegetable and fruit batches
(the enzyme-inhibition test looks for pesticide residues) and no batch of another
category; which ones is drawn on a random stream of its own, so the rest of the
plan does not depend on it. Residues that fail the test fall on vegetables and fruit
only, as often as it takes for ``rapid_test_fail_rate`` of all batches to carry
them; only a tested batch is caught. A batch that fails the test is withdrawn and
never sold (some vendors fetch a replacement later in the morning, which is
tested); an untested batch is sold. A batch holds comfortably more than the stall
expects to sell, so selling out is uncommon.

Trace codes read ``{PREFIX}-{YYYYMMDD}-{STALL}-{NNNN}``: the market's prefix, the
market day, the stall and the stall's batch number of the day. They are unique
per market and day by construction.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

from schemas.messages import (
    FAIL_INHIBITION_PCT,
    BatchIntake,
    DeviceKind,
    RapidTest,
    RapidTestReport,
    RapidTestResult,
)
from schemas.registry import Category, Market
from schemas.topics import topic_for
from simulators.catalog import CertificateKind, Origin, ProductKnowledge
from simulators.config import DayConfig
from simulators.events import DayEvent, MarketHours, MessageIds
from simulators.randomness import chance, derive_rng

if TYPE_CHECKING:
    from simulators.stalls import StallDay

#: Rapid tests at or above this enzyme inhibition, in tenths of a percent, fail.
FAIL_FROM_TENTHS = int(FAIL_INHIBITION_PCT * 10)
_COLD_CHAIN = frozenset({Category.MEAT, Category.POULTRY, Category.SEAFOOD})
#: Organophosphate/carbamate residues (what the enzyme-inhibition test finds) are a produce problem.
_SPRAYED = frozenset({Category.VEGETABLES, Category.FRUIT})


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    at_ms: int
    station: str | None  # None: the market has no intake station to register it
    vendor: str
    plu: str
    trace_code: str
    origin: str
    supplier: str
    quantity_g: int
    certificate_no: str
    #: the intake's rapid test; None: not tested at intake
    inhibition_tenths: int | None

    @property
    def tested(self) -> bool:
        return self.inhibition_tenths is not None

    @property
    def passed(self) -> bool:
        """Tested at intake and passed (an untested batch has not passed a test)."""
        return self.inhibition_tenths is not None and self.inhibition_tenths < FAIL_FROM_TENTHS

    @property
    def failed(self) -> bool:
        """Tested at intake and failed: withdrawn, never sold."""
        return self.inhibition_tenths is not None and self.inhibition_tenths >= FAIL_FROM_TENTHS


@dataclass(frozen=True, slots=True)
class PlannedCheck:
    """A spot check: a batch on sale tested again at its intake station."""

    at_ms: int
    batch: PlannedBatch
    inhibition_tenths: int

    @property
    def passed(self) -> bool:
        return self.inhibition_tenths < FAIL_FROM_TENTHS


def trace_prefix(market: Market, config: DayConfig) -> str:
    return config.trace_prefix or market.id.upper()[:16]


def trace_code(prefix: str, day: date, stall: str, number: int) -> str:
    return f"{prefix}-{day:%Y%m%d}-{stall}-{number:04d}"


def station_for(category: Category, stations: Sequence[str]) -> str | None:
    """Meat, poultry and seafood use the cold-chain station (the last one) if there are two."""
    if not stations:
        return None
    return stations[-1] if category in _COLD_CHAIN else stations[0]


def plan_intake(
    market: Market,
    stalls: Sequence[StallDay],
    hours: MarketHours,
    *,
    seed: int,
    config: DayConfig,
) -> list[PlannedBatch]:
    stations = [station.id for station in market.spec.intake]
    prefix = trace_prefix(market, config)
    fail_rate = _produce_fail_rate(stalls, config.rapid_test_fail_rate)
    batches: list[PlannedBatch] = []
    for stall in stalls:
        batches += _stall_batches(
            stall, hours, stations, prefix, seed=seed, config=config, fail_rate=fail_rate
        )
    return sorted(batches, key=lambda batch: (batch.at_ms, batch.trace_code))


def _produce_fail_rate(stalls: Sequence[StallDay], overall: float) -> float:
    """Failure probability of a produce batch such that ``overall`` of all batches fail."""
    items = [item for stall in stalls for item in stall.traits.items]
    produce = sum(item.product.category in _SPRAYED for item in items)
    return min(1.0, overall * len(items) / produce) if produce else 0.0


def _stall_batches(
    stall: StallDay,
    hours: MarketHours,
    stations: Sequence[str],
    prefix: str,
    *,
    seed: int,
    config: DayConfig,
    fail_rate: float,
) -> list[PlannedBatch]:
    traits = stall.traits
    vendor = traits.vendor
    rng = derive_rng(seed, hours.day.isoformat(), "intake", vendor.id)
    # Which batches are tested: a stream of its own, so ``rng`` draws as it always did.
    sampling = derive_rng(seed, hours.day.isoformat(), "intake-tests", vendor.id)
    preferences = derive_rng(seed, traits.market, "suppliers", vendor.id)
    arrival = _arrival(hours.at(config.intake_from), hours.at(config.intake_until), rng)
    station = station_for(traits.category, stations)
    number = 0
    batches = []
    for index, item in enumerate(traits.items):
        arrival += rng.randrange(20_000, 75_000)
        number += 1
        supplier = _supplier(item, preferences, rng)
        quantity = _quantity(item, stall.expected_count(index), rng)
        origin = _origin(item, preferences, rng)
        sprayed = item.product.category in _SPRAYED
        # Drawn for every batch, tested or not, so that the draws after it stay the same.
        inhibition = _rapid_test(rng, fail_rate if sprayed else 0.0)
        tested = sprayed and chance(sampling, config.intake_test_share)
        batch = PlannedBatch(
            at_ms=min(arrival, hours.closes_ms - 1),
            station=station,
            vendor=vendor.id,
            plu=item.product.plu,
            trace_code=trace_code(prefix, hours.day, vendor.stall, number),
            origin=origin.name,
            supplier=supplier,
            quantity_g=quantity,
            certificate_no=_certificate(item, origin, hours.day, rng),
            inhibition_tenths=inhibition if tested else None,
        )
        batches.append(batch)
        if batch.failed and chance(rng, config.replacement_share):
            number += 1
            batches.append(
                _replacement(
                    batch, item, hours, trace_code(prefix, hours.day, vendor.stall, number), rng
                )
            )
    return batches


def _arrival(start_ms: int, end_ms: int, rng: random.Random) -> int:
    """Most deliveries come in the first half of the window, a few stragglers later."""
    span = end_ms - start_ms
    if chance(rng, 0.8):
        return round(rng.triangular(start_ms, start_ms + span / 2, start_ms + span / 5))
    return rng.randrange(start_ms + span // 3, end_ms)


def _replacement(
    failed: PlannedBatch, item: ProductKnowledge, hours: MarketHours, code: str, rng: random.Random
) -> PlannedBatch:
    """A second batch from another supplier, fetched 1–2.5 hours later and tested (the
    desk does not take the vendor's word for the replacement)."""
    others = [s for s in item.category.suppliers if s != failed.supplier] or [failed.supplier]
    origin = rng.choice(item.origins)
    at = failed.at_ms + rng.randrange(60 * 60_000, 150 * 60_000)
    return PlannedBatch(
        at_ms=min(at, hours.closes_ms - 1),
        station=failed.station,
        vendor=failed.vendor,
        plu=failed.plu,
        trace_code=code,
        origin=origin.name,
        supplier=rng.choice(others),
        quantity_g=failed.quantity_g,
        certificate_no=_certificate(item, origin, hours.day, rng),
        inhibition_tenths=_passing_inhibition(rng),
    )


def _supplier(item: ProductKnowledge, preferences: random.Random, rng: random.Random) -> str:
    suppliers = item.category.suppliers
    regular = suppliers[preferences.randrange(len(suppliers))]
    return rng.choice(suppliers) if chance(rng, 0.15) else regular


def _origin(item: ProductKnowledge, preferences: random.Random, rng: random.Random) -> Origin:
    regular = item.origins[preferences.randrange(len(item.origins))]
    return rng.choice(item.origins) if chance(rng, 0.25) else regular


def _quantity(item: ProductKnowledge, expected_sales: float, rng: random.Random) -> int:
    """Enough for the expected sales with a margin, rounded up to whole packs."""
    mean_g = item.portion.mean_g
    wanted = (
        expected_sales * mean_g * rng.uniform(1.2, 1.5) + 2.5 * math.sqrt(expected_sales) * mean_g
    )
    pack = item.category.pack_g
    return max(pack, math.ceil(wanted / pack) * pack)


def _certificate(item: ProductKnowledge, origin: Origin, day: date, rng: random.Random) -> str:
    kind = item.category.certificate
    if kind is CertificateKind.QUARANTINE:
        return f"{kind.value}{origin.division[:2]}{rng.randrange(10**8):08d}"
    if kind is CertificateKind.ORIGIN:
        return f"{kind.value}{origin.division}{day:%Y%m%d}{rng.randrange(1000):03d}"
    return f"{kind.value}{origin.division}{day:%Y%m%d}{rng.randrange(10**4):04d}"


def _rapid_test(rng: random.Random, fail_rate: float) -> int:
    if chance(rng, fail_rate):
        return rng.randrange(FAIL_FROM_TENTHS, 851)
    return _passing_inhibition(rng)


def _passing_inhibition(rng: random.Random) -> int:
    """Mostly 5–35 %, occasionally up to just under the 50 % limit."""
    return min(FAIL_FROM_TENTHS - 1, round(rng.triangular(30, 470, 150)))


def plan_spot_checks(
    market: Market,
    batches: Sequence[PlannedBatch],
    hours: MarketHours,
    *,
    seed: int,
    config: DayConfig,
) -> list[PlannedCheck]:
    """Around midday the market tests a share of the produce batches on sale: those that
    passed at intake (a re-test) and those not tested at intake (their first test).

    Its own random stream, so the rest of the day is the same with or without checks.
    Most pass; ``spot_check_fail_rate`` of them fail (residues the intake test missed,
    or a batch never tested), which in a real market suspends the batch's sale; the
    first ``spot_check_failures_at_least`` checks fail whatever the rate (the demo's).
    """
    rng = derive_rng(seed, market.id, hours.day.isoformat(), "spot-checks")
    candidates = [
        batch
        for batch in batches
        if not batch.failed
        and batch.station is not None
        and market.products[batch.plu].category in _SPRAYED
    ]
    forced = config.spot_check_failures_at_least
    wanted = min(len(candidates), max(forced, round(len(candidates) * config.spot_check_share)))
    # Between three hours after opening and three before closing (at least just after
    # the batch came in, for a replacement fetched late in the morning).
    start = hours.opens_ms + 3 * 3_600_000
    end = max(start + 1, hours.closes_ms - 3 * 3_600_000)
    checks = []
    for index, batch in enumerate(rng.sample(candidates, wanted)):
        failed = chance(rng, config.spot_check_fail_rate) or index < forced
        tenths = rng.randrange(FAIL_FROM_TENTHS, 851) if failed else _passing_inhibition(rng)
        checks.append(PlannedCheck(max(rng.randrange(start, end), batch.at_ms + 1), batch, tenths))
    return sorted(checks, key=lambda check: (check.at_ms, check.batch.trace_code))


def intake_events(
    market: str,
    station: str,
    batches: Sequence[PlannedBatch],
    hours: MarketHours,
    checks: Sequence[PlannedCheck] = (),
) -> Iterator[DayEvent]:
    """The station's batch registrations and spot checks in time order (one id sequence)."""
    ids = MessageIds(hours.day)
    mine: list[PlannedBatch | PlannedCheck] = [
        *(batch for batch in batches if batch.station == station),
        *(check for check in checks if check.batch.station == station),
    ]
    for planned in sorted(mine, key=lambda one: one.at_ms):
        if isinstance(planned, PlannedCheck):
            yield _check_event(market, station, planned, hours, ids.next(station))
        else:
            yield _batch_event(market, station, planned, hours, ids.next(station))


def _check_event(
    market: str, station: str, check: PlannedCheck, hours: MarketHours, msg_id: int
) -> DayEvent:
    message = RapidTestReport(
        msg_id=msg_id,
        ts=hours.local(check.at_ms),
        trace_code=check.batch.trace_code,
        vendor=check.batch.vendor,
        plu=check.batch.plu,
        rapid_test=_test_of(check.passed, check.inhibition_tenths),
    )
    topic = topic_for(market, DeviceKind.INTAKE, station, "test")
    return DayEvent(check.at_ms, station, topic, message)


def _test_of(passed: bool, tenths: int) -> RapidTest:
    return RapidTest(
        result=RapidTestResult.PASS if passed else RapidTestResult.FAIL,
        inhibition_pct=Decimal(tenths).scaleb(-1),
    )


def _batch_event(
    market: str, station: str, batch: PlannedBatch, hours: MarketHours, msg_id: int
) -> DayEvent:
    message = BatchIntake(
        msg_id=msg_id,
        ts=hours.local(batch.at_ms),
        trace_code=batch.trace_code,
        vendor=batch.vendor,
        plu=batch.plu,
        origin=batch.origin,
        supplier=batch.supplier,
        quantity_g=batch.quantity_g,
        certificate_no=batch.certificate_no,
        rapid_test=(
            None
            if batch.inhibition_tenths is None
            else _test_of(batch.passed, batch.inhibition_tenths)
        ),
    )
    topic = topic_for(market, DeviceKind.INTAKE, station, "batch")
    return DayEvent(batch.at_ms, station, topic, message)
