"""Integer ids for repeated keys (series tags, sale sources, products, trace codes).

Ids are resolved inside the writer's transaction and only enter the cache after
that transaction committed: an id from a rolled-back transaction may be handed
out again for another key, and must never be remembered.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Key = tuple[str, ...]


@dataclass(frozen=True, slots=True, eq=False)
class InternTable:
    """SQL to find or create the id of a key in one intern table.

    Compared and hashed by identity (``eq=False``): each table is one module
    constant, and it is a dictionary key on the write path of every reading.
    """

    insert_sql: str
    select_sql: str


class Interner:
    """Maps keys of one intern table onto ids, remembering up to ``capacity`` of them."""

    def __init__(self, table: InternTable, *, capacity: int) -> None:
        self._table = table
        self._capacity = capacity
        self._cache: OrderedDict[Key, int] = OrderedDict()

    def resolve(
        self, conn: sqlite3.Connection, keys: Iterable[Key]
    ) -> tuple[dict[Key, int], dict[Key, int]]:
        """Ids of ``keys``, creating missing ones; returns (all ids, ids not yet cached).

        Call :meth:`remember` with the second mapping once the transaction committed.
        """
        ids: dict[Key, int] = {}
        missing: list[Key] = []
        for key in keys:
            cached = self._cache.get(key)
            if cached is None:
                missing.append(key)
            else:
                self._cache.move_to_end(key)
                ids[key] = cached
        fresh = self._fetch_or_create(conn, missing)
        ids.update(fresh)
        return ids, fresh

    def remember(self, fresh: Mapping[Key, int]) -> None:
        self._cache.update(fresh)
        while len(self._cache) > self._capacity:
            self._cache.popitem(last=False)

    def _fetch_or_create(self, conn: sqlite3.Connection, keys: list[Key]) -> dict[Key, int]:
        if not keys:
            return {}
        conn.executemany(self._table.insert_sql, keys)
        found: dict[Key, int] = {}
        for key in keys:
            row = conn.execute(self._table.select_sql, key).fetchone()
            found[key] = int(row[0])
        return found


SALE_SOURCE = InternTable(
    "INSERT OR IGNORE INTO sale_source (market, scale, vendor) VALUES (?, ?, ?)",
    "SELECT id FROM sale_source WHERE market = ? AND scale = ? AND vendor = ?",
)
PRODUCT = InternTable(
    "INSERT OR IGNORE INTO product (market, plu) VALUES (?, ?)",
    "SELECT id FROM product WHERE market = ? AND plu = ?",
)
PRICE_SERIES = InternTable(
    "INSERT OR IGNORE INTO price_series (market, vendor, plu) VALUES (?, ?, ?)",
    "SELECT id FROM price_series WHERE market = ? AND vendor = ? AND plu = ?",
)
BATCH_SERIES = InternTable(
    "INSERT OR IGNORE INTO batch_series (market, station, vendor, plu) VALUES (?, ?, ?, ?)",
    "SELECT id FROM batch_series WHERE market = ? AND station = ? AND vendor = ? AND plu = ?",
)
FOOTFALL_SERIES = InternTable(
    "INSERT OR IGNORE INTO footfall_series (market, gate) VALUES (?, ?)",
    "SELECT id FROM footfall_series WHERE market = ? AND gate = ?",
)
SCALE_STATUS_SERIES = InternTable(
    "INSERT OR IGNORE INTO scale_status_series (market, scale) VALUES (?, ?)",
    "SELECT id FROM scale_status_series WHERE market = ? AND scale = ?",
)
TRACE_CODE = InternTable(
    "INSERT OR IGNORE INTO trace_code (market, code) VALUES (?, ?)",
    "SELECT id FROM trace_code WHERE market = ? AND code = ?",
)

INTERN_TABLES = (
    SALE_SOURCE,
    PRODUCT,
    TRACE_CODE,
    PRICE_SERIES,
    BATCH_SERIES,
    FOOTFALL_SERIES,
    SCALE_STATUS_SERIES,
)
