"""The market-day model: determinism, the shape of the day, and validity of every message."""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta
from itertools import pairwise

import pytest

from schemas.messages import (
    BatchIntake,
    GateCount,
    PriceSet,
    RapidTestReport,
    RapidTestResult,
    Sale,
    ScaleStatus,
    expected_total_fen,
)
from schemas.registry import Market
from schemas.topics import CHANNELS, parse_topic
from simulators.config import DayConfig
from simulators.day import MarketDay, market_days
from simulators.events import DayEvent, msg_id_base
from storage.footfall import counter_increase
from tests.simulators.conftest import DAY


def _stream(market: Market, seed: int, day: date = DAY) -> list[tuple[str, bytes]]:
    return [(event.topic, event.payload()) for event in MarketDay(market, day, seed=seed).events()]


def _local(market: Market, moment: datetime) -> datetime:
    return moment.astimezone(market.tz)


# -- determinism ---------------------------------------------------------------------------
def test_same_seed_gives_byte_identical_stream(xiaohe_market: Market) -> None:
    first = _stream(xiaohe_market, seed=3)
    assert len(first) > 1_000
    assert _stream(xiaohe_market, seed=3) == first


def test_different_seed_gives_different_stream(xiaohe_market: Market) -> None:
    assert _stream(xiaohe_market, seed=3) != _stream(xiaohe_market, seed=4)


def test_events_are_time_ordered(nanmen_day: tuple[MarketDay, list[DayEvent]]) -> None:
    _, events = nanmen_day
    keys = [event.sort_key for event in events]
    assert keys == sorted(keys)
    assert all(event.at_ms == _epoch_ms(event.message.ts) for event in events)


def _epoch_ms(moment: datetime) -> int:
    return (moment - datetime.fromisoformat("1970-01-01T00:00:00+00:00")) // timedelta(
        milliseconds=1
    )


# -- validity --------------------------------------------------------------------------------
def test_every_message_matches_its_topic_and_the_registry(
    example_market: Market, nanmen_day: tuple[MarketDay, list[DayEvent]]
) -> None:
    _, events = nanmen_day
    for event in events:
        topic = parse_topic(event.topic)
        device = example_market.devices[event.device]
        assert (topic.market, topic.device, topic.kind) == (
            example_market.id,
            device.id,
            device.kind,
        )
        assert isinstance(event.message, CHANNELS[(topic.kind, topic.channel)])
        assert topic.model.model_validate_json(event.payload()) == event.message
        message = event.message
        if isinstance(message, Sale | PriceSet):
            assert message.vendor == device.vendor
            assert message.plu in example_market.vendors[message.vendor].products
        if isinstance(message, BatchIntake):
            assert message.plu in example_market.vendors[message.vendor].products


def test_message_ids_increase_per_device_within_the_days_block(
    nanmen_day: tuple[MarketDay, list[DayEvent]],
) -> None:
    _, events = nanmen_day
    last: dict[str, int] = {}
    for event in events:
        msg_id = event.message.msg_id
        assert msg_id > last.get(event.device, msg_id_base(DAY))
        last[event.device] = msg_id
    assert max(last.values()) < msg_id_base(DAY + timedelta(days=1))


def test_timestamps_are_local_and_aware(
    example_market: Market, nanmen_day: tuple[MarketDay, list[DayEvent]]
) -> None:
    _, events = nanmen_day
    offsets = {event.message.ts.utcoffset() for event in events}
    assert offsets == {timedelta(hours=8)}


def test_nothing_happens_outside_opening_hours_except_morning_intake(
    example_market: Market, nanmen_day: tuple[MarketDay, list[DayEvent]]
) -> None:
    _, events = nanmen_day
    opens = datetime.combine(DAY, time(6), example_market.tz)
    closes = datetime.combine(DAY, time(19), example_market.tz)
    for event in events:
        ts = event.message.ts
        if isinstance(event.message, BatchIntake):
            assert datetime.combine(DAY, time(5), example_market.tz) <= ts < closes
        else:
            assert opens <= ts <= closes, event
    intake_times = [e.message.ts for e in events if isinstance(e.message, BatchIntake)]
    assert (
        sum(ts < opens for ts in intake_times) > len(intake_times) / 2
    )  # most arrive before opening


# -- the shape of the day -----------------------------------------------------------------------
def _peaks(per_hour: Counter[int]) -> tuple[float, float, float]:
    morning = max(per_hour[7], per_hour[8])
    midday = statistics.mean(per_hour[h] for h in (12, 13, 14))
    evening = max(per_hour[17], per_hour[18])
    return morning, midday, evening


def test_sales_peak_in_the_morning_and_evening(
    example_market: Market, nanmen_day: tuple[MarketDay, list[DayEvent]]
) -> None:
    _, events = nanmen_day
    per_hour = Counter(
        _local(example_market, e.message.ts).hour for e in events if isinstance(e.message, Sale)
    )
    morning, midday, evening = _peaks(per_hour)
    assert morning > 2 * midday
    assert evening > 2 * midday


def test_footfall_peaks_in_the_morning_and_evening(
    example_market: Market, nanmen_day: tuple[MarketDay, list[DayEvent]]
) -> None:
    _, events = nanmen_day
    entries: Counter[int] = Counter()
    previous: dict[str, int | None] = defaultdict(lambda: None)
    for event in events:
        if isinstance(event.message, GateCount):
            hour = _local(example_market, event.message.ts).hour
            entries[hour] += counter_increase(previous[event.device], event.message.in_total)
            previous[event.device] = event.message.in_total
    morning, midday, evening = _peaks(entries)
    assert morning > 2 * midday
    assert evening > 2 * midday
    assert sum(entries.values()) > 1_000 * len(example_market.spec.gates) / 2


def test_heartbeats_every_few_minutes_and_an_orderly_shutdown(
    nanmen_day: tuple[MarketDay, list[DayEvent]],
) -> None:
    _, events = nanmen_day
    statuses: dict[str, list[ScaleStatus]] = defaultdict(list)
    for event in events:
        if isinstance(event.message, ScaleStatus):
            statuses[event.device].append(event.message)
    assert len(statuses) == 40
    for beats in statuses.values():
        gaps = [(b.ts - a.ts).total_seconds() for a, b in pairwise(beats[:-1])]
        assert min(gaps) >= 280
        assert max(gaps) <= 320
        assert all(beat.online and not beat.will for beat in beats[:-1])
        assert not beats[-1].online
        assert not beats[-1].will


# -- stock and traceability ------------------------------------------------------------------------
def test_sales_come_from_registered_batches_not_failed_of_the_same_vendor_and_product(
    nanmen_day: tuple[MarketDay, list[DayEvent]],
) -> None:
    _, events = nanmen_day
    batches: dict[str, BatchIntake] = {}
    sold: Counter[str] = Counter()
    untested_sold: set[str] = set()
    for event in events:
        message = event.message
        if isinstance(message, BatchIntake):
            assert message.trace_code not in batches, "trace codes are unique"
            batches[message.trace_code] = message
        elif isinstance(message, Sale):
            batch = batches.get(message.trace_code)
            assert batch is not None, f"sale from unregistered batch {message.trace_code}"
            assert (batch.vendor, batch.plu) == (message.vendor, message.plu)
            # Passed at intake, or not tested there (markets test a sample): never failed.
            if batch.rapid_test is None:
                untested_sold.add(message.trace_code)
            else:
                assert batch.rapid_test.result is RapidTestResult.PASS
            sold[message.trace_code] += message.weight_g
    oversold = [code for code, grams in sold.items() if grams > batches[code].quantity_g]
    assert len(oversold) <= 0.02 * len(batches)
    assert len(sold) > 0.8 * len(batches)
    assert len(untested_sold) > 0.5 * len(sold)


def test_trace_codes_name_market_day_stall_and_number(
    nanmen_day: tuple[MarketDay, list[DayEvent]],
) -> None:
    _, events = nanmen_day
    pattern = re.compile(r"^NANMEN-20261121-([A-E]\d\d)-(\d{4})$")
    for event in events:
        if isinstance(event.message, BatchIntake):
            match = pattern.match(event.message.trace_code)
            assert match is not None, event.message.trace_code
            assert event.message.vendor == f"V-{match.group(1)}"


def test_rapid_tests_fail_about_two_percent_over_several_days(example_market: Market) -> None:
    # Every vegetable and fruit batch tested: then ~2 % of all batches fail, all produce.
    every = DayConfig(intake_test_share=1.0)
    days = market_days(example_market, DAY, 8, seed=11, config=every)
    batches = [batch for day in days for batch in day.batches]
    failed = [batch for batch in batches if batch.failed]
    assert 0.005 < len(failed) / len(batches) < 0.05
    assert all(_produce(example_market, batch.plu) for batch in failed)
    assert all(
        batch.inhibition_tenths is not None and batch.inhibition_tenths >= 500 for batch in failed
    )
    passing = [batch.inhibition_tenths for batch in batches if batch.passed]
    assert all(tenths is not None and tenths < 500 for tenths in passing)
    assert sum(tenths is not None and 50 <= tenths <= 350 for tenths in passing) > 0.8 * len(
        passing
    )


def test_a_share_of_produce_batches_is_tested_at_intake_and_nothing_else(
    example_market: Market,
) -> None:
    batches = [
        batch for day in market_days(example_market, DAY, 8, seed=11) for batch in day.batches
    ]
    produce = [batch for batch in batches if _produce(example_market, batch.plu)]
    others = [batch for batch in batches if not _produce(example_market, batch.plu)]
    assert len(produce) > 200
    assert others
    tested = [batch for batch in produce if batch.tested]
    # The default share, 30 %, give or take what chance does over ~1,000 draws.
    assert DayConfig().intake_test_share == 0.3
    assert 0.25 < len(tested) / len(produce) < 0.35
    assert not any(batch.tested for batch in others)  # meat, seafood…: no pesticide test
    assert all(batch.failed or batch.passed for batch in tested)
    assert not any(batch.failed or batch.passed for batch in batches if not batch.tested)


def test_which_batches_are_tested_is_drawn_on_a_stream_of_its_own(
    example_market: Market,
) -> None:
    # Without residues no test fails, so testing none or all changes only the tests.
    def day(share: float) -> list[tuple[int, str, str]]:
        config = DayConfig(rapid_test_fail_rate=0.0, intake_test_share=share)
        return [
            (e.at_ms, e.device, e.message.model_dump_json(exclude={"rapid_test"}))
            for e in MarketDay(example_market, DAY, seed=5, config=config).events()
        ]

    assert day(0.0) == day(1.0) == day(0.3)
    # And the draw is the seed's: the same batches are tested every time.
    first, second = (MarketDay(example_market, DAY, seed=5).batches for _ in range(2))
    assert [b.tested for b in first] == [b.tested for b in second]
    assert 0 < sum(b.tested for b in first) < len(first)


def test_the_intake_test_share_is_a_share() -> None:
    with pytest.raises(ValueError, match="intake_test_share"):
        DayConfig(intake_test_share=1.5)


def test_failed_batches_are_published_as_failures_and_untested_ones_without_a_test(
    example_market: Market,
) -> None:
    config = DayConfig(rapid_test_fail_rate=0.2)
    day = MarketDay(example_market, DAY, seed=5, config=config)
    events = list(day.events())
    intakes = [e.message for e in events if isinstance(e.message, BatchIntake)]
    results = Counter(None if m.rapid_test is None else m.rapid_test.result for m in intakes)
    assert results[RapidTestResult.FAIL] > 5
    assert results[None] == sum(not batch.tested for batch in day.batches) > 0
    for message in intakes:
        if message.rapid_test is not None and message.rapid_test.result is RapidTestResult.FAIL:
            assert message.rapid_test.inhibition_pct >= 50
    sold = {e.message.trace_code for e in events if isinstance(e.message, Sale)}
    assert not sold & {batch.trace_code for batch in day.batches if batch.failed}


def test_spot_checks_test_produce_batches_on_sale_around_midday(
    example_market: Market,
) -> None:
    config = DayConfig(spot_check_share=0.2, spot_check_fail_rate=0.3)
    day = MarketDay(example_market, DAY, seed=5, config=config)
    events = list(day.events())
    batches = {e.message.trace_code: e for e in events if isinstance(e.message, BatchIntake)}
    checks = [e for e in events if isinstance(e.message, RapidTestReport)]

    # On sale: passed at intake, or not tested there (a spot check is then its first test).
    produce = [b for b in day.batches if not b.failed and _produce(example_market, b.plu)]
    assert len(checks) == round(0.2 * len(produce)) > 5
    untested = 0
    for check in checks:
        message = check.message
        assert isinstance(message, RapidTestReport)
        intake = batches[message.trace_code]
        assert isinstance(intake.message, BatchIntake)
        if intake.message.rapid_test is None:
            untested += 1
        else:
            assert intake.message.rapid_test.result is RapidTestResult.PASS
        assert (message.vendor, message.plu) == (intake.message.vendor, intake.message.plu)
        assert check.device == intake.device  # the batch's own intake station
        assert check.at_ms > intake.at_ms
        local = _local(example_market, message.ts).time()
        assert time(9) <= local <= time(16)
        failed = message.rapid_test.result is RapidTestResult.FAIL
        assert failed == (message.rapid_test.inhibition_pct >= 50)
    outcomes = Counter(check.message.rapid_test.result for check in checks)  # type: ignore[union-attr]
    assert outcomes[RapidTestResult.FAIL] > 0
    assert outcomes[RapidTestResult.PASS] > 0
    assert 0 < untested < len(checks)


def test_a_staged_day_fails_its_first_spot_checks_whatever_the_rate(
    example_market: Market,
) -> None:
    staged = DayConfig(spot_check_fail_rate=0.0, spot_check_failures_at_least=2)
    checks = MarketDay(example_market, DAY, seed=5, config=staged).spot_checks
    assert sum(not check.passed for check in checks) == 2
    plain = MarketDay(example_market, DAY, seed=5, config=DayConfig(spot_check_fail_rate=0.0))
    assert all(check.passed for check in plain.spot_checks)
    with pytest.raises(ValueError, match="spot_check_failures_at_least"):
        DayConfig(spot_check_failures_at_least=-1)


def test_spot_checks_leave_the_rest_of_the_day_as_it_was(example_market: Market) -> None:
    without = MarketDay(example_market, DAY, seed=5, config=DayConfig(spot_check_share=0.0))
    checked = MarketDay(example_market, DAY, seed=5, config=DayConfig(spot_check_share=0.2))
    others = [
        (e.at_ms, e.device, e.message.model_dump_json(exclude={"msg_id"}))
        for e in checked.events()
        if not isinstance(e.message, RapidTestReport)
    ]
    assert others == [
        (e.at_ms, e.device, e.message.model_dump_json(exclude={"msg_id"})) for e in without.events()
    ]


def _produce(market: Market, plu: str) -> bool:
    return market.products[plu].category.value in {"vegetables", "fruit"}


# -- gate counters --------------------------------------------------------------------------
def _counter_series(days: list[MarketDay]) -> dict[str, list[GateCount]]:
    series: dict[str, list[GateCount]] = defaultdict(list)
    for day in days:
        for event in day.events():
            if isinstance(event.message, GateCount):
                series[event.device].append(event.message)
    return series


def test_counters_never_decrease_across_days_without_resets(example_market: Market) -> None:
    days = list(
        market_days(example_market, DAY, 3, seed=2, config=DayConfig(counter_reset_probability=0.0))
    )
    series = _counter_series(days)
    assert len(series) == 4
    for readings in series.values():
        for before, after in pairwise(readings):
            assert after.in_total >= before.in_total
            assert after.out_total >= before.out_total
        assert readings[-1].in_total > 0


def test_counters_decrease_only_at_the_configured_reset(example_market: Market) -> None:
    day = MarketDay(example_market, DAY, seed=2, config=DayConfig(counter_reset_probability=1.0))
    series = _counter_series([day])
    for gate, readings in series.items():
        reset_at = day.counters[gate].reset_at_ms
        assert reset_at is not None
        drops = [(a, b) for a, b in pairwise(readings) if b.in_total < a.in_total]
        assert len(drops) == 1
        before, after = drops[0]
        assert _epoch_ms(before.ts) < reset_at <= _epoch_ms(after.ts)
        assert after.in_total < 100  # counting again from zero


def test_gate_totals_carry_over_to_the_next_day(example_market: Market) -> None:
    first, second = market_days(
        example_market, DAY, 2, seed=2, config=DayConfig(counter_reset_probability=0)
    )
    closing = first.gate_totals_at_close
    opening = {e.device: e.message for e in second.events() if isinstance(e.message, GateCount)}
    for gate, totals in closing.items():
        assert opening[gate].in_total >= totals.in_total > 0


# -- prices ---------------------------------------------------------------------------------------
def test_promotions_are_evening_discounts_until_closing(
    example_market: Market, nanmen_day: tuple[MarketDay, list[DayEvent]]
) -> None:
    _, events = nanmen_day
    closes = datetime.combine(DAY, time(19), example_market.tz)
    promos = [
        e.message for e in events if isinstance(e.message, PriceSet) and e.message.promo is not None
    ]
    assert len(promos) >= 5
    for price in promos:
        assert price.promo is not None
        assert price.promo.price_fen_per_kg < price.price_fen_per_kg
        assert price.promo.until == closes
        assert price.ts >= datetime.combine(DAY, time(17, 30), example_market.tz)
        assert price.promo.text in {"晚市特价", "水果特价"}


def test_scales_charge_the_price_on_the_screen(
    nanmen_day: tuple[MarketDay, list[DayEvent]],
) -> None:
    _, events = nanmen_day
    current: dict[tuple[str, str], int] = {}
    for event in events:
        message = event.message
        if isinstance(message, PriceSet):
            effective = (
                message.promo.price_fen_per_kg if message.promo else message.price_fen_per_kg
            )
            current[(message.vendor, message.plu)] = effective
        elif isinstance(message, Sale):
            assert message.unit_price_fen_per_kg == current[(message.vendor, message.plu)]


def test_prices_are_written_like_market_prices(
    nanmen_day: tuple[MarketDay, list[DayEvent]],
) -> None:
    _, events = nanmen_day
    jin_prices = [e.message.price_fen_per_kg for e in events if isinstance(e.message, PriceSet)]
    assert all(price % 2 == 0 for price in jin_prices)  # whole fen per 斤
    endings = Counter((price // 2) % 10 for price in jin_prices)
    assert set(endings) <= {0, 8, 9}
    assert endings[0] > len(jin_prices) / 2


def test_some_totals_are_rounded_down_and_none_up(
    nanmen_day: tuple[MarketDay, list[DayEvent]],
) -> None:
    _, events = nanmen_day
    sales = [e.message for e in events if isinstance(e.message, Sale)]
    differences = [
        expected_total_fen(s.weight_g, s.unit_price_fen_per_kg) - s.total_fen for s in sales
    ]
    assert all(0 <= difference < 100 for difference in differences)
    assert 0.05 < sum(d > 0 for d in differences) / len(sales) < 0.6


@pytest.mark.parametrize(
    ("plu", "low_yuan", "high_yuan"),
    [("1001", 1.2, 2.0), ("2001", 14, 18), ("3004", 35, 60), ("5001", 4.5, 6.0)],
)
def test_opening_prices_fall_in_the_products_range(
    nanmen_day: tuple[MarketDay, list[DayEvent]], plu: str, low_yuan: float, high_yuan: float
) -> None:
    _, events = nanmen_day
    opening = [
        e.message.price_fen_per_kg
        for e in events
        if isinstance(e.message, PriceSet) and e.message.plu == plu and e.message.ts.hour == 6
    ]
    assert opening
    for fen_per_kg in opening:
        yuan_per_jin = fen_per_kg / 200
        # written as x.x0/x.x8/x.x9, or to the half yuan above ¥10
        assert low_yuan - 0.26 <= yuan_per_jin <= high_yuan + 0.26


def test_the_trace_prefix_can_be_configured(xiaohe_market: Market) -> None:
    day = MarketDay(xiaohe_market, DAY, seed=1, config=DayConfig(trace_prefix="XH"))
    assert all(batch.trace_code.startswith("XH-20261121-XH0") for batch in day.batches)
    with pytest.raises(ValueError, match="trace_prefix"):
        DayConfig(trace_prefix="no spaces")
