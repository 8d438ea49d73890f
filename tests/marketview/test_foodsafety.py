"""A day's rapid tests tallied from hand-made tests: pure, no store."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from marketview.analytics import UNKNOWN_CATEGORY
from marketview.foodsafety import ALL_CATEGORIES, BatchesTested, BatchTest, tally_day
from schemas.foodsafety import FoodSafetyPolicy
from schemas.registry import Market

DAY = date(2026, 11, 3)
NOON = datetime(2026, 11, 3, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def _test(
    code: str, plu: str, passed: bool, minutes: int = 0, *, at_intake: bool = True
) -> BatchTest:
    pct = Decimal("12.0") if passed else Decimal("60.0")
    return BatchTest(code, "V-A01", plu, passed, pct, NOON + timedelta(minutes=minutes), at_intake)


def _plu_of(market: Market, category: str) -> str:
    return next(p.plu for p in market.products.values() if p.category.value == category)


def test_a_batch_counts_once_by_its_latest_test(example_market: Market) -> None:
    veg, fruit = _plu_of(example_market, "vegetables"), _plu_of(example_market, "fruit")
    day = tally_day(
        example_market,
        DAY,
        [
            _test("A", veg, passed=True, minutes=-300),
            _test("A", veg, passed=False, minutes=0, at_intake=False),  # spot check fails
            _test("B", veg, passed=False, minutes=-280),
            _test("B", veg, passed=True, minutes=30, at_intake=False),  # re-test passes
            _test("C", fruit, passed=True, minutes=-250),
        ],
    )

    assert day.total == BatchesTested(ALL_CATEGORIES, batches=3, passed=2, failed=1, tests=5)
    assert day.categories == (
        BatchesTested("fruit", batches=1, passed=1, failed=0, tests=1),
        BatchesTested("vegetables", batches=2, passed=1, failed=1, tests=4),
    )
    assert [(one.trace_code, one.at_intake) for one in day.failed] == [("A", False)]


def test_a_report_at_the_same_moment_as_the_intake_test_is_the_later(
    example_market: Market,
) -> None:
    veg = _plu_of(example_market, "vegetables")
    day = tally_day(
        example_market,
        DAY,
        [_test("A", veg, passed=False, at_intake=False), _test("A", veg, passed=True)],
    )
    assert (day.total.passed, day.total.failed) == (0, 1)


def test_pass_rate_is_exact_to_one_decimal_and_absent_without_tests(
    example_market: Market,
) -> None:
    veg = _plu_of(example_market, "vegetables")
    tests = [_test(str(n), veg, passed=n != 0) for n in range(3)]
    assert tally_day(example_market, DAY, tests).total.pass_rate_pct == Decimal("66.7")
    empty = tally_day(example_market, DAY, [])
    assert empty.total.pass_rate_pct is None
    assert (empty.categories, empty.failed) == ((), ())


def test_a_product_the_market_no_longer_lists_is_of_an_unknown_category(
    example_market: Market,
) -> None:
    day = tally_day(example_market, DAY, [_test("A", "no-such-plu", passed=True)])
    assert [tally.category for tally in day.categories] == [UNKNOWN_CATEGORY]


def test_the_quota_counts_batches_not_tests(example_market: Market) -> None:
    veg = _plu_of(example_market, "vegetables")
    quota = example_market.food_safety.daily_test_quota
    assert quota == 12  # the example market's [food_safety]
    retested = [
        _test(str(n), veg, passed=True, minutes=minutes, at_intake=minutes == 0)
        for n in range(quota - 1)
        for minutes in (0, 60)
    ]
    short = tally_day(example_market, DAY, retested)
    assert (short.quota, short.total.tests, short.quota_met) == (12, 22, False)
    enough = tally_day(example_market, DAY, [*retested, _test("last", veg, passed=False)])
    assert enough.quota_met


def test_a_market_without_a_quota_meets_it_without_tests(example_market: Market) -> None:
    spec = example_market.spec.model_copy(
        update={"food_safety": FoodSafetyPolicy(daily_test_quota=0)}
    )
    day = tally_day(Market(spec), DAY, [])
    assert (day.quota, day.quota_met) == (0, True)


def test_a_batch_no_test_covered_that_day_is_untested(example_market: Market) -> None:
    veg, fruit = _plu_of(example_market, "vegetables"), _plu_of(example_market, "fruit")
    meat = _plu_of(example_market, "meat")
    taken_in = [
        ("A", "V-A01", veg),
        ("B", "V-A01", veg),
        ("C", "V-A01", meat),
        ("D", "V-A01", fruit),
    ]
    tests = [
        _test("A", veg, passed=True),  # tested at intake
        _test("B", veg, passed=False, minutes=120, at_intake=False),  # a spot check covers it
    ]
    day = tally_day(example_market, DAY, tests, taken_in=[*taken_in, taken_in[2]])

    assert (day.total.batches, day.total.untested) == (2, 2)  # C once, though listed twice
    assert {(c.category, c.batches, c.untested) for c in day.categories} == {
        ("vegetables", 2, 0),
        ("meat", 0, 1),
        ("fruit", 0, 1),
    }
    assert next(c for c in day.categories if c.category == "meat").pass_rate_pct is None
