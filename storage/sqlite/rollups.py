"""The sale rollups, kept by the writer once per write instead of by triggers.

``sale_hourly``, ``market_sale_hourly`` and ``batch_sold`` (see
``storage.sqlite.schema``) are updated in the transaction of the raw rows, with
one ``executemany`` upsert per table. A trigger on ``sale`` would be simpler,
but any trigger that fires on each insert made bulk sale writes about ten times
slower (docs/benchmarks.md).

A redelivered sale overwrites the stored one (same primary key, an upsert), so
before the raw insert the writer reads which of the write's sales are already
stored (:func:`stored_sales`); :func:`rollup_changes` then takes the stored
versions out and puts the new ones in. The primary key (time, source, product)
never changes, so a sale stays in the same hourly rows and only its amounts
move; its trace code may change, which moves it between ``batch_sold`` rows.

``batch_sold`` counts the sales naming a trace code per product and sale
source, whatever their trace status: which of them belong to the batch (its
own vendor's, of its own product) is decided when it is read
(``queries.BATCH_BALANCES``), so a batch registered after its first sales, which
turns them verified, changes nothing here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from storage.sqlite.schema import HOUR_NS

_K = TypeVar("_K", tuple[int, int, int], tuple[str, int])

#: A sale's primary key: (time_ns, source, product).
SaleKey = tuple[int, int, int]
#: What the rollups count of a sale: (trace, total_fen, weight_g).
SaleAmounts = tuple[int, int, int]
#: A row of ``batch_sold``: (trace, product, source).
BatchSoldKey = tuple[int, int, int]

#: The stored versions of the sales whose keys are in ``:keys`` (a JSON array
#: of [time_ns, source, product]): one primary-key seek per key.
STORED_SALES = """
SELECT sale.time_ns, sale.source, sale.product, sale.trace, sale.total_fen, sale.weight_g
FROM json_each(:keys) AS k CROSS JOIN sale
WHERE sale.time_ns = json_extract(k.value, '$[0]')
  AND sale.source = json_extract(k.value, '$[1]')
  AND sale.product = json_extract(k.value, '$[2]')
"""

UPSERT_SALE_HOURLY = """
INSERT INTO sale_hourly (hour_ns, source, product, transactions, total_fen, weight_g)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT DO UPDATE SET
    transactions = transactions + excluded.transactions,
    total_fen = total_fen + excluded.total_fen,
    weight_g = weight_g + excluded.weight_g
"""

UPSERT_MARKET_SALE_HOURLY = """
INSERT INTO market_sale_hourly (market, hour_ns, transactions, total_fen, weight_g)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT DO UPDATE SET
    transactions = transactions + excluded.transactions,
    total_fen = total_fen + excluded.total_fen,
    weight_g = weight_g + excluded.weight_g
"""

UPSERT_BATCH_SOLD = """
INSERT INTO batch_sold (trace, product, source, sales, sold_g, first_sale_ns, last_sale_ns)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO UPDATE SET
    sales = sales + excluded.sales,
    sold_g = sold_g + excluded.sold_g,
    first_sale_ns = MIN(first_sale_ns, excluded.first_sale_ns),
    last_sale_ns = MAX(last_sale_ns, excluded.last_sale_ns)
"""

#: A ``batch_sold`` row that lost a sale (a redelivery corrected it or named
#: another trace code) is counted again from its raw sales: its first or newest
#: sale may be the one that left. One seek on ``sale_by_trace``; rare, because
#: scales seldom correct a sale.
RECOUNT_BATCH_SOLD = """
INSERT INTO batch_sold (trace, product, source, sales, sold_g, first_sale_ns, last_sale_ns)
SELECT trace, product, source, COUNT(*), SUM(weight_g), MIN(time_ns), MAX(time_ns)
FROM sale
WHERE trace = ? AND product = ? AND source = ?
GROUP BY trace, product, source
ON CONFLICT DO UPDATE SET
    sales = excluded.sales,
    sold_g = excluded.sold_g,
    first_sale_ns = excluded.first_sale_ns,
    last_sale_ns = excluded.last_sale_ns
"""

DROP_UNSOLD_BATCH = """
DELETE FROM batch_sold
WHERE trace = ? AND product = ? AND source = ?
  AND NOT EXISTS (
    SELECT 1 FROM sale
    WHERE trace = batch_sold.trace AND product = batch_sold.product AND source = batch_sold.source
  )
"""


@dataclass(slots=True)
class RollupChanges:
    """Net changes of the sale rollups for one write, in integers."""

    #: (hour_ns, source, product) → [transactions, total_fen, weight_g]
    hourly: dict[tuple[int, int, int], list[int]] = field(default_factory=dict)
    #: (market, hour_ns) → [transactions, total_fen, weight_g]
    market_hourly: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    #: (trace, product, source) → [sales, sold_g, oldest time_ns, newest time_ns] added
    batches_gained: dict[BatchSoldKey, list[int]] = field(default_factory=dict)
    #: ``batch_sold`` rows that lost a sale: recounted from the raw rows
    batches_lost: set[BatchSoldKey] = field(default_factory=set)

    def add(self, key: SaleKey, amounts: SaleAmounts, market: str) -> None:
        time_ns, source, product = key
        trace, total_fen, weight_g = amounts
        hour_ns = time_ns - time_ns % HOUR_NS  # floored, like schema.hour_of
        _accumulate(self.hourly, (hour_ns, source, product), 1, total_fen, weight_g)
        _accumulate(self.market_hourly, (market, hour_ns), 1, total_fen, weight_g)
        batch_key = (trace, product, source)
        gained = self.batches_gained.get(batch_key)
        if gained is None:
            self.batches_gained[batch_key] = [1, weight_g, time_ns, time_ns]
        else:
            gained[0] += 1
            gained[1] += weight_g
            gained[2] = min(gained[2], time_ns)
            gained[3] = max(gained[3], time_ns)

    def remove(self, key: SaleKey, amounts: SaleAmounts, market: str) -> None:
        time_ns, source, product = key
        trace, total_fen, weight_g = amounts
        hour_ns = time_ns - time_ns % HOUR_NS
        _accumulate(self.hourly, (hour_ns, source, product), -1, -total_fen, -weight_g)
        _accumulate(self.market_hourly, (market, hour_ns), -1, -total_fen, -weight_g)
        self.batches_lost.add((trace, product, source))


def _accumulate(totals: dict[_K, list[int]], key: _K, count: int, fen: int, grams: int) -> None:
    total = totals.get(key)
    if total is None:
        totals[key] = [count, fen, grams]
    else:
        total[0] += count
        total[1] += fen
        total[2] += grams


def stored_sales(conn: sqlite3.Connection, keys: Collection[SaleKey]) -> dict[SaleKey, SaleAmounts]:
    """The amounts of the sales with these keys that are already stored."""
    if not keys:
        return {}
    rows = conn.execute(STORED_SALES, {"keys": json.dumps(list(keys))})
    return {
        (time_ns, source, product): (trace, total_fen, weight_g)
        for time_ns, source, product, trace, total_fen, weight_g in rows
    }


def rollup_changes(
    stored: Mapping[SaleKey, SaleAmounts],
    written: Iterable[tuple[SaleKey, SaleAmounts]],
    market_of_source: Mapping[int, str],
) -> RollupChanges:
    """What the rollups gain when ``written`` (in write order) lands on ``stored``.

    Each key counts once with its final amounts: the last write of a key wins,
    as it does in the table, and a stored version is taken out first.
    """
    final = dict(written)  # keeps each key's last value
    changes = RollupChanges()
    for key, amounts in final.items():
        market = market_of_source[key[1]]
        if stored:  # usually empty: new sales, not redeliveries
            before = stored.get(key)
            if before == amounts:
                continue  # a plain redelivery changes nothing
            if before is not None:
                changes.remove(key, before, market)
        changes.add(key, amounts, market)
    return changes


def apply(conn: sqlite3.Connection, changes: RollupChanges) -> None:
    """Upsert the changes: one ``executemany`` per rollup, after the raw rows are written.

    Transactions per hourly row never go down here: a sale keeps its key, so
    replacing it takes one out and puts one back. Only deletes (the trigger in
    ``schema``) empty an hourly row.
    """
    conn.executemany(UPSERT_SALE_HOURLY, [(*key, *total) for key, total in changes.hourly.items()])
    conn.executemany(
        UPSERT_MARKET_SALE_HOURLY, [(*key, *total) for key, total in changes.market_hourly.items()]
    )
    conn.executemany(
        UPSERT_BATCH_SOLD,
        [
            (*batch_key, *gained)
            for batch_key, gained in changes.batches_gained.items()
            if batch_key not in changes.batches_lost
        ],
    )
    lost = sorted(changes.batches_lost)
    conn.executemany(RECOUNT_BATCH_SOLD, lost)
    conn.executemany(DROP_UNSOLD_BATCH, lost)
