from decimal import Decimal

import pytest

from dashboard.i18n import (
    Lang,
    category_name,
    money_text,
    price_text,
    price_value,
    t,
    weekday_names,
    weight_text,
)


def test_chinese_is_the_default_for_anything_but_english() -> None:
    assert Lang.of("en") is Lang.EN
    assert Lang.of("zh") is Lang.ZH
    assert Lang.of(None) is Lang.ZH
    assert Lang.of("fr") is Lang.ZH


@pytest.mark.parametrize(
    ("fen_per_kg", "zh", "en"),
    [
        (1300, "¥6.50/斤", "¥13.00/kg"),
        (399, "¥2.00/斤", "¥3.99/kg"),  # 1.995 yuan per 斤 rounds half up, like a price tag
        (Decimal("398.5"), "¥1.99/斤", "¥3.99/kg"),  # an even-count median: half a fen
    ],
)
def test_prices_show_per_jin_in_chinese_and_per_kg_in_english(
    fen_per_kg: int | Decimal, zh: str, en: str
) -> None:
    assert price_text(fen_per_kg, Lang.ZH) == zh
    assert price_text(fen_per_kg, Lang.EN) == en


def test_price_values_are_exact_decimals() -> None:
    assert price_value(399, Lang.ZH) == Decimal("1.995")
    assert price_value(399, Lang.EN) == Decimal("3.99")


def test_money_and_weights() -> None:
    assert money_text(123456) == "¥1,234.56"
    assert money_text(-5) == "¥-0.05"
    assert weight_text(1250, Lang.ZH) == "2.5 斤"
    assert weight_text(1250, Lang.EN) == "1.25 kg"
    assert weight_text(-500, Lang.EN) == "-0.5 kg"


def test_every_text_exists_in_both_languages() -> None:
    assert t("nav.prices", Lang.ZH) == "实时价格"
    assert t("nav.prices", Lang.EN) == "Live prices"
    assert category_name("seafood", Lang.ZH) == "水产"
    assert category_name("unknown-category", Lang.EN) == "unknown-category"
    assert weekday_names(Lang.ZH)[0] == "周一"
    with pytest.raises(KeyError):
        t("no.such.key", Lang.ZH)
