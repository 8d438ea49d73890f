"""Stock on hand: a vendor's batches taken in lately and not yet sold out.

What a manager is asked to confirm before deactivating a vendor (the market
database's ``Management`` asks through this): goods still on the stall would
leave with a vendor whose scale may no longer sell them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from storage.interfaces.traceability import BatchBalanceRow

#: Batches older than this are taken to be sold, spoiled or gone, whatever the balance says
#: (fresh produce; a scale's weights are never exact to the gram).
ON_HAND_DAYS: Final = 7

BatchBalances = Callable[[str, datetime, datetime], list[BatchBalanceRow]]


def on_hand(row: BatchBalanceRow) -> bool:
    """Not failed at intake (a failed batch may not be sold at all; one not tested at
    intake is on sale) and not sold out."""
    return row.rapid_test_passed is not False and row.sold_g < row.quantity_g


def batches_on_hand(balances: BatchBalances, market: str, vendor: str, now: datetime) -> list[str]:
    """Trace codes of the vendor's batches of the last :data:`ON_HAND_DAYS` with stock left."""
    rows = balances(market, now - timedelta(days=ON_HAND_DAYS), now)
    return [row.trace_code for row in rows if row.vendor == vendor and on_hand(row)]
