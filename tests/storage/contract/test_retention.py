"""The store contract of retention (``storage.interfaces.retention.RetentionStore``).

A clock that moves: each test writes a market day at ``T0`` (08:00 Shanghai,
00:00 UTC, so local and UTC hours coincide) and passes ever later ``now`` to
``apply_retention``; nothing sleeps. Runs once per backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from schemas.retention import DataKind, RetentionPolicy
from storage.base import Store
from storage.interfaces.footfall import FootfallRow
from storage.records import Reading
from tests.conftest import open_store
from tests.storage.contract.helpers import DAY_END, write_ok
from tests.storage.factories import (
    MARKET,
    OTHER_MARKET,
    T0,
    at,
    batch,
    dead_letter,
    gate_count,
    price,
    reading,
    sale,
    status,
)


@pytest.fixture(params=["sqlite", pytest.param("influx", marks=pytest.mark.influx)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with open_store(request.param, request, tmp_path, "t") as backend:
        yield backend


#: Every kind shorter than its default, so that the clock need not move ten years.
POLICY = RetentionPolicy(
    trace=730, prices=400, heartbeats=30, gate_counts=60, dead_letters=90, rollups=1000
)
POLICIES = {MARKET: POLICY}


def days_later(days: int, *, hours: float = 0) -> datetime:
    """``now`` for a pass: ``days`` and ``hours`` after the market day's start."""
    return T0 + timedelta(days=days, hours=hours)


def hourly_sales(*, hours: range, market: str = MARKET, first_msg_id: int = 1) -> list[Reading]:
    """One sale at the start of each hour, 100 g more each hour."""
    return [
        reading(
            sale(msg_id=first_msg_id + i, ts=at(hours=hour), weight_g=1_000 + 100 * hour),
            "sc-001",
            market=market,
        )
        for i, hour in enumerate(hours)
    ]


class TestSales:
    def test_raw_sales_expire_and_whole_hours_still_answer_from_the_rollups(
        self, store: Store
    ) -> None:
        write_ok(store, hourly_sales(hours=range(10)))
        summary = store.sales_summary(MARKET, T0, DAY_END)
        by_hour = store.sales_by_hour(MARKET, T0, DAY_END)

        report = store.apply_retention(days_later(730, hours=5), POLICIES)

        assert report.removed[(MARKET, DataKind.TRACE)] == 5
        assert [row.ts for row in store.sales(MARKET, T0, DAY_END)] == [
            at(hours=hour) for hour in range(5, 10)
        ]
        assert store.sale_by_receipt(MARKET, "sc-001", 1) is None
        assert store.sales_summary(MARKET, T0, DAY_END) == summary
        assert store.sales_by_hour(MARKET, T0, DAY_END) == by_hour

    def test_the_rollups_expire_by_their_own_retention(self, store: Store) -> None:
        write_ok(store, hourly_sales(hours=range(10)))
        by_hour = store.sales_by_hour(MARKET, T0, DAY_END)
        store.apply_retention(days_later(730, hours=8), POLICIES)

        report = store.apply_retention(days_later(1000, hours=3), POLICIES)

        assert report.removed[(MARKET, DataKind.ROLLUPS)] > 0
        assert store.sales(MARKET, T0, DAY_END) == []
        assert store.sales_by_hour(MARKET, T0, DAY_END) == by_hour[3:]
        [summary] = store.sales_summary(MARKET, T0, DAY_END)
        assert (summary.sales, summary.weight_g) == (7, sum(1_000 + 100 * h for h in range(3, 10)))

    def test_a_pass_removes_only_what_is_due_and_a_second_one_nothing(self, store: Store) -> None:
        write_ok(store, hourly_sales(hours=range(10)))
        moments = [days_later(730, hours=h) for h in (0, 3, 3, 7, 20)]
        removed = [
            store.apply_retention(now, POLICIES).removed[(MARKET, DataKind.TRACE)]
            for now in moments
        ]
        assert removed == [0, 3, 0, 4, 3]
        assert store.sales(MARKET, T0, DAY_END) == []

    def test_each_market_by_its_own_policy_and_none_without_one(self, store: Store) -> None:
        third = "xiaohe"
        write_ok(
            store,
            [
                *hourly_sales(hours=range(4)),
                *hourly_sales(hours=range(4), market=OTHER_MARKET),
                *hourly_sales(hours=range(4), market=third),
            ],
        )
        longer = RetentionPolicy(trace=1000, rollups=1000)

        store.apply_retention(days_later(800), {MARKET: POLICY, OTHER_MARKET: longer})

        assert store.sales(MARKET, T0, DAY_END) == []
        assert len(store.sales(OTHER_MARKET, T0, DAY_END)) == 4
        assert len(store.sales(third, T0, DAY_END)) == 4

    def test_a_dry_run_counts_what_would_go_and_removes_nothing(self, store: Store) -> None:
        write_ok(store, hourly_sales(hours=range(10)))
        now = days_later(730, hours=4)

        dry = store.apply_retention(now, POLICIES, dry_run=True)

        assert dry.dry_run
        assert dry.removed[(MARKET, DataKind.TRACE)] == 4
        assert len(store.sales(MARKET, T0, DAY_END)) == 10
        assert store.apply_retention(now, POLICIES).removed == dry.removed


class TestBatches:
    def test_a_kept_batch_still_counts_its_expired_sales(self, store: Store) -> None:
        code = "SD370782-20250512-001"
        write_ok(
            store,
            [
                # sold from before the intake was recorded (within the grace window)
                reading(sale(msg_id=1, ts=at(hours=3), trace_code=code), "sc-001"),
                reading(sale(msg_id=2, ts=at(hours=4), trace_code=code), "sc-001"),
                reading(batch(ts=at(hours=5), trace_code=code), "in-01"),
                reading(sale(msg_id=3, ts=at(hours=6), trace_code=code), "sc-001"),
            ],
        )
        balances = store.batch_balances(MARKET, T0, DAY_END)
        assert balances[0].sales == 3

        store.apply_retention(days_later(730, hours=5), POLICIES)

        assert len(store.sales(MARKET, T0, DAY_END)) == 1
        assert store.batch_balances(MARKET, T0, DAY_END) == balances
        assert store.batch(MARKET, code) is not None

    def test_batches_expire_with_the_trace_records(self, store: Store) -> None:
        code = "SD370782-20250512-001"
        write_ok(
            store,
            [
                reading(batch(ts=at(hours=1), trace_code=code), "in-01"),
                reading(sale(msg_id=1, ts=at(hours=2), trace_code=code), "sc-001"),
            ],
        )
        report = store.apply_retention(days_later(731), POLICIES)

        assert report.removed[(MARKET, DataKind.TRACE)] == 2
        assert store.batch(MARKET, code) is None
        assert store.batch_balances(MARKET, T0, DAY_END) == []
        assert store.sales_of_batch(MARKET, code) == []


class TestFootfall:
    def gate_day(self) -> list[Reading]:
        """A reading every 20 minutes from 00:10 to 05:50, the counters growing."""
        return [
            reading(
                gate_count(msg_id=i + 1, ts=at(minutes=10 + 20 * i), in_total=5 * i, out_total=i),
                "g-north",
            )
            for i in range(18)
        ]

    def test_raw_counts_expire_and_the_hourly_footfall_stays(self, store: Store) -> None:
        write_ok(store, self.gate_day())
        hourly = store.footfall_hourly(MARKET, T0, DAY_END)

        report = store.apply_retention(days_later(60, hours=3), POLICIES)

        # 00:10 … 02:50 are before the cut-off at 03:00; the newest of them stays
        assert report.removed[(MARKET, DataKind.GATE_COUNTS)] == 8
        kept = store.gate_counts(MARKET, T0, DAY_END)
        assert [row.ts for row in kept][:2] == [at(hours=2, minutes=50), at(hours=3, minutes=10)]
        assert store.footfall_hourly(MARKET, T0, DAY_END) == hourly

    def test_a_count_arriving_late_after_the_cutoff_finds_its_predecessor(
        self, store: Store
    ) -> None:
        write_ok(store, self.gate_day())
        store.apply_retention(days_later(60, hours=3), POLICIES)

        # 03:05, between the kept 02:50 (in 40, out 8) and 03:10 (in 45, out 9)
        late = gate_count(msg_id=100, ts=at(hours=3, minutes=5), in_total=42, out_total=8)
        write_ok(store, [reading(late, "g-north")])

        hour_3 = [
            row for row in store.footfall_hourly(MARKET, T0, DAY_END) if row.hour == at(hours=3)
        ]
        # 02:50 → 03:50: in 40 → 42 → 45 → 50 → 55, out 8 → 8 → 9 → 10 → 11
        assert hour_3 == [FootfallRow(MARKET, "g-north", at(hours=3), 15, 3)]

    def test_the_newest_count_of_a_gate_is_kept_however_old(self, store: Store) -> None:
        write_ok(store, self.gate_day())
        store.apply_retention(days_later(5000), {MARKET: RetentionPolicy(rollups=36_500)})

        kept = store.gate_counts_before(MARKET, days_later(5000))
        assert [(row.ts, row.in_total) for row in kept] == [(at(hours=5, minutes=50), 85)]


class TestPrices:
    def test_old_prices_go_but_the_one_in_force_at_the_cutoff_stays(self, store: Store) -> None:
        write_ok(
            store,
            [
                *(
                    reading(
                        price(msg_id=h + 1, ts=at(hours=h), price_fen_per_kg=1_000 + h), "scr-001"
                    )
                    for h in range(4)
                ),
                reading(price(msg_id=1, ts=T0, vendor="v002", plu="2001"), "scr-002"),
            ],
        )
        report = store.apply_retention(days_later(400, hours=2), POLICIES)

        # 00:00 goes; 01:00 was in force at the cut-off (02:00) and stays
        assert report.removed[(MARKET, DataKind.PRICES)] == 1
        history = store.price_history(MARKET, T0, DAY_END)
        assert sorted((row.vendor, row.ts) for row in history) == [
            ("v001", at(hours=1)),
            ("v001", at(hours=2)),
            ("v001", at(hours=3)),
            ("v002", T0),
        ]
        latest = {row.vendor: row.price_fen_per_kg for row in store.latest_prices(MARKET)}
        assert latest == {"v001": 1_003, "v002": 1_160}


class TestHeartbeatsAndDeadLetters:
    def test_statuses_go_but_the_one_in_force_at_the_cutoff_stays(self, store: Store) -> None:
        write_ok(
            store,
            [
                reading(status(msg_id=h + 1, ts=at(hours=h), online=h != 3), "sc-001")
                for h in range(4)
            ],
        )
        report = store.apply_retention(days_later(31), POLICIES)

        assert report.removed[(MARKET, DataKind.HEARTBEATS)] == 3
        [in_force] = store.scale_status(MARKET)
        assert (in_force.scale, in_force.ts, in_force.online) == ("sc-001", at(hours=3), False)

    def test_dead_letters_expire_by_arrival(self, store: Store) -> None:
        write_ok(
            store,
            [],
            [dead_letter(received=at(hours=1)), dead_letter(received=at(hours=3), reason="later")],
        )
        report = store.apply_retention(days_later(90, hours=2), POLICIES)

        assert report.removed[(MARKET, DataKind.DEAD_LETTERS)] == 1
        assert [letter.reason for letter in store.dead_letters(T0, DAY_END, market=MARKET)] == [
            "later"
        ]


def test_now_must_be_timezone_aware(store: Store) -> None:
    with pytest.raises(ValueError, match=r"time ?zone"):
        store.apply_retention(datetime(2030, 1, 1), POLICIES)
