"""Traceability: a trace code or a receipt, to a batch and every sale of it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo

import pandas as pd

from dashboard.queries.common import DashboardData
from marketview import trace
from marketview.analytics import BatchBalance, batch_balance
from marketview.foodsafety import BatchTest
from storage.interfaces.sales import SaleRow
from storage.interfaces.traceability import BatchRow

_RECEIPT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.-]{0,31})\s*[:/#]\s*([0-9]{1,19})\s*$")
_TRACE_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{3,63}$")


@dataclass(frozen=True, slots=True)
class TraceQuery:
    trace_code: str | None = None
    scale: str | None = None
    msg_id: int | None = None


def parse_trace_query(text: str | None) -> TraceQuery | None:
    """A trace code, or a receipt as ``scale:number`` (also ``scale/number``); None if neither."""
    if not text:
        return None
    receipt = _RECEIPT.match(text)
    if receipt is not None and int(receipt.group(2)) < 2**63:
        return TraceQuery(scale=receipt.group(1), msg_id=int(receipt.group(2)))
    code = text.strip()
    return TraceQuery(trace_code=code) if _TRACE_CODE.match(code) else None


@dataclass(frozen=True, slots=True)
class TraceChain:
    """A batch, every sale of it in time order, and the receipt's sale when searched by one."""

    batch: BatchRow
    sales: tuple[SaleRow, ...]
    receipt: SaleRow | None
    #: the batch's rapid tests, oldest first (the intake's, then later ones)
    tests: tuple[BatchTest, ...] = ()

    @property
    def balance(self) -> BatchBalance:
        return batch_balance(self.batch.quantity_g, self.sales)


@dataclass(frozen=True, slots=True)
class UnverifiedReceipt:
    """A receipt whose trace code did not check out: it leads to no batch."""

    receipt: SaleRow


def trace_chain(
    data: DashboardData, market_id: str, query: TraceQuery
) -> TraceChain | UnverifiedReceipt | None:
    """The batch of a trace code, or of a receipt whose link to its batch was verified."""
    market = data.market(market_id)
    if query.scale is not None and query.msg_id is not None:
        return _receipt_chain(data, market.id, query.scale, query.msg_id)
    if query.trace_code is None:
        return None
    found = trace.batch_trace(data.store, market.id, query.trace_code)
    if found is None or found.batch is None:
        return None
    return TraceChain(found.batch, found.sales, None, found.tests)


def _receipt_chain(
    data: DashboardData, market: str, scale: str, msg_id: int
) -> TraceChain | UnverifiedReceipt | None:
    found = trace.receipt_trace(data.store, market, scale, msg_id)
    if found is None:
        return None
    if not found.sale.origin_verified:
        return UnverifiedReceipt(found.sale)
    if found.batch is None:
        return None
    sales = trace.sales_of_batch(data.store, market, found.sale.trace_code)
    return TraceChain(found.batch, sales, found.sale, found.tests)


def sales_frame(sales: Sequence[SaleRow], tz: tzinfo) -> pd.DataFrame:
    """Sales as ``ts, scale, vendor, msg_id, weight_g, total_fen, sold_g`` (sold_g cumulative)
    and ``trace_status`` (a ``TraceStatus`` value).

    ``ts`` is in the market's time zone: charts show the wall-clock time of the market.
    """
    frame = pd.DataFrame(
        {
            "ts": pd.Series([s.ts.astimezone(tz) for s in sales], dtype=object),
            "scale": pd.Series([s.scale for s in sales], dtype=object),
            "vendor": pd.Series([s.vendor for s in sales], dtype=object),
            "msg_id": pd.Series([s.msg_id for s in sales], dtype="int64"),
            "weight_g": pd.Series([s.weight_g for s in sales], dtype="int64"),
            "total_fen": pd.Series([s.total_fen for s in sales], dtype="int64"),
            "trace_status": pd.Series([s.trace_status.value for s in sales], dtype=object),
        }
    )
    frame["sold_g"] = frame["weight_g"].cumsum()
    return frame
