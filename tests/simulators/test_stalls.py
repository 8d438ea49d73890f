"""Pieces of a stall's day: stock, weighing, totals, scale calibration dates."""

from __future__ import annotations

import random
from datetime import date

import pytest

from schemas.messages import MAX_ROUNDING_DOWN_FEN, expected_total_fen
from simulators.intake import PlannedBatch
from simulators.stalls import RoundingHabit, ScaleTraits, Stock, charged_total, on_scale


def _batch(code: str, at_ms: int, grams: int, *, passed: bool | None = True) -> PlannedBatch:
    """A planned batch; ``passed=None``: not tested at intake."""
    return PlannedBatch(
        at_ms=at_ms,
        station="IN1",
        vendor="V-A01",
        plu="1001",
        trace_code=code,
        origin="山东寿光",
        supplier="众彩农副产品批发市场",
        quantity_g=grams,
        certificate_no="HG370783202611210001",
        inhibition_tenths=None if passed is None else 150 if passed else 620,
    )


def test_stock_sells_first_in_first_out_and_only_what_has_arrived() -> None:
    stock = Stock([_batch("B2", 2_000, 1_000), _batch("B1", 1_000, 600)])
    assert not stock.has("1001", 999)
    assert stock.take("1001", 1_500, 500) == ("B1", 500)
    assert stock.take("1001", 1_500, 300) == ("B1", 100)  # the customer takes what is left
    assert not stock.has("1001", 1_500)  # B2 has not arrived yet
    assert stock.take("1001", 2_500, 300) == ("B2", 300)
    assert stock.oversold == 0


def test_failed_batches_are_never_stocked() -> None:
    stock = Stock([_batch("BAD", 0, 10_000, passed=False)])
    assert not stock.has("1001", 10**12)


def test_a_batch_not_tested_at_intake_is_sold() -> None:
    stock = Stock(
        [_batch("BAD", 0, 10_000, passed=False), _batch("UNTESTED", 10, 1_000, passed=None)]
    )
    assert not stock.has("1001", 9)
    assert stock.take("1001", 20, 400) == ("UNTESTED", 400)


def test_a_tiny_remnant_is_oversold_rather_than_refused() -> None:
    stock = Stock([_batch("B1", 0, 550)])
    assert stock.take("1001", 1, 500) == ("B1", 500)
    assert stock.take("1001", 1, 400) == ("B1", 400)
    assert stock.oversold == 1
    assert not stock.has("1001", 1)


def test_a_remnant_is_written_off_when_the_next_batch_is_open() -> None:
    stock = Stock([_batch("B1", 0, 520), _batch("B2", 0, 5_000)])
    stock.take("1001", 1, 500)
    assert stock.take("1001", 1, 400) == ("B2", 400)


@pytest.mark.parametrize(
    ("grams", "weighed"), [(1, 2), (1_233, 1_234), (7_002, 7_000), (16_004, 16_000)]
)
def test_weights_are_in_the_scales_division(grams: int, weighed: int) -> None:
    assert on_scale(grams) == weighed


@pytest.mark.parametrize("habit", list(RoundingHabit))
def test_totals_are_never_rounded_up_nor_down_by_a_yuan(habit: RoundingHabit) -> None:
    rng = random.Random(3)
    for _ in range(2_000):
        weight, price = rng.randrange(2, 20_000), rng.randrange(100, 20_000)
        exact = expected_total_fen(weight, price)
        assert exact - MAX_ROUNDING_DOWN_FEN < charged_total(weight, price, habit, rng) <= exact


def test_calibration_dates_handle_leap_days() -> None:
    leap_day_scale = ScaleTraits("S-1", verified_doy=59, lapsed=False)  # 29 February in 2028
    assert leap_day_scale.calibration_due(date(2028, 2, 1)) == date(2028, 2, 29)
    assert leap_day_scale.calibration_due(date(2028, 3, 1)) == date(2029, 3, 1)
    lapsed = ScaleTraits("S-2", verified_doy=59, lapsed=True)
    assert lapsed.calibration_due(date(2029, 1, 10)) == date(2028, 2, 29)
