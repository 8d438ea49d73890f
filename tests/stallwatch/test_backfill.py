"""``stallwatch store backfill`` rebuilds an InfluxDB database's rollups and indexes, resumably.

A real influxd: days of a market's history are written (and settled), the
rollups, marks and lookup indexes are dropped (a database from before them),
then the command runs, is stopped after two days, and is run again.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from time import time_ns
from uuid import uuid4

import pytest

from schemas.registry import Market, load_market
from simulators.history import generate_history
from stallwatch.cli import main
from stallwatch.localservices import Influxd
from storage.influx.client import InfluxClient
from storage.influx.indexes import RECEIPT_INDEX, TRACE_INDEX
from storage.influx.influxql import Column, Query, SelectColumns, quote_ident
from storage.influx.rollups import (
    BATCH_SOLD,
    FOOTFALL_HOURLY,
    MARKET_SALE_HOURLY,
    ROLLUP_MARK,
    ROLLUP_WATERMARK,
    SALE_HOURLY,
    SCALE_SALE_HOURLY,
)
from storage.influx.rows import int_column, tagged_rows
from storage.influx.store import InfluxStore
from storage.records import to_ns
from storage.sqlite import SQLiteStore
from tests.conftest import REPO
from tests.storage.influx_formats import (
    rewrite_batch_sold_as_format_1,
    write_format_1_checkpoint,
)

pytestmark = pytest.mark.influx

XIAOHE = REPO / "examples" / "markets" / "xiaohe.toml"
FIRST_DAY = date(2025, 5, 12)
DAYS = 4


@pytest.fixture
def market() -> Market:
    return load_market(XIAOHE)


@pytest.fixture
def database() -> str:
    return f"backfill_{uuid4().hex[:12]}"


@pytest.fixture
def store(influx_server: Influxd, database: str) -> Iterator[InfluxStore]:
    with InfluxStore(influx_server.url, database, create_database=True) as opened:
        yield opened


def reads(store: InfluxStore, market: Market) -> list[object]:
    """What the dashboard reads over whole hours: every rollup."""
    start = datetime.combine(FIRST_DAY, time(0), market.tz)
    end = start + timedelta(days=DAYS)
    return [
        store.sales_summary(market.id, start, end),
        store.sales_by_hour(market.id, start, end),
        store.sales_by_scale(market.id, start, end),
        store.footfall_hourly(market.id, start, end),
        store.batch_balances(market.id, start, end),
    ]


def drop_rollups(server: Influxd, database: str) -> None:
    with InfluxClient(server.url) as client:
        for measurement in (
            SALE_HOURLY,
            MARKET_SALE_HOURLY,
            SCALE_SALE_HOURLY,
            FOOTFALL_HOURLY,
            BATCH_SOLD,
            ROLLUP_MARK,
            ROLLUP_WATERMARK,
            TRACE_INDEX,
            RECEIPT_INDEX,
        ):
            drop = Query(f"DROP MEASUREMENT {quote_ident(measurement)}")
            client.execute(drop, database=database)


def progress_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "buckets rebuilt" in line]


def test_an_interrupted_backfill_resumes_and_rebuilds_the_rollups_exactly(
    influx_server: Influxd,
    database: str,
    store: InfluxStore,
    market: Market,
    capsys: pytest.CaptureFixture[str],
) -> None:
    generate_history(market, store, start_date=FIRST_DAY, days=DAYS, seed=4)
    settled = reads(store, market)
    start = datetime.combine(FIRST_DAY, time(0), market.tz)
    a_batch = store.batches(market.id, start, start + timedelta(days=DAYS))[-1]
    drop_rollups(influx_server, database)
    assert reads(store, market)[0] != settled[0], "the summary of whole days needs the rollups"
    assert store.batch(market.id, a_batch.trace_code) is None, "a lookup by code needs the index"
    spec = f"influx:{influx_server.url}/{database}"
    command = ["store", "backfill", "--market", str(XIAOHE), "--store", spec]

    assert main([*command, "--max-days", "2"]) == 0
    first_run = capsys.readouterr().out
    assert main(command) == 0
    second_run = capsys.readouterr().out
    assert main(command) == 0
    third_run = capsys.readouterr().out

    first_days, second_days = progress_lines(first_run), progress_lines(second_run)
    assert len(first_days) == 2
    assert "run again" in first_run
    dates = [line.split(":")[0] for line in [*first_days, *second_days]]
    # Local market days span UTC days: one per UTC day with raw points, each once, in order.
    assert dates == sorted(set(dates))
    assert [date.fromisoformat(d) - date.fromisoformat(dates[0]) for d in dates] == [
        timedelta(days=n) for n in range(len(dates))
    ]
    assert "nothing to do" in third_run
    assert reads(store, market) == settled
    assert store.batch(market.id, a_batch.trace_code) == a_batch
    end = start + timedelta(days=DAYS)
    summary = store.sales_summary(market.id, start, end)
    assert sum(row.sales for row in summary) == len(store.sales(market.id, start, end)) > 0


def test_a_backfill_without_market_files_indexes_the_markets_the_database_holds(
    influx_server: Influxd,
    database: str,
    store: InfluxStore,
    market: Market,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The batch balances are found through the trace index: no market named, still exact."""
    generate_history(market, store, start_date=FIRST_DAY, days=DAYS, seed=4)
    settled = reads(store, market)
    start = datetime.combine(FIRST_DAY, time(0), market.tz)
    balances = store.batch_balances(market.id, start, start + timedelta(days=DAYS))
    assert sum(row.sold_g for row in balances) > 0
    drop_rollups(influx_server, database)

    assert main(["store", "backfill", "--store", f"influx:{influx_server.url}/{database}"]) == 0

    assert f"indexing the markets in the database ({market.id})" in capsys.readouterr().out
    assert reads(store, market) == settled


def test_a_database_backfilled_in_the_old_rollup_format_is_backfilled_again(
    influx_server: Influxd,
    database: str,
    store: InfluxStore,
    market: Market,
    capsys: pytest.CaptureFixture[str],
) -> None:
    generate_history(market, store, start_date=FIRST_DAY, days=DAYS, seed=4)
    settled = reads(store, market)
    rewritten = rewrite_batch_sold_as_format_1(influx_server.url, database)
    last_day = datetime.combine(FIRST_DAY + timedelta(days=DAYS), time(0), UTC)
    write_format_1_checkpoint(influx_server.url, database, to_ns(last_day), time_ns())
    assert flagged_batch_sold(influx_server, database) == (rewritten, 0)

    spec = f"influx:{influx_server.url}/{database}"
    assert main(["store", "backfill", "--store", spec]) == 0

    assert progress_lines(capsys.readouterr().out), "a format-1 checkpoint is no checkpoint"
    assert flagged_batch_sold(influx_server, database) == (rewritten, rewritten)
    assert reads(store, market) == settled


def flagged_batch_sold(server: Influxd, database: str) -> tuple[int, int]:
    """How many ``batch_sold`` points there are, and how many carry ``alert``.

    A count of a field no point has is null on InfluxDB 1.x.
    """
    counts = SelectColumns(
        BATCH_SOLD,
        (Column("sales", "COUNT", alias="points"), Column("alert", "COUNT", alias="flagged")),
    )
    with InfluxClient(server.url) as client:
        rows = list(tagged_rows(client.query(database, counts.query())))
    if not rows:
        return 0, 0
    return int_column(rows[0], "points"), int_column(rows[0], "flagged") if rows[0].get(
        "flagged"
    ) is not None else 0


def test_a_sqlite_store_has_nothing_to_backfill(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    SQLiteStore(tmp_path / "s.db").close()
    assert main(["store", "backfill", "--store", f"sqlite:{tmp_path / 's.db'}"]) == 0
    assert "nothing to backfill" in capsys.readouterr().out


def test_a_database_from_before_retention_by_kind_is_copied_into_its_policies_resumably(
    influx_server: Influxd,
    database: str,
    store: InfluxStore,
    market: Market,
    capsys: pytest.CaptureFixture[str],
) -> None:
    generate_history(market, store, start_date=FIRST_DAY, days=DAYS, seed=4)
    written = reads(store, market)
    routed = InfluxStore(
        influx_server.url,
        database,
        retention={market.id: market.retention},
        create_retention_policies=True,
    )
    with routed:
        assert reads(routed, market) != written, "a routed store reads only its own policies"
        spec = f"influx:{influx_server.url}/{database}"
        command = ["store", "backfill", "--into-routed", "--market", str(XIAOHE), "--store", spec]

        assert main([*command, "--max-days", "2"]) == 0
        first_run = capsys.readouterr().out
        assert main(command) == 0
        second_run = capsys.readouterr().out
        assert main(command) == 0
        third_run = capsys.readouterr().out

        copied = [line for line in f"{first_run}{second_run}".splitlines() if "copied" in line]
        assert len([line for line in first_run.splitlines() if "copied" in line]) == 2
        assert "run again" in first_run
        assert all(int(line.split(": ")[1].split()[0]) > 0 for line in copied)
        assert "nothing to do" in third_run
        # The 2025 days are beyond the heartbeats' and gate counts' policies (30 and 90
        # days and the margin): their raw points are not copied, the rollups are.
        assert reads(routed, market) == written
        start = datetime.combine(FIRST_DAY, time(0), market.tz)
        assert len(routed.sales(market.id, start, start + timedelta(days=DAYS))) > 0


def test_a_backfill_since_a_day_does_the_recent_days_and_leaves_the_checkpoint(
    influx_server: Influxd,
    database: str,
    store: InfluxStore,
    market: Market,
    capsys: pytest.CaptureFixture[str],
) -> None:
    generate_history(market, store, start_date=FIRST_DAY, days=DAYS, seed=4)
    drop_rollups(influx_server, database)
    spec = f"influx:{influx_server.url}/{database}"
    since = FIRST_DAY + timedelta(days=2)

    assert main(["store", "backfill", "--store", spec, "--since", since.isoformat()]) == 0
    recent = progress_lines(capsys.readouterr().out)
    assert recent
    assert all(date.fromisoformat(line.split(":")[0]) >= since for line in recent)
    assert main(["store", "backfill", "--store", spec]) == 0
    everything = progress_lines(capsys.readouterr().out)
    assert date.fromisoformat(everything[0].split(":")[0]) < since, "the older days still follow"
