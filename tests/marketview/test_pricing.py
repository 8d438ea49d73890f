"""Price arithmetic and display units: exact medians and spreads, yuan per kg and per 斤."""

from __future__ import annotations

from decimal import Decimal

import pytest

from marketview.pricing import fen_text, median, spread, yuan_per_jin, yuan_per_kg


@pytest.mark.parametrize(
    ("prices", "expected"),
    [
        ([398], Decimal(398)),
        ([399, 398], Decimal("398.5")),
        ([1, 2, 3, 4], Decimal("2.5")),
        ([5, 1, 3], Decimal(3)),
        ([2_000_000, 1_999_999], Decimal("1999999.5")),
    ],
)
def test_median_is_exact(prices: list[int], expected: Decimal) -> None:
    result = spread(prices)
    assert result.median == expected
    assert isinstance(result.median, Decimal)
    assert (result.low, result.high, result.count) == (min(prices), max(prices), len(prices))


def test_median_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="undefined"):
        median([])


@pytest.mark.parametrize(
    ("fen_per_kg", "per_kg", "per_jin"),
    [
        (398, "3.98", "1.99"),
        (399, "3.99", "2.00"),  # 199.5 fen per 斤 shows as 2.00, rounded half up
        (Decimal("398.5"), "3.99", "1.99"),  # 199.25 fen per 斤
        (1, "0.01", "0.01"),
        (2_000_000, "20000.00", "10000.00"),
    ],
)
def test_display_strings(fen_per_kg: int | Decimal, per_kg: str, per_jin: str) -> None:
    assert (yuan_per_kg(fen_per_kg), yuan_per_jin(fen_per_kg)) == (per_kg, per_jin)


def test_fen_text_is_exact_without_exponent() -> None:
    assert [fen_text(Decimal(v)) for v in ("398", "398.5", "1E+3", "1000.0")] == [
        "398",
        "398.5",
        "1000",
        "1000",
    ]
