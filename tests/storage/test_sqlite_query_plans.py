"""SQLite store: every query reaches the data tables through an index.

A year of a 300-vendor market is ~22 M sale rows; a query that scans the sale
table instead of seeking an index takes seconds, so plans are pinned here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.sqlite import SQLiteStore, queries, verification
from tests.storage.factories import batch, gate_count, price, reading, sale, status

PARAMS = {
    "market": "nanmen",
    "start": 0,
    "end": 10**18,
    "moment": 10**18,
    "vendor": "v001",
    "scale": "sc-001",
    "plu": "1001",
    "trace_code": "SD370782-20250512-001",
    "msg_id": 1,
    "keys": '[["nanmen", "sc-001", 1]]',
    "limit": 100,
    "since": 0,
    "grace_ns": 86_400_000_000_000,
    "head_end": 3_600_000_000_000,
    "hours_start": 3_600_000_000_000,
    "hours_end": 7_200_000_000_000,
    "tail_start": 7_200_000_000_000,
    "lookback_ns": 3_600_000_000_000,
}
SELECTS = sorted(
    name
    for name in vars(queries)
    if name.isupper() and str(getattr(queries, name)).lstrip().startswith(("SELECT", "WITH"))
)


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    path: Path = tmp_path_factory.mktemp("plans") / "store.db"
    with SQLiteStore(path) as store:
        store.write(
            [
                reading(sale(), "sc-001"),
                reading(price(), "scr-001"),
                reading(batch(), "in-01"),
                reading(gate_count(), "g-north"),
                reading(status(), "sc-001"),
            ]
        )
    connection = sqlite3.connect(path)
    yield connection
    connection.close()


def plan(conn: sqlite3.Connection, sql: str) -> list[str]:
    return [str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, PARAMS)]


def test_every_query_is_covered() -> None:
    assert {
        "SALES_OF_SOURCES_IN_RANGE",
        "SALES_OF_BATCH",
        "BATCH_BY_TRACE_CODE",
        "LATEST_PRICES",
        "SALES_SUMMARY_BY_HOURS",
        "SALES_BY_HOUR",
        "FOOTFALL_HOURS",
        "DEVICE_LAST_SEEN",
    } <= set(SELECTS)


@pytest.mark.parametrize("name", SELECTS)
def test_no_query_scans_a_table(conn: sqlite3.Connection, name: str) -> None:
    steps = plan(conn, getattr(queries, name))
    assert steps
    # "SCAN parts" reads the rows a WITH clause's co-routine yields, and "SCAN k
    # VIRTUAL TABLE" the JSON list of keys a query is given: neither is a table.
    assert not [
        step
        for step in steps
        if step.startswith("SCAN")
        and step != "SCAN parts"
        and not step.startswith("SCAN k VIRTUAL TABLE")
    ], steps


def test_the_msg_id_ledger_is_looked_up_by_its_key(conn: sqlite3.Connection) -> None:
    assert plan(conn, queries.STORED_MSG_IDS)[1] == (
        "SEARCH ledger USING PRIMARY KEY (market=? AND device=? AND msg_id=?)"
    )


def test_sales_of_a_vendor_in_a_range_seek_per_source(conn: sqlite3.Connection) -> None:
    steps = plan(conn, queries.SALES_OF_SOURCES_IN_RANGE)
    assert "SEARCH sale USING INDEX sale_by_source (source=? AND time_ns>? AND time_ns<?)" in steps


def test_sales_of_a_market_in_a_range_use_the_time_key(conn: sqlite3.Connection) -> None:
    assert (
        plan(conn, queries.SALES_IN_RANGE)[0]
        == "SEARCH sale USING PRIMARY KEY (time_ns>? AND time_ns<?)"
    )


def test_sales_of_a_batch_use_the_trace_code_index(conn: sqlite3.Connection) -> None:
    steps = plan(conn, queries.SALES_OF_BATCH)
    assert steps[:2] == [
        "SEARCH t USING COVERING INDEX sqlite_autoindex_trace_code_1 (market=? AND code=?)",
        "SEARCH sale USING INDEX sale_by_trace (trace=? AND time_ns>?)",
    ]
    assert not [step for step in steps if "TEMP B-TREE" in step]  # the index yields time order


def test_batch_balances_seek_each_batchs_rows_of_what_was_sold(conn: sqlite3.Connection) -> None:
    steps = plan(conn, queries.BATCH_BALANCES)
    assert "SEARCH sold USING PRIMARY KEY (trace=? AND product=?) LEFT-JOIN" in steps, steps
    # Raw sales only for a row with sales from before the batch's grace window.
    raw_sales = [step for step in steps if step.startswith("SEARCH sale ")]
    assert raw_sales, steps
    assert all("sale_by_trace (trace=? AND time_ns>?)" in step for step in raw_sales), steps
    assert not [step for step in steps if "TEMP B-TREE" in step], steps


def test_batch_by_trace_code_uses_the_trace_code_index(conn: sqlite3.Connection) -> None:
    assert "SEARCH b USING INDEX batch_by_trace (trace=?)" in plan(
        conn, queries.BATCH_BY_TRACE_CODE
    )


def test_sale_by_receipt_uses_the_receipt_index(conn: sqlite3.Connection) -> None:
    assert "SEARCH sale USING INDEX sale_by_receipt (source=? AND msg_id=?)" in plan(
        conn, queries.SALE_BY_RECEIPT
    )


def test_latest_prices_seek_the_newest_row_of_each_series(conn: sqlite3.Connection) -> None:
    steps = plan(conn, queries.LATEST_PRICES)
    assert "SEARCH p USING PRIMARY KEY (series=? AND time_ns=?)" in steps
    assert "SEARCH price USING PRIMARY KEY (series=?)" in steps


def test_sales_summary_reads_raw_sales_only_at_the_edges(conn: sqlite3.Connection) -> None:
    steps = plan(conn, queries.SALES_SUMMARY_BY_HOURS)
    assert steps.count("SEARCH sale USING PRIMARY KEY (time_ns>? AND time_ns<?)") == 2
    assert "SEARCH sale_hourly USING PRIMARY KEY (hour_ns>? AND hour_ns<?)" in steps


def test_sales_by_hour_reads_the_market_rollup(conn: sqlite3.Connection) -> None:
    steps = plan(conn, queries.SALES_BY_HOUR)
    assert "SEARCH market_sale_hourly USING PRIMARY KEY (market=? AND hour_ns>? AND hour_ns<?)" in (
        steps
    )


def test_device_last_seen_seeks_per_series(conn: sqlite3.Connection) -> None:
    steps = plan(conn, queries.DEVICE_LAST_SEEN)
    # The arrival (received_ns) is not in the index: one row lookup per series follows.
    assert "SEARCH sale USING INDEX sale_by_source (source=? AND time_ns>?)" in steps
    assert "SEARCH f USING PRIMARY KEY (series=? AND time_ns>?)" in steps
    assert "SEARCH b USING INDEX batch_by_series (series=? AND time_ns>?)" in steps


def test_unverified_sales_read_only_their_partial_index(conn: sqlite3.Connection) -> None:
    steps = plan(conn, queries.UNVERIFIED_SALES)
    assert any("sale USING" in step and "sale_unverified" in step for step in steps), steps


def test_checking_sales_seeks_the_batches_by_trace_code(conn: sqlite3.Connection) -> None:
    steps = [
        str(row[3])
        for row in conn.execute(
            "EXPLAIN QUERY PLAN " + verification.NEWEST_BATCHES, {"traces": "[1]"}
        )
    ]
    assert any("batch_by_trace" in step for step in steps), steps
    assert not any(step.startswith("SCAN b") or step.startswith("SCAN batch") for step in steps)


def test_a_late_batch_seeks_its_sales_by_trace_code(conn: sqlite3.Connection) -> None:
    params = {"market": "nanmen", "code": "x", "plu": "1001", "vendor": "v001", "since": 0}
    steps = [
        str(row[3])
        for row in conn.execute("EXPLAIN QUERY PLAN " + verification.VERIFY_LATE_SALES, params)
    ]
    assert any(step.startswith("SEARCH sale USING INDEX sale_by_trace") for step in steps), steps
