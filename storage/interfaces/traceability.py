"""Batches taken in at the intake desk, their sales, and sales whose trace code did not check out.

How a sale's trace code is checked is in ``storage.traceability``.
Contract tests: ``tests/storage/contract/test_traceability.py``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from storage.interfaces.sales import SaleRow
from storage.traceability import TraceStatus


@dataclass(frozen=True, slots=True)
class BatchRow:
    market: str
    station: str
    vendor: str
    plu: str
    trace_code: str
    origin: str
    supplier: str
    quantity_g: int
    certificate_no: str
    #: The intake's rapid test; both None: the batch was not tested at intake (markets
    #: test a sample), which is neither passed nor failed.
    rapid_test_passed: bool | None
    inhibition_pct: Decimal | None
    ts: datetime
    msg_id: int
    received_ns: int

    @property
    def tested_at_intake(self) -> bool:
        return self.rapid_test_passed is not None


@dataclass(frozen=True, slots=True)
class BatchBalanceRow:
    """A batch and what has been sold of it so far: its sales (see ``sales_of_batch``)."""

    market: str
    trace_code: str
    vendor: str
    plu: str
    intake: datetime
    quantity_g: int
    #: None: not tested at intake (see :class:`BatchRow`)
    rapid_test_passed: bool | None
    sales: int
    sold_g: int
    last_sale: datetime | None

    @property
    def oversold(self) -> bool:
        return self.sold_g > self.quantity_g

    @property
    def failed_on_sale(self) -> bool:
        """The batch failed its rapid test and some of it was sold all the same (a batch
        not tested at intake has not failed)."""
        return self.rapid_test_passed is False and self.sales > 0

    @property
    def needs_alert(self) -> bool:
        """What :meth:`TraceabilityStore.batch_alerts` lists: failed on sale, or oversold."""
        return self.failed_on_sale or self.oversold

    @classmethod
    def of(
        cls, batch: BatchRow, *, sales: int, sold_g: int, last_sale: datetime | None
    ) -> BatchBalanceRow:
        return cls(
            market=batch.market,
            trace_code=batch.trace_code,
            vendor=batch.vendor,
            plu=batch.plu,
            intake=batch.ts,
            quantity_g=batch.quantity_g,
            rapid_test_passed=batch.rapid_test_passed,
            sales=sales,
            sold_g=sold_g,
            last_sale=last_sale,
        )


@dataclass(frozen=True, slots=True)
class UnverifiedSalesRow:
    """How many sales of one vendor at one scale had a trace code that did not check out."""

    market: str
    vendor: str
    scale: str
    trace_status: TraceStatus
    sales: int


@dataclass(frozen=True, slots=True)
class RapidTestRow:
    """A rapid test of a batch after its intake (``RapidTestReport``), as stored.

    The intake's own test is part of the batch's record (:class:`BatchRow`).
    """

    market: str
    station: str
    vendor: str
    plu: str
    trace_code: str
    passed: bool
    inhibition_pct: Decimal
    ts: datetime
    msg_id: int
    received_ns: int


class TraceabilityStore(abc.ABC):
    """The traceability part of a store: batches and the sales checked against them."""

    @abc.abstractmethod
    def batch(self, market: str, trace_code: str) -> BatchRow | None:
        """The batch with this trace code (the latest record if it was re-sent)."""

    @abc.abstractmethod
    def batches(
        self, market: str, start: datetime, end: datetime, *, vendor: str | None = None
    ) -> list[BatchRow]:
        """Batches taken in during the range."""

    @abc.abstractmethod
    def sales_of_batch(self, market: str, trace_code: str) -> list[SaleRow]:
        """The batch's sales: those naming its code, of its vendor and product, since its window.

        That is, made no earlier than ``LATE_BATCH_GRACE`` before the intake of the
        batch's newest record (``storage.traceability``), whatever their trace
        status: its vendor's sales of its product outside the stall's categories
        still came from it. Another vendor's or product's sales that name the code
        are false claims, not the batch's (``unverified_sales`` counts them).
        Without a registered batch, every sale naming the code.
        """

    @abc.abstractmethod
    def rapid_tests(self, market: str, start: datetime, end: datetime) -> list[RapidTestRow]:
        """The tests reported during the range (by the time of the test), in time order.

        Every one: a re-test is kept beside the earlier ones, never in their place.
        Intake tests are in the batches' records (:meth:`batches`).
        """

    @abc.abstractmethod
    def rapid_tests_of_batch(self, market: str, trace_code: str) -> list[RapidTestRow]:
        """The tests reported of the code's batch, oldest first.

        Those naming the code, of the batch's vendor and product (as its newest
        record has them), made no earlier than ``LATE_BATCH_GRACE`` before that
        record's intake; none without a registered batch.
        """

    @abc.abstractmethod
    def unverified_sales(
        self, market: str, start: datetime, end: datetime
    ) -> list[UnverifiedSalesRow]:
        """Sales in the range whose trace code was not verified, per (vendor, scale, status).

        Every status but VERIFIED counts (UNCHECKED sales, stored before sales
        were checked, are left out). Ordered by vendor, scale, then status; cheap
        because such sales are rare (SQLite reads a partial index of them only).
        """

    def batch_balances(self, market: str, start: datetime, end: datetime) -> list[BatchBalanceRow]:
        """Batches taken in during the range, each with its sales so far, in intake order.

        A batch's sales are those :meth:`sales_of_batch` lists (its own vendor's of
        its own product), so a false claim never makes a batch look oversold.
        This generic version asks for each batch's sales; stores override it with
        one aggregate query.
        """
        balances = []
        for batch in self.batches(market, start, end):
            sales = self.sales_of_batch(market, batch.trace_code)
            balances.append(
                BatchBalanceRow.of(
                    batch,
                    sales=len(sales),
                    sold_g=sum(sale.weight_g for sale in sales),
                    last_sale=max((sale.ts for sale in sales), default=None),
                )
            )
        return balances

    def batch_alerts(self, market: str, start: datetime, end: datetime) -> list[BatchBalanceRow]:
        """The balances of :meth:`batch_balances` that need an alert, in intake order.

        That is, batches that failed their rapid test and were sold all the same, and
        batches sold beyond their quantity (``BatchBalanceRow.needs_alert``): what the
        dashboard's alerts show. A week holds ~12,000 batches of a 300-vendor market
        and a handful of these, so a store that can ask for only these overrides this.
        """
        return [row for row in self.batch_balances(market, start, end) if row.needs_alert]
