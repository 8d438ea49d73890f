"""The food-safety page's renderers and figure: a day's tests in, components out (no store)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from dashboard import figures
from dashboard.i18n import Lang
from dashboard.pages.food_safety import failed_list, kpi_tiles
from dashboard.queries import tally_frame
from marketview.foodsafety import BatchTest, DayOfTests, tally_day
from schemas.registry import Market

DAY = date(2026, 11, 3)
NOON = datetime(2026, 11, 3, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def _plu(market: Market, category: str) -> str:
    return next(p.plu for p in market.products.values() if p.category.value == category)


def _day(market: Market) -> DayOfTests:
    veg, fruit = _plu(market, "vegetables"), _plu(market, "fruit")
    vendor = next(iter(market.vendors))
    tests = [
        BatchTest("VEG-1", vendor, veg, True, Decimal("12.0"), NOON, True),
        BatchTest("VEG-2", vendor, veg, False, Decimal("61.5"), NOON, True),
        BatchTest("VEG-3", vendor, veg, True, Decimal("8.0"), NOON, True),
        BatchTest("VEG-3", vendor, veg, False, Decimal("55.0"), NOON + timedelta(hours=2), False),
        BatchTest("FRU-1", vendor, fruit, True, Decimal("3.0"), NOON, True),
    ]
    taken_in = [(t.trace_code, vendor, t.plu) for t in tests if t.at_intake]
    untested = [("VEG-4", vendor, veg), ("MEAT-1", vendor, _plu(market, "meat"))]
    return tally_day(market, DAY, tests, taken_in=[*taken_in, *untested])


def _text(component: Any) -> str:
    if isinstance(component, list | tuple):
        return " ".join(text for child in component if (text := _text(child)))
    if hasattr(component, "children"):
        return _text(component.children)
    return "" if component is None else str(component)


def test_the_tiles_show_the_days_batches_rate_failures_and_quota(example_market: Market) -> None:
    tiles = [_text(tile) for tile in kpi_tiles(_day(example_market), Lang.EN)]
    assert tiles == [
        "Batches tested 4 5 tests made",
        "Pass rate 50.0%",
        "Failed batches 2",
        "Batches not tested 2 taken in that day, no test at all",
        "Daily test quota 4 / 12 batches 8 short",
    ]
    zh = [_text(tile) for tile in kpi_tiles(_day(example_market), Lang.ZH)]
    assert zh[4] == "每日检测定额 4 / 12 批 还差 8 批"


def test_failed_batches_link_to_their_trace_and_say_which_test_failed(
    example_market: Market,
) -> None:
    day = _day(example_market)
    vendor = example_market.vendors[day.failed[0].vendor]
    (table,) = failed_list(day, example_market, Lang.EN, "/dashboard/trace")
    _header, body = table.children
    rows = body.children
    assert [row.children[0].children.href for row in rows] == [
        "/dashboard/trace?q=VEG-2",
        "/dashboard/trace?q=VEG-3",
    ]
    assert [_text(row) for row in rows][1].split(" ")[-6:] == [
        "55.0%",
        "14:00",
        "Spot",
        "check",
        "or",
        "re-test",
    ]
    assert vendor.name in _text(rows[0])


def test_a_day_without_failures_says_so(example_market: Market) -> None:
    quiet = tally_day(example_market, DAY, [])
    (message,) = failed_list(quiet, example_market, Lang.ZH, "/trace")
    assert message.id == "fs-no-failed"
    assert _text(message) == "当日无不合格批次"


def test_tests_by_category_stacks_passed_and_failed_batches(example_market: Market) -> None:
    fig = figures.tests_by_category(tally_frame(_day(example_market)), Lang.EN)
    passed, failed, untested = fig.data
    assert list(passed.x) == ["Fruit", "Meat", "Vegetables"]
    assert (list(passed.y), list(failed.y), list(untested.y)) == ([1, 0, 1], [0, 0, 2], [0, 1, 1])
    assert list(passed.customdata) == ["100.0%", "–", "33.3%"]
    assert fig.layout.barmode == "stack"
    empty = figures.tests_by_category(tally_frame(tally_day(example_market, DAY, [])), Lang.ZH)
    assert empty.layout.annotations[0].text == "暂无数据"
