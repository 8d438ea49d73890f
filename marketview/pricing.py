"""Price arithmetic for the boards: exact medians and the yuan strings screens display.

Prices are integer fen per kilogram everywhere (the device contract's unit). Two
things here are not whole fen and are therefore kept as :class:`~decimal.Decimal`,
never as floats:

* the median of an even number of prices is the mean of the middle two, which
  can end in half a fen;
* a price per 斤 (500 g) is half the price per kg, which can also end in half a fen.

Display strings are yuan with two decimals, rounded half up to the fen as a price
tag would be; the exact figure always travels next to them in fen. The response
models :class:`PriceFigure` and :class:`MedianFigure` carry both, for every
router that shows a unit price.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from pydantic import BaseModel, Field

_FEN_PER_YUAN = 100
_GRAMS_PER_JIN = 500
_GRAMS_PER_KG = 1000
_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Spread:
    """Lowest, median and highest of a set of prices, in fen per kg."""

    count: int
    low: int
    median: Decimal
    high: int


def spread(prices: Sequence[int]) -> Spread:
    """The spread of one or more integer prices; the median is exact."""
    if not prices:
        raise ValueError("the spread of no prices is undefined")
    ordered = sorted(prices)
    return Spread(len(ordered), ordered[0], median(ordered), ordered[-1])


def median(ordered: Sequence[int]) -> Decimal:
    """Median of already sorted integers; an even count gives the exact mean of the middle two."""
    if not ordered:
        raise ValueError("the median of no values is undefined")
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return Decimal(ordered[middle])
    # The sum of two integers halved is exact in Decimal: at most one decimal place (.5).
    return Decimal(ordered[middle - 1] + ordered[middle]) / 2


def fen_text(fen: int | Decimal) -> str:
    """An exact fen amount as text without exponent or trailing zeros: ``398``, ``398.5``."""
    return format(Decimal(fen).normalize(), "f")


def yuan_per_kg(fen_per_kg: int | Decimal) -> str:
    """Display price per kilogram: ``7.96``."""
    return _yuan(Decimal(fen_per_kg))


def yuan_per_jin(fen_per_kg: int | Decimal) -> str:
    """Display price per 斤 (500 g): half the kilogram price, rounded half up to the fen."""
    return _yuan(Decimal(fen_per_kg) * _GRAMS_PER_JIN / _GRAMS_PER_KG)


def _yuan(fen: Decimal) -> str:
    return str((fen / _FEN_PER_YUAN).quantize(_CENT, rounding=ROUND_HALF_UP))


# -- response models -----------------------------------------------------------------

_YUAN_PATTERN = r"^[0-9]+\.[0-9]{2}$"


class PriceFigure(BaseModel):
    """A unit price: exact in fen per kg, and as a price tag shows it."""

    fen_per_kg: int = Field(description="Exact price, integer fen (分) per kilogram.")
    yuan_per_kg: str = Field(
        pattern=_YUAN_PATTERN, description="Display price, yuan per kg, rounded half up to the fen."
    )
    yuan_per_jin: str = Field(
        pattern=_YUAN_PATTERN,
        description="Display price, yuan per 斤 (500 g), rounded half up to the fen.",
    )


class MedianFigure(BaseModel):
    """A median across vendors: exact, so it may be half a fen (mean of the middle two)."""

    fen_per_kg: str = Field(
        pattern=r"^[0-9]+(\.5)?$",
        description="Exact median, fen per kg, as a decimal string: '398' or '398.5'.",
    )
    yuan_per_kg: str = Field(pattern=_YUAN_PATTERN, description="Display price, yuan per kg.")
    yuan_per_jin: str = Field(pattern=_YUAN_PATTERN, description="Display price, yuan per 斤.")


def price_figure(fen_per_kg: int) -> PriceFigure:
    return PriceFigure(
        fen_per_kg=fen_per_kg,
        yuan_per_kg=yuan_per_kg(fen_per_kg),
        yuan_per_jin=yuan_per_jin(fen_per_kg),
    )


def median_figure(fen_per_kg: Decimal) -> MedianFigure:
    return MedianFigure(
        fen_per_kg=fen_text(fen_per_kg),
        yuan_per_kg=yuan_per_kg(fen_per_kg),
        yuan_per_jin=yuan_per_jin(fen_per_kg),
    )
