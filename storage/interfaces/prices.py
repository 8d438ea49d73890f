"""Prices vendors set on their screens, with promotions.

Contract tests: ``tests/storage/contract/test_prices.py``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PromotionRow:
    price_fen_per_kg: int
    text: str
    until: datetime


@dataclass(frozen=True, slots=True)
class PriceRow:
    """The latest price a vendor set for a product."""

    market: str
    vendor: str
    plu: str
    screen: str
    price_fen_per_kg: int
    promo: PromotionRow | None
    ts: datetime
    msg_id: int


class PriceStore(abc.ABC):
    """The prices part of a store."""

    @abc.abstractmethod
    def latest_prices(self, market: str) -> list[PriceRow]:
        """The latest price per (vendor, product), ordered by vendor then PLU."""

    @abc.abstractmethod
    def price_history(
        self,
        market: str,
        start: datetime,
        end: datetime,
        *,
        plu: str | None = None,
        vendor: str | None = None,
    ) -> list[PriceRow]:
        """Every price set in the range."""

    @abc.abstractmethod
    def prices_before(
        self, market: str, moment: datetime, *, plu: str | None = None
    ) -> list[PriceRow]:
        """The last price of each (vendor, product) set strictly before ``moment``.

        The baseline of a price history: what was in force when the range began.
        Ordered by vendor then PLU.
        """
