"""The price model: what a stall charges for a product on a given day, and how it writes prices.

A shelf price is chosen within the product's typical range (``simulators.catalog``)
by four effects: the season (greens are dearest around the Spring Festival and
cheapest in late summer), the wholesale market that week (shared by every
vendor, smooth from day to day), the vendor (some stalls are dearer), and a
little daily noise. The result is then written the way the vendor writes prices
(x.x0, or charm prices x.x8/x.x9) in the unit the screen shows, and converted to
integer fen per kg for the contract.
"""

from __future__ import annotations

import math
import random
from datetime import date
from enum import StrEnum

from schemas.registry import SaleUnit
from simulators.catalog import PriceRange, ProductKnowledge
from simulators.randomness import chance

#: Day of year the seasonal price peak falls on (late January, before the Spring Festival).
_SEASON_PEAK_DOY = 25
_DAYS_PER_YEAR = 365.25


class PricingStyle(StrEnum):
    ROUND_JIAO = "x.x0"
    CHARM_8 = "x.x8"
    CHARM_9 = "x.x9"


def pick_style(rng: random.Random) -> PricingStyle:
    return rng.choices(list(PricingStyle), weights=(0.6, 0.25, 0.15))[0]


def shelf_fen(raw_fen: int, style: PricingStyle, rng: random.Random) -> int:
    """Write a raw price (fen per shelf unit) as the vendor would: 3.50, 3.48, 16.00…"""
    if raw_fen >= 1_000 and chance(rng, 0.3):
        return max(50, _round_to(raw_fen, 50))  # meat counters like 16.00 and 16.50
    jiao = max(10, _round_to(raw_fen, 10))
    if jiao < 300 or style is PricingStyle.ROUND_JIAO:
        return jiao  # cheap greens are never charm-priced
    return jiao - (2 if style is PricingStyle.CHARM_8 else 1)


def _round_to(value: int, step: int) -> int:
    return (value + step // 2) // step * step


def to_fen_per_kg(shelf: int, unit: SaleUnit) -> int:
    """Contract price from a shelf price in fen per 斤 or per kg."""
    return shelf * 2 if unit is SaleUnit.JIN else shelf


def shelf_range(price: PriceRange, unit: SaleUnit) -> tuple[int, int]:
    factor = 1 if unit is SaleUnit.JIN else 2
    return price.low_fen_per_jin * factor, price.high_fen_per_jin * factor


def season(day: date) -> float:
    """+1 at the seasonal price peak, −1 half a year later."""
    return math.cos(2 * math.pi * (day.timetuple().tm_yday - _SEASON_PEAK_DOY) / _DAYS_PER_YEAR)


def wholesale_drift(day: date, phases: tuple[float, float]) -> float:
    """Smooth market-wide movement of a product's price (about ±0.1 of its range)."""
    ordinal = day.toordinal()
    return 0.07 * math.sin(2 * math.pi * ordinal / 23 + phases[0]) + 0.04 * math.sin(
        2 * math.pi * ordinal / 9 + phases[1]
    )


def raw_day_price(
    item: ProductKnowledge, day: date, *, drift: float, vendor_bias: float, noise: float
) -> int:
    """The unrounded price in fen per shelf unit before the vendor writes it down."""
    low, high = shelf_range(item.price, item.product.unit)
    position = 0.5 + 0.3 * item.category.seasonality * season(day) + drift + vendor_bias + noise
    position = min(1.0, max(0.0, position))
    return round(low + (high - low) * position)


def changed_price(current: int, rng: random.Random, *, upward: bool, style: PricingStyle) -> int:
    """A regular price change of 3–10 %, rewritten in the vendor's style; always in that direction.

    A price below 20 fen cannot fall by a jiao and stays at 10 fen.
    """
    factor = 1 + rng.uniform(0.03, 0.10) * (1 if upward else -1)
    new = shelf_fen(round(current * factor), style, rng)
    if upward and new <= current:
        return current + 10  # rounding ate a small rise: one jiao more
    if not upward and new >= current:
        return max(10, current - 10)
    return new


def promo_price(regular: int, rng: random.Random, style: PricingStyle) -> int | None:
    """A clearance price 15–40 % below ``regular``; None when no lower shelf price exists."""
    promo = shelf_fen(round(regular * rng.uniform(0.6, 0.85)), style, rng)
    if promo >= regular:
        promo = regular - 10
    return promo if promo > 0 else None
