"""InfluxDB's rollups with a clock that moves: marks, the watermark and its slack, pruning.

The contract tests (tests/storage/contract/test_rollups.py) settle within the
slack of every earlier mark, so each settle also redoes the earlier buckets;
here the clock moves past the slack between writes, so each settle has only
the new marks to go on.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import httpx
import pytest

from stallwatch.backfill import backfill
from stallwatch.localservices import Influxd
from storage._exceptions import StoreUnavailable
from storage.footfall import hourly_footfall
from storage.influx.client import InfluxClient, RetryPolicy
from storage.influx.reader import Reader
from storage.influx.rollups import BATCH_SOLD, ROLLUP_MARK, SETTLE_SLACK_NS
from storage.influx.store import InfluxStore
from storage.records import Reading, to_ns
from tests.storage.factories import MARKET, T0, at, batch, gate_count, reading, sale
from tests.storage.influx_formats import drop_scale_rollup, rewrite_batch_sold_as_format_1

pytestmark = pytest.mark.influx

MINUTE_NS = 60 * 1_000_000_000
DAY = (T0 - timedelta(days=1), T0 + timedelta(days=1))


class Clock:
    """A wall clock the test moves."""

    def __init__(self, start: datetime) -> None:
        self.now_ns = to_ns(start)

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, minutes: int) -> None:
        self.now_ns += minutes * MINUTE_NS


@pytest.fixture
def database() -> str:
    return f"rollups_{uuid4().hex[:12]}"


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + timedelta(days=2))


@pytest.fixture
def store(influx_server: Influxd, database: str, clock: Clock) -> Iterator[InfluxStore]:
    with InfluxStore(influx_server.url, database, create_database=True, clock=clock) as opened:
        yield opened


def write_and_settle(store: InfluxStore, clock: Clock, readings: list[Reading]) -> None:
    assert store.write(readings) == []
    store.settle_rollups()
    clock.advance(10)  # past the slack: the next settle reads only newer marks


def counted(msg_id: int, moment: datetime, in_total: int) -> Reading:
    return reading(gate_count(msg_id=msg_id, ts=moment, in_total=in_total), "g-north")


def marks(influx_server: Influxd, database: str) -> list[dict[str, object]]:
    with InfluxClient(influx_server.url) as client:
        series = Reader(client, database, None).select(ROLLUP_MARK)
    return [row for one in series for row in one.rows]


def test_the_clock_moves_past_the_slack_between_settles() -> None:
    assert 10 * MINUTE_NS > SETTLE_SLACK_NS


def test_an_out_of_order_gate_count_settles_its_successors_later_hour(
    store: InfluxStore, clock: Clock
) -> None:
    gates = [counted(i, at(minutes=50 * i), 10 * i) for i in range(1, 8)]
    write_and_settle(store, clock, gates[3:])  # 10:30 … 13:50
    write_and_settle(store, clock, gates[:1])  # 08:50: 10:30 now has a predecessor
    write_and_settle(store, clock, gates[1:3])  # 09:40, 10:30 (hours with no mark before)

    start, end = at(hours=-1), at(hours=7)
    assert store.footfall_hourly(MARKET, start, end) == hourly_footfall(
        MARKET,
        store.gate_counts_before(MARKET, start),
        store.gate_counts(MARKET, start, end),
        start,
        end,
    )
    # 11:20's increase over 10:30 lands in the 11:00 hour, settled without a mark of its own.
    assert [
        (row.hour.hour, row.people_in) for row in store.footfall_hourly(MARKET, start, end)
    ] == [
        (8, 0),
        (9, 10),
        (10, 10),
        (11, 10),
        (12, 10),
        (13, 20),
    ]


def test_a_mark_from_an_instance_whose_clock_is_behind_is_settled(
    influx_server: Influxd, database: str, store: InfluxStore, clock: Clock
) -> None:
    behind = Clock(datetime.fromtimestamp(0, UTC))
    behind.now_ns = clock.now_ns - 3 * MINUTE_NS
    with InfluxStore(influx_server.url, database, clock=behind) as other:
        assert store.write([reading(sale(msg_id=1, ts=at(minutes=5)), "sc-001")]) == []
        store.settle_rollups()  # the watermark is now this store's clock
        assert other.write([reading(sale(msg_id=2, ts=at(hours=2)), "sc-001")]) == []
        clock.advance(1)
        store.settle_rollups()

    assert [row.transactions for row in store.sales_by_hour(MARKET, *DAY)] == [1, 1]


def test_one_mark_per_touched_bucket_per_write(
    influx_server: Influxd, database: str, store: InfluxStore
) -> None:
    intake = reading(batch(msg_id=1, ts=at(minutes=-5), trace_code="TC-K"), "in-01")
    sales = [
        reading(sale(msg_id=i, ts=at(minutes=3 * i), trace_code="TC-K"), "sc-001")
        for i in range(1, 31)
    ]
    unknown = [
        reading(sale(msg_id=100 + i, ts=at(minutes=i), trace_code="TC-NONE"), "sc-002")
        for i in range(1, 20)
    ]
    assert store.write([intake, *sales, *unknown]) == []

    kinds = sorted(str(row["kind"]) for row in marks(influx_server, database))
    # Two hours of sales, the batch's code once; a code without a batch marks nothing.
    assert kinds == ["batch", "sale", "sale"]


def test_marks_no_settle_reads_again_are_pruned(
    influx_server: Influxd, database: str, store: InfluxStore, clock: Clock
) -> None:
    write_and_settle(store, clock, [reading(sale(msg_id=1), "sc-001")])
    clock.advance(120)
    second_marked_ns = clock.now_ns
    write_and_settle(store, clock, [reading(sale(msg_id=2, ts=at(minutes=1)), "sc-001")])

    # The first write's mark is gone (over an hour behind the watermark); the newest stays.
    assert [row["time"] for row in marks(influx_server, database)] == [second_marked_ns]
    [hour] = store.sales_by_hour(MARKET, *DAY)
    assert hour.transactions == 2


def test_another_writers_mark_is_recomputed_at_first_sight_and_once_more_a_minute_later(
    influx_server: Influxd, database: str, store: InfluxStore, clock: Clock
) -> None:
    # Settles every few seconds read the same marks for the whole slack: the bucket
    # is recomputed when first seen and when every point written with it is visible
    # (another ingest process's write may still be becoming visible at first sight).
    with InfluxStore(influx_server.url, database, clock=clock) as other_writer:
        assert other_writer.write([reading(sale(msg_id=1, ts=at(minutes=5)), "sc-001")]) == []
    assert store.settle_rollups() == 1  # the market's hour of sales
    assert store.settle_rollups() == 0
    clock.now_ns += 61 * 1_000_000_000
    assert store.settle_rollups() == 1
    assert store.settle_rollups() == 0
    summary = store.sales_summary(MARKET, *DAY)
    assert [row.sales for row in summary] == [1]


def test_a_mark_of_the_settlers_own_returned_write_is_recomputed_once(
    store: InfluxStore, clock: Clock
) -> None:
    # All of that write's points were visible when it returned: no second pass.
    assert store.write([reading(sale(msg_id=1, ts=at(minutes=5)), "sc-001")]) == []
    assert store.settle_rollups() == 1
    clock.now_ns += 61 * 1_000_000_000
    assert store.settle_rollups() == 0
    summary = store.sales_summary(MARKET, *DAY)
    assert [row.sales for row in summary] == [1]


class Forwarding(httpx.BaseTransport):
    """Forwards every request to the real server; subclasses look at them on the way."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class TimesOutOnce(Forwarding):
    """Forwards to the server, but the first write of rollup points times out."""

    def __init__(self) -> None:
        super().__init__()
        self.timed_out = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/write" and not self.timed_out:
            body = request.read()
            if request.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            if b"sale_hourly" in body:
                self.timed_out = True
                raise httpx.ReadTimeout("the test's timeout", request=request)
        return super().handle_request(request)


def test_a_settle_that_fails_part_way_leaves_its_marks_to_the_next(
    influx_server: Influxd, database: str, clock: Clock
) -> None:
    flaky = TimesOutOnce()
    with InfluxStore(
        influx_server.url,
        database,
        create_database=True,
        clock=clock,
        transport=flaky,
        retry=RetryPolicy(attempts=1),
    ) as store:
        assert store.write([reading(sale(msg_id=1, ts=at(minutes=5)), "sc-001")]) == []
        with pytest.raises(StoreUnavailable):
            store.settle_rollups()
        assert flaky.timed_out
        # The mark of the settler's own write is not taken for done: the next settle
        # recomputes its hour.
        assert store.settle_rollups() == 1
        assert [row.sales for row in store.sales_by_scale(MARKET, *DAY)] == [1]
        assert [row.transactions for row in store.sales_by_hour(MARKET, *DAY)] == [1]


def test_batch_sold_carries_the_alert_flag_and_points_without_it_are_read_whole(
    store: InfluxStore, clock: Clock, influx_server: Influxd, database: str
) -> None:
    failed = batch(
        msg_id=1, ts=at(minutes=-30), trace_code="TC-F", passed=False, inhibition_pct=Decimal("70")
    )
    small = batch(msg_id=2, ts=at(minutes=-20), trace_code="TC-S", quantity_g=500)
    write_and_settle(
        store,
        clock,
        [
            reading(failed, "in-01"),
            reading(small, "in-01"),
            reading(sale(msg_id=1, ts=at(minutes=5), trace_code="TC-F", weight_g=200), "sc-v001"),
            reading(sale(msg_id=2, ts=at(minutes=6), trace_code="TC-S", weight_g=700), "sc-v001"),
        ],
    )
    flagged = [
        (row.trace_code, row.failed_on_sale, row.oversold)
        for row in store.batch_alerts(MARKET, *DAY)
    ]
    assert flagged == [("TC-F", True, False), ("TC-S", False, True)]
    alerts = store.batch_alerts(MARKET, *DAY)

    assert rewrite_batch_sold_as_format_1(influx_server.url, database) == 2

    # The flag is gone from the points; the answer is the same, from the whole balances.
    with InfluxStore(influx_server.url, database, clock=clock) as older:
        assert not older.rollups.all_of_format()
        assert older.batch_alerts(MARKET, *DAY) == alerts


def test_an_untested_batch_sold_is_not_flagged_and_its_batch_sold_has_no_test(
    store: InfluxStore, clock: Clock, influx_server: Influxd, database: str
) -> None:
    untested = batch(msg_id=1, ts=at(minutes=-30), trace_code="TC-U", passed=None)
    oversold = batch(msg_id=2, ts=at(minutes=-20), trace_code="TC-O", passed=None, quantity_g=500)
    write_and_settle(
        store,
        clock,
        [
            reading(untested, "in-01"),
            reading(oversold, "in-01"),
            reading(sale(msg_id=1, ts=at(minutes=5), trace_code="TC-U", weight_g=200), "sc-v001"),
            reading(sale(msg_id=2, ts=at(minutes=6), trace_code="TC-O", weight_g=700), "sc-v001"),
        ],
    )
    with InfluxClient(influx_server.url) as client:
        points = [
            row for one in Reader(client, database, None).select(BATCH_SOLD) for row in one.rows
        ]
    assert sorted(
        (row["trace_code"], row["alert"], row.get("rapid_test_passed")) for row in points
    ) == [
        ("TC-O", True, None),
        ("TC-U", False, None),
    ]
    alerts = store.batch_alerts(MARKET, *DAY)
    assert [(row.trace_code, row.rapid_test_passed, row.oversold) for row in alerts] == [
        ("TC-O", None, True)
    ]

    # Read from the whole balances (a database of an older format), the same answer.
    assert rewrite_batch_sold_as_format_1(influx_server.url, database) == 2
    with InfluxStore(influx_server.url, database, clock=clock) as older:
        assert not older.rollups.all_of_format()
        assert older.batch_alerts(MARKET, *DAY) == alerts


def test_hours_without_scale_points_are_summed_per_scale_from_the_product_rollup(
    store: InfluxStore, clock: Clock, influx_server: Influxd, database: str
) -> None:
    """A database from before ``scale_sale_hourly`` (format 2) answers the same sums."""
    write_and_settle(
        store,
        clock,
        [
            reading(sale(msg_id=i, ts=at(minutes=13 * i), weight_g=100 + i), "sc-v001")
            for i in range(1, 20)
        ],
    )
    whole_hours = (T0, at(hours=4))
    expected = store.sales_by_scale(MARKET, *whole_hours)
    assert [(row.scale, row.sales) for row in expected] == [("sc-v001", 18)]

    drop_scale_rollup(influx_server.url, database)

    with InfluxStore(influx_server.url, database, clock=clock) as older:
        assert older.sales_by_scale(MARKET, *whole_hours) == expected


class Queries(Forwarding):
    """Forwards to the server and keeps the text of each query's statements."""

    def __init__(self) -> None:
        super().__init__()
        self.statements: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/query" and "q" in request.url.params:
            self.statements += request.url.params["q"].split("; ")
        return super().handle_request(request)


def test_a_new_database_is_marked_all_of_the_format_and_readers_skip_their_censuses(
    influx_server: Influxd, database: str, clock: Clock
) -> None:
    queries = Queries()
    with InfluxStore(
        influx_server.url, database, create_database=True, clock=clock, transport=queries
    ) as store:
        failed = batch(
            msg_id=1,
            ts=at(minutes=-30),
            trace_code="TC-F",
            passed=False,
            inhibition_pct=Decimal("70"),
        )
        write_and_settle(
            store,
            clock,
            [
                reading(failed, "in-01"),
                reading(sale(msg_id=1, ts=at(minutes=5), trace_code="TC-F"), "sc-v001"),
            ],
        )
        assert store.rollups.all_of_format()
        queries.statements.clear()
        (alert,) = store.batch_alerts(MARKET, *DAY)
        (scale,) = store.sales_by_scale(MARKET, *DAY)
        counts = store.message_counts(*DAY)
    assert (alert.trace_code, alert.failed_on_sale, scale.sales) == ("TC-F", True, 1)
    assert counts == {(MARKET, "in-01"): 1, (MARKET, "sc-v001"): 1}
    assert not [text for text in queries.statements if 'COUNT("sales")' in text]
    assert not [text for text in queries.statements if "market_sale_hourly" in text]


def test_a_database_with_older_points_is_marked_when_its_backfill_is_done(
    influx_server: Influxd, database: str, clock: Clock
) -> None:
    with InfluxStore(influx_server.url, database, create_database=True, clock=clock) as store:
        write_and_settle(store, clock, [reading(sale(msg_id=1, ts=at(minutes=5)), "sc-v001")])
    drop_scale_rollup(influx_server.url, database)  # as format 2 left it
    with InfluxStore(influx_server.url, database, clock=clock) as reader:
        assert not reader.rollups.all_of_format()
        with InfluxStore(influx_server.url, database, clock=clock) as ingest:
            # Its first write finds raw points already: no marker.
            assert ingest.write([reading(sale(msg_id=2, ts=at(hours=1)), "sc-v001")]) == []
            ingest.settle_rollups()
            assert not ingest.rollups.all_of_format()
            assert backfill(ingest, [MARKET], out=lambda _line: None) > 0
            assert ingest.rollups.all_of_format()
        # Another process (which looked less than a minute ago) sees the marker once it
        # looks again, a minute on.
        assert not reader.rollups.all_of_format()
        clock.advance(1)
        assert reader.rollups.all_of_format()
        (scale,) = reader.sales_by_scale(MARKET, *DAY)
    assert scale.sales == 2
