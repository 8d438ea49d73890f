"""SQLite store: the retention pass deletes in chunks and leaves the rollups as they were.

The store contract (``tests/storage/contract/test_retention.py``) says what
expires; these tests look at the file: chunk after chunk the raw rows before
the cut-off go, the rollups and ``batch_sold`` stay exactly as they were, and
deletes outside a pass still take rows out of the rollups.
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest

from schemas.retention import RetentionPolicy
from storage.records import to_ns
from storage.sqlite import SQLiteStore, retention
from tests.storage.factories import MARKET, OTHER_MARKET, T0, at, batch, reading, sale
from tests.storage.test_sqlite_rollups import (
    TRACE_CODES,
    messy_history,
    only_reuses_refused,
    raw,
    stored_batch_sold,
    stored_rollups,
)

POLICY = RetentionPolicy(trace=730, gate_counts=730, rollups=36_500)
#: 12:00 local (04:00 UTC) on the day of the messy history, two years on
NOW = T0 + timedelta(days=730, hours=4)
CUTOFF_NS = to_ns(at(hours=4))


@pytest.mark.parametrize("chunk_rows", [1, 7, 5_000])
def test_chunked_passes_delete_old_raw_rows_and_keep_the_rollups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_rows: int
) -> None:
    monkeypatch.setattr(retention, "CHUNK_ROWS", chunk_rows)
    path = tmp_path / "store.db"
    with SQLiteStore(path) as store:
        assert only_reuses_refused(store.write(messy_history(random.Random(5))))
        with raw(path) as conn:
            rollups_before = stored_rollups(conn)
            sold_before = stored_batch_sold(conn)
            kept_sales = conn.execute(
                "SELECT COUNT(*) FROM sale JOIN sale_source AS src ON src.id = sale.source"
                " WHERE src.market <> ? OR sale.time_ns >= ?",
                (MARKET, CUTOFF_NS),
            ).fetchone()[0]

        report = store.apply_retention(NOW, {MARKET: POLICY})

    assert report.total > 50  # so that the small chunks are many
    with raw(path) as conn:
        assert stored_rollups(conn) == rollups_before
        assert stored_batch_sold(conn) == sold_before  # each is sold from after the cut-off too
        assert conn.execute("SELECT COUNT(*) FROM sale").fetchone()[0] == kept_sales
        # one gate count before the cut-off per gate: the baseline of the next
        assert conn.execute(
            "SELECT COUNT(*) FROM footfall WHERE time_ns < ?", (CUTOFF_NS,)
        ).fetchone() == (2,)
        assert conn.execute("SELECT active FROM retention_in_progress").fetchone() == (0,)


def test_deletes_outside_a_pass_still_leave_the_rollups(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with SQLiteStore(path) as store:
        store.write([reading(sale(msg_id=i, ts=at(hours=i)), "sc-001") for i in range(1, 7)])
        store.apply_retention(T0 + timedelta(days=730, hours=3), {MARKET: POLICY})
    with raw(path) as conn:
        conn.execute("DELETE FROM sale WHERE msg_id = 5")
        hours = conn.execute(
            "SELECT transactions FROM market_sale_hourly ORDER BY hour_ns"
        ).fetchall()
    # hours 1 and 2 were expired by the pass and stay; hour 5's sale was deleted by hand
    assert hours == [(1,), (1,), (1,), (1,), (1,)]


def test_sold_quantities_go_once_the_batch_and_its_sales_are_gone(tmp_path: Path) -> None:
    old, recent = TRACE_CODES[:2]
    path = tmp_path / "store.db"
    with SQLiteStore(path) as store:
        store.write(
            [
                reading(batch(msg_id=1, ts=at(hours=1), trace_code=old), "in-01"),
                reading(sale(msg_id=1, ts=at(hours=2), trace_code=old), "sc-001"),
                reading(batch(msg_id=2, ts=at(hours=10), trace_code=recent), "in-01"),
                # sold before the recent batch's intake was recorded, and after
                reading(sale(msg_id=2, ts=at(hours=3), trace_code=recent), "sc-001"),
                reading(sale(msg_id=3, ts=at(hours=11), trace_code=recent), "sc-001"),
                reading(
                    sale(msg_id=1, ts=at(hours=2), trace_code=old), "sc-9", market=OTHER_MARKET
                ),
            ]
        )
        store.apply_retention(T0 + timedelta(days=730, hours=5), {MARKET: POLICY})
        with raw(path) as conn:
            codes = conn.execute(
                "SELECT t.market, t.code, s.sales FROM batch_sold AS s"
                " JOIN trace_code AS t ON t.id = s.trace ORDER BY 1, 2"
            ).fetchall()
        assert codes == [(OTHER_MARKET, old, 1), (MARKET, recent, 2)]
        [balance] = store.batch_balances(MARKET, T0, at(hours=24))
        assert (balance.trace_code, balance.sales) == (recent, 2)
