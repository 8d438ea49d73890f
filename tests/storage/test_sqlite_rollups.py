"""SQLite store: the rollups equal what the raw rows say, however they were written.

The sale rollups (``sale_hourly``, ``market_sale_hourly``, ``batch_sold``) are
kept by the writer once per write (``storage.sqlite.rollups``), the footfall
rollup by triggers (``storage.sqlite.schema``); these tests recompute them in
Python from the raw rows after writes in shuffled batches with replays,
corrections and counter resets, and after upgrading files of older versions
that already hold data.
"""

from __future__ import annotations

import random
import sqlite3
from collections import defaultdict
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest

from schemas.messages import expected_total_fen
from storage.footfall import counter_increase
from storage.msgids import REUSED_MSG_ID
from storage.records import DeadLetter, Reading
from storage.sqlite import SQLiteStore
from storage.sqlite.schema import HOUR_NS, MIGRATIONS, migrate
from storage.traceability import LATE_BATCH_GRACE, TraceStatus
from tests.storage.factories import (
    MARKET,
    OTHER_MARKET,
    T0,
    at,
    batch,
    gate_count,
    reading,
    sale,
)

Rollup = dict[tuple[object, ...], tuple[int, ...]]
TRACE_CODES = ("SD370782-20250512-001", "SD370782-20250512-002", "SD370782-20250511-007")


def raw(path: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(path, isolation_level=None))


def expected_sale_rollups(conn: sqlite3.Connection) -> tuple[Rollup, Rollup]:
    per_product: dict[tuple[object, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    per_market: dict[tuple[object, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    rows = conn.execute(
        "SELECT sale.time_ns, sale.source, sale.product, src.market, sale.total_fen,"
        " sale.weight_g FROM sale JOIN sale_source AS src ON src.id = sale.source"
    )
    for time_ns, source, product, market, total_fen, weight_g in rows:
        hour = time_ns // HOUR_NS * HOUR_NS
        for total in (per_product[(hour, source, product)], per_market[(market, hour)]):
            total[0] += 1
            total[1] += total_fen
            total[2] += weight_g
    return (
        {key: tuple(value) for key, value in per_product.items()},
        {key: tuple(value) for key, value in per_market.items()},
    )


def expected_batch_sold(conn: sqlite3.Connection) -> Rollup:
    totals: dict[tuple[object, ...], list[int]] = {}
    rows = conn.execute("SELECT trace, product, source, time_ns, weight_g FROM sale")
    for trace, product, source, time_ns, weight_g in rows:
        total = totals.setdefault((trace, product, source), [0, 0, time_ns, time_ns])
        total[0] += 1
        total[1] += weight_g
        total[2] = min(total[2], time_ns)
        total[3] = max(total[3], time_ns)
    return {key: tuple(value) for key, value in totals.items()}


def stored_batch_sold(conn: sqlite3.Connection) -> Rollup:
    rows = conn.execute(
        "SELECT trace, product, source, sales, sold_g, first_sale_ns, last_sale_ns FROM batch_sold"
    )
    return {tuple(row[:3]): tuple(row[3:]) for row in rows}


def expected_footfall_rollup(conn: sqlite3.Connection) -> Rollup:
    totals: dict[tuple[object, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    previous: dict[int, tuple[int, int]] = {}
    rows = conn.execute("SELECT series, time_ns, in_total, out_total FROM footfall ORDER BY 1, 2")
    for series, time_ns, in_total, out_total in rows:
        before = previous.get(series)
        total = totals[(series, time_ns // HOUR_NS * HOUR_NS)]
        total[0] += 1
        total[1] += counter_increase(before[0] if before else None, in_total)
        total[2] += counter_increase(before[1] if before else None, out_total)
        previous[series] = (in_total, out_total)
    return {key: tuple(value) for key, value in totals.items()}


def stored_rollups(conn: sqlite3.Connection) -> tuple[Rollup, Rollup, Rollup]:
    def table(sql: str, key_columns: int) -> Rollup:
        return {tuple(row[:key_columns]): tuple(row[key_columns:]) for row in conn.execute(sql)}

    return (
        table(
            "SELECT hour_ns, source, product, transactions, total_fen, weight_g FROM sale_hourly", 3
        ),
        table(
            "SELECT market, hour_ns, transactions, total_fen, weight_g FROM market_sale_hourly", 2
        ),
        table("SELECT series, hour_ns, readings, people_in, people_out FROM footfall_hourly", 2),
    )


def assert_rollups_match_raw_rows(path: Path) -> None:
    with raw(path) as conn:
        sales, market_sales, footfall = stored_rollups(conn)
        assert (sales, market_sales) == expected_sale_rollups(conn)
        assert stored_batch_sold(conn) == expected_batch_sold(conn)
        assert footfall == expected_footfall_rollup(conn)
        # Sales of several batches and gate counts were written: empty rollups would prove nothing.
        assert len(stored_batch_sold(conn)) > 1
        assert footfall


def messy_history(rng: random.Random) -> list[Reading]:
    """Sales and gate counts over a day with replays, corrections and counter resets.

    A correction reuses a msg_id with other content: whichever of the two comes
    first is kept and the other refused (``storage.msgids``), see
    :func:`only_reuses_refused`.
    """
    readings = []
    for i in range(300):
        moment = T0 + timedelta(minutes=rng.randrange(-120, 24 * 60), milliseconds=rng.randrange(3))
        vendor = rng.choice(("v001", "v002"))
        message = sale(
            msg_id=i,
            ts=moment,
            vendor=vendor,
            plu=rng.choice(("1001", "1002")),
            weight_g=rng.randrange(1, 9_000),
            trace_code=rng.choice(TRACE_CODES),
        )
        market = OTHER_MARKET if i % 10 == 0 else MARKET
        readings.append(reading(message, f"sc-{vendor}", market=market))
        if rng.random() < 0.1:  # the same sale again, corrected: other weight, maybe other batch
            weight_g = rng.randrange(1, 9_000)
            fixed = message.model_copy(
                update={
                    "weight_g": weight_g,
                    "total_fen": expected_total_fen(weight_g, message.unit_price_fen_per_kg),
                    "trace_code": rng.choice(TRACE_CODES),
                }
            )
            readings.append(reading(fixed, f"sc-{vendor}", market=market))
    for gate in ("g-north", "g-south"):
        total = 0
        for minute in range(0, 600, 7):
            total = rng.randrange(0, 5) if rng.random() < 0.05 else total + rng.randrange(0, 30)
            message = gate_count(msg_id=minute, ts=at(minutes=minute), in_total=total)
            readings.append(reading(message, gate))
            if rng.random() < 0.05:  # the same point again, with a corrected count
                fixed = gate_count(msg_id=minute, ts=at(minutes=minute), in_total=total + 1)
                readings.append(reading(fixed, gate))
    readings += rng.sample(readings, 60)  # plain redeliveries
    rng.shuffle(readings)
    return readings


def only_reuses_refused(refused: list[DeadLetter]) -> bool:
    return all(letter.reason == REUSED_MSG_ID for letter in refused)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_writes_keep_the_rollups_equal_to_the_raw_rows(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    readings = messy_history(rng)
    path = tmp_path / "store.db"
    with SQLiteStore(path) as store:
        for first in range(0, len(readings), 37):
            assert only_reuses_refused(store.write(readings[first : first + 37]))
    assert_rollups_match_raw_rows(path)


def test_deleting_raw_rows_takes_them_out_of_the_rollups(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with SQLiteStore(path) as store:
        assert only_reuses_refused(store.write(messy_history(random.Random(4))))
    with raw(path) as conn:
        conn.execute("DELETE FROM sale WHERE msg_id % 3 = 0")
        conn.execute("DELETE FROM footfall WHERE msg_id % 3 = 0")
    assert_rollups_match_raw_rows(path)


def test_a_refused_sale_is_not_counted(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    unstorable = sale(msg_id=7, ts=at(minutes=7)).model_copy(update={"total_fen": 2**64})
    history = messy_history(random.Random(6))
    with SQLiteStore(path) as store:
        refused = store.write([*history[:100], reading(unstorable, "sc-v001"), *history[100:]])
    assert len([letter for letter in refused if letter.reason != REUSED_MSG_ID]) == 1
    assert_rollups_match_raw_rows(path)


def test_no_trigger_fires_when_the_store_writes_sales(tmp_path: Path) -> None:
    # Any trigger that fires on sale inserts or upserts made bulk writes ~10x
    # slower (docs/benchmarks.md). What remains fires only on DELETE, or on an
    # UPDATE of key columns, which the store's upsert never sets.
    path = tmp_path / "store.db"
    SQLiteStore(path).close()
    with raw(path) as conn:
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = 'sale'"
        ).fetchall()
    assert sorted(name for name, _ in triggers) == ["sale_key_is_fixed", "sale_rollup_delete"]
    assert " AFTER DELETE ON sale " in dict(triggers)["sale_rollup_delete"]
    assert (
        " BEFORE UPDATE OF time_ns, source, product ON sale " in dict(triggers)["sale_key_is_fixed"]
    )


def test_the_key_of_a_stored_row_cannot_change(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with SQLiteStore(path) as store:
        assert store.write([reading(sale(), "sc-001"), reading(gate_count(), "g-north")]) == []
    with raw(path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="cannot change"):
            conn.execute("UPDATE sale SET time_ns = time_ns + 1")
        with pytest.raises(sqlite3.IntegrityError, match="cannot change"):
            conn.execute("UPDATE footfall SET time_ns = time_ns + 1")


def copy_rows_into_older_version(path: Path, version: int, readings: list[Reading]) -> None:
    """A file at schema ``version`` holding ``readings``, inserted by that version's SQL.

    The readings are written to a current store first and their rows copied
    over with ``INSERT … SELECT``, so version 2's triggers see every insert.
    """
    source_path = path.with_name("source.db")
    with SQLiteStore(source_path) as source:
        assert only_reuses_refused(source.write(readings))
    with raw(path) as conn:
        assert migrate(conn, MIGRATIONS[:version]) == version
        conn.execute("ATTACH DATABASE ? AS source", (str(source_path),))
        for table in (
            "trace_code",
            "product",
            "sale_source",
            "sale",
            "batch_series",
            "batch",
            "footfall_series",
            "footfall",
        ):
            # Only the columns the older version has (later ones add some, e.g. trace_status).
            names = [row[1] for row in conn.execute(f"PRAGMA main.table_info({table})")]
            columns = ", ".join(f'"{name}"' for name in names)
            conn.execute(
                f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM source.{table}"  # noqa: S608
            )
        conn.execute("DETACH DATABASE source")


def test_upgrading_a_version_1_file_builds_the_rollups_from_its_rows(tmp_path: Path) -> None:
    # A version-1 file written the way version 1 wrote (INSERT OR REPLACE, no rollups).
    path = tmp_path / "store.db"
    copy_rows_into_older_version(path, 1, messy_history(random.Random(5)))

    with SQLiteStore(path) as store:
        assert store.sales_summary(MARKET, T0, at(hours=24))
    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (MIGRATIONS[-1].version,)
    assert_rollups_match_raw_rows(path)


def test_upgrading_a_version_2_file_keeps_its_rollups_and_counts_its_batches(
    tmp_path: Path,
) -> None:
    # Version 2 kept the hourly sale rollups with triggers; version 3 keeps them
    # in the writer and adds batch_sold, built from the sales already stored.
    path = tmp_path / "store.db"
    history = messy_history(random.Random(7))
    copy_rows_into_older_version(path, 2, history[:200])
    with raw(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM sale_hourly").fetchone() != (0,)

    with SQLiteStore(path) as store:
        # The rest, with redeliveries and corrections of sales the file already holds
        # (the msg_id ledger of version 5 starts empty, so those are written).
        assert only_reuses_refused(store.write(history[200:]))
    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (MIGRATIONS[-1].version,)
    assert_rollups_match_raw_rows(path)


def test_upgrading_a_version_3_file_checks_the_trace_codes_of_its_sales(tmp_path: Path) -> None:
    # Version 4 records each sale's trace status; the sales already stored are
    # checked against the batches already stored.
    path = tmp_path / "store.db"
    early = T0 - LATE_BATCH_GRACE - timedelta(milliseconds=1)
    readings = [
        reading(batch(msg_id=1, trace_code="TC-A01", vendor="a01", plu="1001"), "in-01"),
        reading(sale(msg_id=1, vendor="a01", plu="1001", trace_code="TC-A01"), "sc-a01"),
        reading(sale(msg_id=2, vendor="b01", plu="1001", trace_code="TC-A01"), "sc-b01"),
        reading(sale(msg_id=3, vendor="a01", plu="1002", trace_code="TC-A01"), "sc-a01"),
        reading(sale(msg_id=4, vendor="a01", plu="1001", trace_code="TC-NONE"), "sc-a01"),
        reading(sale(msg_id=5, ts=early, vendor="a01", trace_code="TC-A01"), "sc-a01"),
    ]
    copy_rows_into_older_version(path, 3, readings)

    with SQLiteStore(path) as store:
        sales = store.sales(MARKET, early, at(hours=1))
        unverified = store.unverified_sales(MARKET, early, at(hours=1))

    assert {row.msg_id: row.trace_status for row in sales} == {
        1: TraceStatus.VERIFIED,
        2: TraceStatus.OTHER_VENDOR,
        3: TraceStatus.PRODUCT_MISMATCH,
        4: TraceStatus.UNKNOWN_BATCH,
        5: TraceStatus.UNKNOWN_BATCH,
    }
    assert sum(row.sales for row in unverified) == 4


def test_upgrading_a_version_5_file_counts_only_each_batchs_own_sales(tmp_path: Path) -> None:
    # Up to version 5, batch_sold counted every sale naming a code, another vendor's
    # too; version 6 counts them per product and scale and rebuilds it.
    path = tmp_path / "store.db"
    readings = [
        reading(batch(msg_id=1, trace_code="TC-A01", vendor="a01", quantity_g=1_000), "in-01"),
        reading(sale(msg_id=1, vendor="a01", weight_g=600, trace_code="TC-A01"), "sc-a01"),
        reading(sale(msg_id=2, vendor="b01", weight_g=900, trace_code="TC-A01"), "sc-b01"),
    ]
    copy_rows_into_older_version(path, 5, readings)
    with raw(path) as conn:  # what version 5's writer had counted
        conn.execute(
            "INSERT INTO batch_sold (trace, sales, sold_g, last_sale_ns)"
            " SELECT trace, COUNT(*), SUM(weight_g), MAX(time_ns) FROM sale GROUP BY trace"
        )

    with SQLiteStore(path) as store:
        (balance,) = store.batch_balances(MARKET, T0, at(hours=1))

    assert (balance.sales, balance.sold_g, balance.oversold) == (1, 600, False)
    with raw(path) as conn:
        assert stored_batch_sold(conn) == expected_batch_sold(conn)
        assert len(stored_batch_sold(conn)) == 2
