"""Traceability: a trace code or a receipt, to a batch and every sale of it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo

import pandas as pd

from api import analytics
from dashboard.queries.common import DashboardData
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

    @property
    def balance(self) -> analytics.BatchBalance:
        return analytics.batch_balance(self.batch.quantity_g, self.sales)


@dataclass(frozen=True, slots=True)
class UnverifiedReceipt:
    """A receipt whose trace code did not check out: it leads to no batch."""

    receipt: SaleRow


def trace_chain(
    data: DashboardData, market_id: str, query: TraceQuery
) -> TraceChain | UnverifiedReceipt | None:
    """The batch of a trace code, or of a receipt whose link to its batch was verified."""
    market = data.market(market_id)
    receipt = None
    code = query.trace_code
    if query.scale is not None and query.msg_id is not None:
        receipt = data.store.sale_by_receipt(market.id, query.scale, query.msg_id)
        if receipt is None:
            return None
        if not receipt.origin_verified:
            return UnverifiedReceipt(receipt)
        code = receipt.trace_code
    if code is None:
        return None
    batch = data.store.batch(market.id, code)
    if batch is None:
        return None
    sales = sorted(data.store.sales_of_batch(market.id, code), key=lambda s: (s.ts, s.msg_id))
    return TraceChain(batch, tuple(sales), receipt)


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
