"""InfluxDB with a retention policy per (market, kind): where points go, the policies'
durations, and the exact pass there, with a clock that moves (``now`` passed in).

The points are written a few days to weeks before the real clock: a routed
policy refuses points older than its duration (the kind's days and the margin),
so the contract tests' 2025 data cannot test the short policies here.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from schemas.retention import DataKind, RetentionPolicy
from stallwatch.localservices import Influxd
from storage.influx.client import InfluxClient
from storage.influx.influxql import Query, quote_ident
from storage.influx.reader import measurement_and_market
from storage.influx.routing import MARGIN_DAYS, Routing
from storage.influx.store import InfluxStore
from storage.records import UNREGISTERED
from tests.storage.contract.helpers import write_ok
from tests.storage.factories import MARKET, dead_letter, reading, sale, status

#: The hour the points are written around: a week before the real clock.
HOUR0 = (datetime.now(UTC) - timedelta(days=7)).replace(minute=0, second=0, microsecond=0)
POLICY = RetentionPolicy(heartbeats=3)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("sale,market=nanmen,plu=1 msg_id=1i 5", ("sale", "nanmen")),
        (
            'dead_letter,device=a\\,market=x,market=beimen topic="market=y" 5',
            ("dead_letter", "beimen"),
        ),
        ("dead_letter,device=a\\ b,market=beimen f=1i 5", ("dead_letter", "beimen")),
        ("rollup_watermark settled_ns=1i 5", ("rollup_watermark", None)),
        ('rollup_mark,kind=sale hour_ns=1i,note="x,market=y" 5', ("rollup_mark", None)),
    ],
)
def test_a_line_s_measurement_and_market(line: str, expected: tuple[str, str | None]) -> None:
    assert measurement_and_market(line) == expected


def test_markets_not_mapped_share_policies_named_by_kind_only() -> None:
    routing = Routing({MARKET: POLICY})
    assert routing.name(MARKET, DataKind.HEARTBEATS) == "sw_nanmen_heartbeats"
    assert routing.name(UNREGISTERED, DataKind.DEAD_LETTERS) == "sw_dead_letters"
    assert routing.kind_of("receipt_index") is None  # timed by msg_id: with the ledger
    assert routing.durations()["sw_nanmen_heartbeats"] == 3 + MARGIN_DAYS
    assert routing.durations()["sw_heartbeats"] == RetentionPolicy().heartbeats + MARGIN_DAYS


@pytest.fixture
def database() -> str:
    return f"routing_{uuid4().hex[:12]}"


@pytest.fixture
def client(influx_server: Influxd) -> Iterator[InfluxClient]:
    with InfluxClient(influx_server.url) as opened:
        yield opened


@pytest.fixture
def store(influx_server: Influxd, database: str) -> Iterator[InfluxStore]:
    with InfluxStore(
        influx_server.url, database, create_database=True, retention={MARKET: POLICY}
    ) as opened:
        yield opened


def durations(client: InfluxClient, database: str) -> dict[str, str]:
    series = client.query(database, Query(f"SHOW RETENTION POLICIES ON {quote_ident(database)}"))
    return {str(row["name"]): str(row["duration"]) for one in series for row in one.rows}


def count_in(client: InfluxClient, database: str, policy: str, measurement: str) -> int:
    """Points of ``measurement`` in ``policy``: the largest count of any of its fields."""
    text = f"SELECT COUNT(*) FROM {quote_ident(policy)}.{quote_ident(measurement)}"  # noqa: S608 - quoted identifiers
    series = client.query(database, Query(text))
    counts = [
        value
        for one in series
        for row in one.rows
        for column, value in row.items()
        if column != "time" and isinstance(value, int)
    ]
    return max(counts, default=0)


@pytest.mark.influx
def test_each_market_and_kind_has_its_policy_with_the_margin(
    store: InfluxStore, client: InfluxClient, database: str
) -> None:
    policies = durations(client, database)
    assert policies["sw_nanmen_heartbeats"] == f"{(3 + MARGIN_DAYS) * 24}h0m0s"
    assert policies["sw_nanmen_trace"] == f"{(POLICY.trace + MARGIN_DAYS) * 24}h0m0s"
    assert (
        policies["sw_dead_letters"] == f"{(RetentionPolicy().dead_letters + MARGIN_DAYS) * 24}h0m0s"
    )

    store.apply_retention(datetime.now(UTC), {MARKET: RetentionPolicy(heartbeats=5)})

    assert durations(client, database)["sw_nanmen_heartbeats"] == f"{(5 + MARGIN_DAYS) * 24}h0m0s"


@pytest.mark.influx
def test_points_go_to_their_market_and_kind_s_policy_and_are_read_there(
    store: InfluxStore, client: InfluxClient, database: str
) -> None:
    write_ok(
        store,
        [
            reading(sale(msg_id=1, ts=HOUR0), "sc-001"),
            reading(status(msg_id=2, ts=HOUR0), "sc-001"),
        ],
        [dead_letter(received=HOUR0, market=UNREGISTERED, device=UNREGISTERED)],
    )
    assert count_in(client, database, "sw_nanmen_trace", "sale") == 1
    assert count_in(client, database, "sw_nanmen_rollups", "sale_hourly") == 1
    assert count_in(client, database, "sw_nanmen_heartbeats", "scale_status") == 1
    assert count_in(client, database, "sw_dead_letters", "dead_letter") == 1
    assert count_in(client, database, "autogen", "sale") == 0
    assert count_in(client, database, "autogen", "msg_id_ledger") == 2  # the ledger stays

    hour_end = HOUR0 + timedelta(hours=1)
    assert len(store.sales(MARKET, HOUR0, hour_end)) == 1
    assert [row.sales for row in store.sales_summary(MARKET, HOUR0, hour_end)] == [1]
    assert len(store.scale_status(MARKET)) == 1
    assert len(store.dead_letters(HOUR0, hour_end)) == 1  # across markets: every policy
    assert store.reject_counts(HOUR0, hour_end) == {(UNREGISTERED, UNREGISTERED): 1}


@pytest.mark.influx
def test_the_exact_pass_removes_to_the_hour_in_the_routed_policy(
    store: InfluxStore, client: InfluxClient, database: str
) -> None:
    write_ok(
        store,
        [reading(status(msg_id=h + 1, ts=HOUR0 + timedelta(hours=h)), "sc-001") for h in range(6)],
    )
    # heartbeats: 3 days; at HOUR0 + 3 days 4 hours, 00:00 … 03:00 are before the cut-off
    # and 03:00, the newest of them, is the status in force then: it stays.
    now = HOUR0 + timedelta(days=3, hours=4)

    dry = store.apply_retention(now, {MARKET: POLICY}, dry_run=True)
    report = store.apply_retention(now, {MARKET: POLICY})

    assert dry.removed[(MARKET, DataKind.HEARTBEATS)] == 3
    assert report.removed == dry.removed
    assert count_in(client, database, "sw_nanmen_heartbeats", "scale_status") == 3
    assert store.apply_retention(now, {MARKET: POLICY}).total == 0
