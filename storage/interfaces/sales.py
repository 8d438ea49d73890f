"""Sales the scales made: each one, by receipt, and summed per product or per hour.

Contract tests: ``tests/storage/contract/test_sales.py``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime

from storage.traceability import TraceStatus


@dataclass(frozen=True, slots=True)
class SaleRow:
    market: str
    scale: str
    vendor: str
    plu: str
    ts: datetime
    msg_id: int
    weight_g: int
    tare_g: int | None
    unit_price_fen_per_kg: int
    total_fen: int
    trace_code: str
    received_ns: int
    #: Whether ``trace_code`` names a registered batch of this vendor and product
    #: (``storage.traceability``); show the batch only when it is VERIFIED.
    trace_status: TraceStatus

    @property
    def origin_verified(self) -> bool:
        return self.trace_status is TraceStatus.VERIFIED


@dataclass(frozen=True, slots=True)
class SalesSummaryRow:
    """Sales of one vendor's product over a range: how many, how much money, how much weight."""

    market: str
    vendor: str
    plu: str
    sales: int
    total_fen: int
    weight_g: int


@dataclass(frozen=True, slots=True)
class ScaleSalesRow:
    """Sales one vendor's scale made over a range, all products together."""

    market: str
    vendor: str
    scale: str
    sales: int
    total_fen: int
    weight_g: int


@dataclass(frozen=True, slots=True)
class SalesHourRow:
    """Sales of a whole market during one UTC hour starting at ``hour``."""

    market: str
    hour: datetime
    transactions: int
    turnover_fen: int
    weight_g: int


class SalesStore(abc.ABC):
    """The sales part of a store (a batch's sales are in ``TraceabilityStore``)."""

    @abc.abstractmethod
    def sales(
        self,
        market: str,
        start: datetime,
        end: datetime,
        *,
        vendor: str | None = None,
        scale: str | None = None,
        plu: str | None = None,
    ) -> list[SaleRow]:
        """Every sale in the range, optionally for one vendor, scale or product."""

    @abc.abstractmethod
    def sale_by_receipt(self, market: str, scale: str, msg_id: int) -> SaleRow | None:
        """The sale a receipt (scale + message id) was printed for."""

    @abc.abstractmethod
    def sales_summary(self, market: str, start: datetime, end: datetime) -> list[SalesSummaryRow]:
        """Number of sales, total fen and total grams per (vendor, product) in the range.

        Aggregated by the store (SQL ``GROUP BY``, InfluxQL ``SUM``/``COUNT``), not by
        fetching every sale; sums are exact integers. Ordered by vendor then PLU;
        products without sales in the range are absent.
        """

    @abc.abstractmethod
    def sales_by_scale(self, market: str, start: datetime, end: datetime) -> list[ScaleSalesRow]:
        """Number of sales, total fen and total grams per (vendor, scale) in the range.

        What a vendor sold and how many messages a scale sent as sales, for the vendors'
        page: the products' sums of :meth:`sales_summary` taken together, from a rollup
        a few hundred rows a day. Ordered by vendor then scale; scales without sales
        absent.
        """

    @abc.abstractmethod
    def sales_by_hour(self, market: str, start: datetime, end: datetime) -> list[SalesHourRow]:
        """Number of sales, total fen and total grams of the whole market per UTC hour.

        ``hour`` is the start of the UTC hour (an aware UTC datetime); the hours at
        the edges count only the sales inside ``[start, end)``. Aggregated by the
        store like :meth:`sales_summary`; ordered by hour, hours without sales absent.
        """
