"""The rollups stay exact: what the reads of whole hours answer equals the raw points.

Runs once per backend. SQLite keeps its rollups in each write's transaction;
InfluxDB settles them from raw after marks (``storage.influx.rollups``), so
each test settles before it reads, and some settle at awkward moments (a new
store object after a "crash", two instances, a batch that comes late).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from storage.base import Store
from storage.footfall import hourly_footfall
from storage.interfaces.sales import SaleRow, SalesHourRow, SalesSummaryRow, ScaleSalesRow
from storage.interfaces.traceability import BatchBalanceRow
from storage.records import Reading
from tests.storage.contract.helpers import write_ok, write_settled
from tests.storage.factories import (
    MARKET,
    SHANGHAI,
    T0,
    at,
    batch,
    gate_count,
    reading,
    sale,
)

#: Ranges with whole hours and partial edges, and the whole day.
RANGES = [
    (at(hours=-3), at(hours=5)),
    (at(minutes=20), at(hours=3, minutes=40)),
    (at(hours=1), at(hours=2)),
    (T0 - timedelta(days=1), T0 + timedelta(days=1)),
]


def summary_of(rows: Sequence[SaleRow]) -> list[SalesSummaryRow]:
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        total = totals[(row.vendor, row.plu)]
        total[0] += 1
        total[1] += row.total_fen
        total[2] += row.weight_g
    return [SalesSummaryRow(MARKET, v, p, *total) for (v, p), total in sorted(totals.items())]


def by_scale_of(rows: Sequence[SaleRow]) -> list[ScaleSalesRow]:
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        total = totals[(row.vendor, row.scale)]
        total[0] += 1
        total[1] += row.total_fen
        total[2] += row.weight_g
    return [ScaleSalesRow(MARKET, v, s, *total) for (v, s), total in sorted(totals.items())]


def hours_of(rows: Sequence[SaleRow]) -> list[SalesHourRow]:
    totals: dict[datetime, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        total = totals[row.ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)]
        total[0] += 1
        total[1] += row.total_fen
        total[2] += row.weight_g
    return [SalesHourRow(MARKET, hour, *total) for hour, total in sorted(totals.items())]


def assert_exact(store: Store) -> None:
    """Every read served from rollups equals its computation from the raw points."""
    for start, end in RANGES:
        raw_sales = store.sales(MARKET, start, end)
        assert store.sales_summary(MARKET, start, end) == summary_of(raw_sales)
        assert store.sales_by_scale(MARKET, start, end) == by_scale_of(raw_sales)
        assert store.sales_by_hour(MARKET, start, end) == hours_of(raw_sales)
        local_start, local_end = start.astimezone(SHANGHAI), end.astimezone(SHANGHAI)
        assert store.footfall_hourly(MARKET, local_start, local_end) == hourly_footfall(
            MARKET,
            store.gate_counts_before(MARKET, local_start),
            store.gate_counts(MARKET, local_start, local_end),
            local_start,
            local_end,
        )
        assert store.batch_balances(MARKET, start, end) == Store.batch_balances(
            store, MARKET, start, end
        )


def sold(msg_id: int, moment: datetime, weight_g: int, code: str = "TC-A") -> Reading:
    return reading(sale(msg_id=msg_id, ts=moment, weight_g=weight_g, trace_code=code), "sc-001")


def counted(msg_id: int, moment: datetime, in_total: int, out_total: int) -> Reading:
    message = gate_count(msg_id=msg_id, ts=moment, in_total=in_total, out_total=out_total)
    return reading(message, "g-north")


def intake(msg_id: int, moment: datetime, code: str = "TC-A") -> Reading:
    return reading(batch(msg_id=msg_id, ts=moment, trace_code=code), "in-01")


def history() -> list[Reading]:
    """A batch, its sales over four hours, and a gate counting through them."""
    sales = [sold(i, at(minutes=17 * i), 100 * i) for i in range(1, 15)]
    gates = [counted(i, at(minutes=23 * i), 10 * i, 4 * i) for i in range(1, 11)]
    return [intake(1, at(minutes=-30)), *sales, *gates]


def sales_count(store: Store) -> int:
    return sum(row.sales for row in store.sales_summary(MARKET, *RANGES[-1]))


class TestScales:
    def test_the_sums_per_vendor_and_scale_are_exact_with_partial_hours(self, store: Store) -> None:
        other_vendor = [
            reading(sale(msg_id=i, ts=at(minutes=29 * i), weight_g=50 * i, vendor="v002"), s)
            for i in range(1, 9)
            for s in ("sc-002", "sc-003")
        ]
        write_settled(store, [*history(), *other_vendor])
        write_settled(store, other_vendor[:3])  # redelivered

        assert_exact(store)
        scales = [(r.vendor, r.scale) for r in store.sales_by_scale(MARKET, *RANGES[-1])]
        assert scales == [("v001", "sc-001"), ("v002", "sc-002"), ("v002", "sc-003")]


class TestRedelivery:
    def test_the_same_points_again_count_once(self, store: Store) -> None:
        write_ok(store, history())
        write_ok(store, history())
        write_ok(store, history()[5:9])

        assert sales_count(store) == 14
        assert_exact(store)

    def test_an_overwritten_sale_and_gate_count_move_their_hours(self, store: Store) -> None:
        # Another msg_id whose point is the same (same device, millisecond and msg_id
        # digits) replaces the stored reading in both stores: a replay the store
        # accepts with changed amounts (the same msg_id with other content is refused).
        write_ok(store, history())
        write_ok(
            store,
            [
                sold(3 + 10**6, at(minutes=51), 9_999),
                counted(2 + 10**6, at(minutes=46), 5, 1),  # a reset: changes the next hour too
            ],
        )

        assert sales_count(store) == 14
        assert [row.in_total for row in store.gate_counts(MARKET, *RANGES[-1])][1] == 5
        assert_exact(store)


class TestOrder:
    def test_gate_counts_out_of_order_change_their_successors_hour(self, store: Store) -> None:
        gates = [counted(i, at(minutes=50 * i), 10 * i, 4 * i) for i in range(1, 8)]
        write_ok(store, gates[3:])
        write_ok(store, gates[:1])
        # The reading between 08:50 and 11:20 lands in an hour whose next reading is hours away.
        write_ok(store, gates[1:3])

        assert_exact(store)

    def test_a_backlog_replayed_after_later_sales(self, store: Store) -> None:
        every = history()
        write_ok(store, every[10:])
        write_ok(store, every[:10])

        assert_exact(store)


class TestCrashes:
    def test_a_store_that_stops_between_write_and_settle(
        self, store_pair: tuple[Store, Store]
    ) -> None:
        first, restarted = store_pair
        assert first.write(history()) == []  # no settle: the process stops here

        restarted.settle_rollups()

        assert sales_count(restarted) == 14
        assert_exact(restarted)

    def test_two_instances_writing_the_same_hour_then_settling(
        self, store_pair: tuple[Store, Store]
    ) -> None:
        one, other = store_pair
        every = history()
        assert one.write(every[::2]) == []
        assert other.write(every[1::2]) == []
        one.settle_rollups()
        assert other.write([sold(40, at(minutes=18), 4_000)]) == []
        other.settle_rollups()
        one.settle_rollups()

        assert sales_count(one) == sales_count(other) == 15
        assert_exact(one)
        assert_exact(other)

    def test_settling_twice_changes_nothing(self, store: Store) -> None:
        write_ok(store, history())
        before = [store.sales_summary(MARKET, *RANGES[0]), store.batch_balances(MARKET, *RANGES[0])]
        store.settle_rollups()
        store.settle_rollups()

        assert [
            store.sales_summary(MARKET, *RANGES[0]),
            store.batch_balances(MARKET, *RANGES[0]),
        ] == before


class TestLateBatch:
    def test_a_batch_after_its_sales_counts_them(self, store: Store) -> None:
        early = [sold(i, at(minutes=10 * i), 500, code="TC-L") for i in range(1, 5)]
        write_ok(store, early)
        [balance] = write_settled_balances(store, [intake(9, at(minutes=60), code="TC-L")])

        # The grace window before intake covers the sales of the hour before it.
        assert (balance.sales, balance.sold_g) == (4, 2_000)
        assert balance.last_sale == at(minutes=40)
        write_ok(store, [sold(9, at(minutes=70), 250, code="TC-L")])
        [balance] = store.batch_balances(MARKET, at(minutes=60), at(minutes=61))
        assert (balance.sales, balance.sold_g) == (5, 2_250)
        assert_exact(store)


def write_settled_balances(store: Store, readings: list[Reading]) -> list[BatchBalanceRow]:
    assert write_settled(store, readings) == []
    return list(store.batch_balances(MARKET, at(minutes=60), at(minutes=61)))


class TestBatchesOfOneProduct:
    def test_two_batches_of_a_stalls_product_sold_side_by_side_count_their_own_sales(
        self, store: Store
    ) -> None:
        # One stall sells a morning and a midday batch of the same product at once, and
        # one sale names a code no batch has: one settle recounts both batches.
        morning = [sold(i, at(minutes=10 * i), 300, code="TC-AM") for i in range(1, 7)]
        midday = [sold(20 + i, at(minutes=5 + 10 * i), 700, code="TC-PM") for i in range(3, 9)]
        stray = [sold(40, at(minutes=33), 900, code="TC-NONE")]
        batches = [
            intake(1, at(minutes=-20), code="TC-AM"),
            intake(2, at(minutes=25), code="TC-PM"),
        ]
        assert write_settled(store, [*batches, *morning, *midday, *stray]) == []

        balances = {
            row.trace_code: (row.sales, row.sold_g)
            for row in store.batch_balances(MARKET, at(minutes=-30), at(minutes=30))
        }
        assert balances == {"TC-AM": (6, 1_800), "TC-PM": (6, 4_200)}
        assert_exact(store)
