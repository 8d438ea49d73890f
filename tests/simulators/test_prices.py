"""The price model and the product catalogue."""

from __future__ import annotations

import random
from datetime import date

import pytest

from schemas.registry import Category, Market, Product, SaleUnit
from simulators.catalog import PriceRange, fen_per_kg, knowledge, listed_plus
from simulators.prices import (
    PricingStyle,
    changed_price,
    promo_price,
    raw_day_price,
    season,
    shelf_fen,
    to_fen_per_kg,
)


def test_a_jin_price_in_fen_is_twice_as_many_fen_per_kg() -> None:
    assert fen_per_kg(398) == 796
    assert to_fen_per_kg(398, SaleUnit.JIN) == 796
    assert to_fen_per_kg(3980, SaleUnit.KG) == 3980


def test_price_ranges_are_parsed_exactly_from_yuan() -> None:
    assert PriceRange.yuan("1.20", "2.00") == PriceRange(120, 200)
    with pytest.raises(ValueError, match="bad price range"):
        PriceRange.yuan("3.00", "2.00")


@pytest.mark.parametrize(
    ("style", "raw", "expected"),
    [
        (PricingStyle.ROUND_JIAO, 347, 350),
        (PricingStyle.CHARM_8, 347, 348),
        (PricingStyle.CHARM_9, 347, 349),
        (PricingStyle.CHARM_8, 152, 150),  # cheap greens are never charm-priced
    ],
)
def test_shelf_prices_are_written_in_the_vendors_style(
    style: PricingStyle, raw: int, expected: int
) -> None:
    never_half_yuan = random.Random(0)  # below ¥10 the half-yuan rounding does not apply
    assert shelf_fen(raw, style, never_half_yuan) == expected


def test_dear_prices_are_sometimes_whole_or_half_yuan() -> None:
    rng = random.Random(1)
    written = {shelf_fen(1_637, PricingStyle.ROUND_JIAO, rng) for _ in range(200)}
    assert written == {1_640, 1_650}


def test_price_changes_move_the_price_and_promotions_are_discounts() -> None:
    rng = random.Random(2)
    for _ in range(500):
        current = rng.randrange(100, 6_000)
        assert changed_price(current, rng, upward=True, style=PricingStyle.CHARM_8) > current
        assert changed_price(current, rng, upward=False, style=PricingStyle.CHARM_9) < current
        promo = promo_price(current, rng, PricingStyle.ROUND_JIAO)
        assert promo is not None
        assert 0 < promo < current


def test_greens_are_dearest_in_winter(example_market: Market) -> None:
    cabbage = knowledge(example_market.products["1001"])
    winter, summer = date(2027, 1, 25), date(2027, 7, 25)
    assert season(winter) == pytest.approx(1.0, abs=0.01)
    assert season(summer) == pytest.approx(-1.0, abs=0.01)
    kwargs = {"drift": 0.0, "vendor_bias": 0.0, "noise": 0.0}
    assert raw_day_price(cabbage, winter, **kwargs) > raw_day_price(cabbage, summer, **kwargs)
    for day in (winter, summer):
        assert 120 <= raw_day_price(cabbage, day, **kwargs) <= 200


def test_every_example_product_is_in_the_catalogue(
    example_market: Market, xiaohe_market: Market
) -> None:
    listed = listed_plus()
    assert set(example_market.products) <= listed
    assert {"7001", "7002"} == set(xiaohe_market.products) - listed  # grain uses its category


def test_unknown_products_fall_back_to_their_category() -> None:
    product = Product(plu="9999", name_zh="花生", name_en="Peanuts", category=Category.OTHER)
    item = knowledge(product)
    assert item.price == PriceRange.yuan("5.00", "15.00")
    assert item.demand == 1.0
    assert item.origins
