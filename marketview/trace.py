"""The trace chain: a batch (its intake record and rapid test), its vendor, its sales and
what should be left of it; a receipt's sale, and its batch only when the link was verified.

The one place that reads a trace from the store (``docs/traceability.md``). The
trace endpoints, the public trace pages and the dashboard's trace search all
render what this answers.

A scale can name any trace code, so a receipt leads to a batch only when the
store verified the sale's link to it (``SaleRow.origin_verified``).
"""

from __future__ import annotations

from dataclasses import dataclass

from marketview.analytics import BatchBalance, batch_balance
from marketview.foodsafety import BatchTest, tests_of_batch
from storage.base import Store
from storage.interfaces.sales import SaleRow
from storage.interfaces.traceability import BatchRow


@dataclass(frozen=True, slots=True)
class BatchTrace:
    """A batch by its trace code and its sales, oldest first.

    ``batch`` is None when sales name the code but no intake record exists (a data gap).
    """

    trace_code: str
    batch: BatchRow | None
    sales: tuple[SaleRow, ...]
    #: its rapid tests, oldest first (``foodsafety.tests_of_batch``)
    tests: tuple[BatchTest, ...] = ()

    @property
    def latest_test(self) -> BatchTest | None:
        return self.tests[-1] if self.tests else None

    @property
    def sold_g(self) -> int:
        return sum(sale.weight_g for sale in self.sales)

    @property
    def balance(self) -> BatchBalance | None:
        """What should be left of the batch; None without an intake record."""
        return None if self.batch is None else batch_balance(self.batch.quantity_g, self.sales)


@dataclass(frozen=True, slots=True)
class ReceiptTrace:
    """A receipt's sale, and the batch it came from only if that link was verified."""

    sale: SaleRow
    batch: BatchRow | None
    #: the batch's rapid tests, oldest first; none when the link was not verified
    tests: tuple[BatchTest, ...] = ()


def batch_trace(store: Store, market: str, trace_code: str) -> BatchTrace | None:
    """The batch with this code and its sales; None when neither a batch nor a sale has it."""
    batch = store.batch(market, trace_code)
    sales = sales_of_batch(store, market, trace_code)
    if batch is None and not sales:
        return None
    return BatchTrace(trace_code, batch, sales, tests_of_batch(store, market, batch, trace_code))


def sales_of_batch(store: Store, market: str, trace_code: str) -> tuple[SaleRow, ...]:
    """The batch's sales (:meth:`Store.sales_of_batch`), oldest first."""
    sales = store.sales_of_batch(market, trace_code)
    return tuple(sorted(sales, key=lambda sale: (sale.ts, sale.msg_id)))


def receipt_trace(store: Store, market: str, scale: str, msg_id: int) -> ReceiptTrace | None:
    """The sale a receipt was printed for, with its verified batch; None for no such sale."""
    sale = store.sale_by_receipt(market, scale, msg_id)
    if sale is None:
        return None
    batch = verified_batch(store, market, sale)
    if batch is None:
        return ReceiptTrace(sale, None)
    return ReceiptTrace(sale, batch, tests_of_batch(store, market, batch, batch.trace_code))


def verified_batch(store: Store, market: str, sale: SaleRow) -> BatchRow | None:
    """The batch of a sale, only if the store verified that the sale came from it."""
    if not sale.origin_verified:
        return None
    return store.batch(market, sale.trace_code)
