"""Recalls of locked batches, and the sales a lock did not stop.

A batch locked after a failed rapid test (``marketdb.locks``) was sold before the lock:
those sales are the recall list, the customers to reach (each receipt's public trace
page says that the batch later failed; see ``marketview.foodsafety.tests_of_batch``).
A sale of the batch made while it was locked means a scale ignored its lock (an old
scale, or one offline with stale state): it is kept like any sale, flagged here, and
raised as an alert naming the vendor.

A lock covers one vendor's product of the batch; the sales counted are that vendor's
sales of that product under the batch's code. Before and while are by the sale's own
time against the lock's. The one place that splits them, for the API, the CSV export
and the dashboard.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Final

from marketdb.locks import BatchLock
from marketview.analytics import yuan
from marketview.pricing import yuan_per_kg
from marketview.trace import sales_of_batch
from storage.base import Store
from storage.interfaces.sales import SaleRow


@dataclass(frozen=True, slots=True)
class Recall:
    """A lock with the sales of its batch and product: before it, and while it held."""

    lock: BatchLock
    #: the recall list: sold before the lock, oldest first
    before_lock: tuple[SaleRow, ...]
    #: sold while the lock held (flagged: the scale ignored its lock), oldest first
    while_locked: tuple[SaleRow, ...]

    @property
    def recalled_g(self) -> int:
        return sum(sale.weight_g for sale in self.before_lock)

    @property
    def recalled_fen(self) -> int:
        return sum(sale.total_fen for sale in self.before_lock)


def recall_of(store: Store, lock: BatchLock, earlier: Sequence[BatchLock] = ()) -> Recall:
    """The lock's recall list and its flagged sales (one bounded read: the batch's sales).

    ``earlier``: the product's locks before this one, lifted since; a sale made while one
    of them held is flagged too, not recalled as if nothing had been locked."""
    windows = [lock, *(one for one in earlier if one.plu == lock.plu)]
    before: list[SaleRow] = []
    during: list[SaleRow] = []
    for sale in sales_of_batch(store, lock.market, lock.trace_code):
        if sale.vendor != lock.vendor or sale.plu != lock.plu:
            continue  # another vendor naming the code, or another product: not this lock's
        if any(was_locked_at(window, sale.ts) for window in windows):
            during.append(sale)
        elif sale.ts < lock.locked_at:
            before.append(sale)
    return Recall(lock, tuple(before), tuple(during))


def latest_recall(store: Store, locks_of_batch: Sequence[BatchLock], plu: str) -> Recall | None:
    """The recall of the product's latest lock (locks oldest first, as
    ``LockService.of_batch`` gives them), its earlier locks' windows flagged too; None
    when the product was never locked."""
    mine = [lock for lock in locks_of_batch if lock.plu == plu]
    if not mine:
        return None
    return recall_of(store, mine[-1], earlier=mine[:-1])


def was_locked_at(lock: BatchLock, moment: datetime) -> bool:
    return lock.locked_at <= moment and (lock.unlocked_at is None or moment < lock.unlocked_at)


def sold_while_locked(store: Store, locks: Iterable[BatchLock], since: datetime) -> list[Recall]:
    """The recalls of locks that held at some time since ``since`` and had sales while
    they held: the alerts, oldest lock first."""
    found = []
    for lock in locks:
        if lock.unlocked_at is not None and lock.unlocked_at < since:
            continue  # lifted before the window: its alert is over
        recall = recall_of(store, lock)
        if recall.while_locked:
            found.append(recall)
    return found


#: The recall export's columns: what a manager needs to reach a buyer (the receipt's
#: public page, which says the batch failed) and to account for the quantity.
RECALL_CSV_COLUMNS: Final = (
    "sold_at",
    "vendor",
    "plu",
    "scale",
    "receipt",
    "weight_g",
    "unit_price_yuan_per_kg",
    "total_yuan",
    "sold_while_locked",
    "receipt_page",
)


def receipt_page_path(market: str, scale: str, msg_id: int) -> str:
    """The public trace page of a receipt (its QR code points here), from the site root."""
    return f"/trace/{market}/receipt/{scale}/{msg_id}"


def recall_csv(recall: Recall, tz: tzinfo, site: str) -> str:
    """The recall as CSV (UTF-8, a header row): every sale before the lock, then the
    flagged sales made while it held (their buyers must be reached too). Times are local
    to the market (``tz``); ``site`` is the public address the receipt pages are under."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(RECALL_CSV_COLUMNS)
    flagged = [(sale, False) for sale in recall.before_lock]
    flagged += [(sale, True) for sale in recall.while_locked]
    for sale, while_locked in flagged:
        writer.writerow(
            (
                sale.ts.astimezone(tz).isoformat(timespec="seconds"),
                _text_cell(sale.vendor),
                _text_cell(sale.plu),
                _text_cell(sale.scale),
                sale.msg_id,
                sale.weight_g,
                yuan_per_kg(sale.unit_price_fen_per_kg),
                yuan(sale.total_fen),
                "yes" if while_locked else "no",
                site.rstrip("/") + receipt_page_path(sale.market, sale.scale, sale.msg_id),
            )
        )
    return out.getvalue()


#: What makes a spreadsheet read a cell as a formula (OWASP's CSV injection list).
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def _text_cell(text: str) -> str:
    """An identifier as a spreadsheet shows it, never as a formula (a PLU may begin
    with ``-``): such a cell gets a leading apostrophe, which spreadsheets hide."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text
