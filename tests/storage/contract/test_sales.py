"""The store contract of sales (``storage.interfaces.sales.SalesStore``).

Runs once per backend through the parametrized ``store`` fixture in conftest.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from schemas.messages import expected_total_fen
from storage.base import Store
from storage.interfaces.sales import SaleRow, SalesHourRow, SalesSummaryRow
from storage.msgids import REUSED_MSG_ID
from storage.records import Reading, to_ns
from storage.traceability import TraceStatus
from tests.storage.contract.helpers import DAY_END, write_ok, write_settled
from tests.storage.factories import (
    MARKET,
    OTHER_MARKET,
    T0,
    at,
    reading,
    sale,
)


class TestRoundTrip:
    def test_sale_keeps_every_field(self, store: Store) -> None:
        message = sale(
            msg_id=2**63 - 1,
            ts=at(minutes=5, ms=123),
            vendor="v.0_1-a",
            plu="10-01A",
            weight_g=1_234,
            tare_g=35,
            unit_price_fen_per_kg=1_160,
            total_fen=1_400,  # rounded down from 1431 (抹零): stored as charged, not recomputed
            trace_code="SD370782_2025.05-12",
        )
        received_ns = to_ns(at(minutes=5, ms=400)) + 17
        write_ok(store, [reading(message, "sc.0_1-a", received_ns=received_ns)])

        rows = store.sales(MARKET, T0, DAY_END)

        assert rows == [
            SaleRow(
                market=MARKET,
                scale="sc.0_1-a",
                vendor="v.0_1-a",
                plu="10-01A",
                ts=at(minutes=5, ms=123),
                msg_id=2**63 - 1,
                weight_g=1_234,
                tare_g=35,
                unit_price_fen_per_kg=1_160,
                total_fen=1_400,
                trace_code="SD370782_2025.05-12",
                received_ns=received_ns,
                trace_status=TraceStatus.UNKNOWN_BATCH,  # no batch has this code
            )
        ]
        assert rows[0].ts.utcoffset() is not None

    def test_sale_without_tare(self, store: Store) -> None:
        write_ok(store, [reading(sale(tare_g=None), "sc-001")])
        assert store.sales(MARKET, T0, DAY_END)[0].tare_g is None

    def test_sale_with_zero_tare_is_not_none(self, store: Store) -> None:
        write_ok(store, [reading(sale(tare_g=0), "sc-001")])
        assert store.sales(MARKET, T0, DAY_END)[0].tare_g == 0


class TestSales:
    def test_range_is_half_open_on_device_time(self, store: Store) -> None:
        start, end = at(hours=1), at(hours=2)
        moments = [start - timedelta(milliseconds=1), start, end - timedelta(milliseconds=1), end]
        write_ok(
            store, [reading(sale(msg_id=i, ts=ts), "sc-001") for i, ts in enumerate(moments, 1)]
        )

        assert [row.ts for row in store.sales(MARKET, start, end)] == [
            start,
            end - timedelta(milliseconds=1),
        ]
        assert [row.ts for row in store.sales(MARKET, start, end, vendor="v001")] == [
            start,
            end - timedelta(milliseconds=1),
        ]

    def test_range_uses_device_time_not_arrival(self, store: Store) -> None:
        late = reading(sale(msg_id=1, ts=at(minutes=59)), "sc-001", received=at(hours=3))
        write_ok(store, [late])
        assert len(store.sales(MARKET, T0, at(hours=1))) == 1
        assert store.sales(MARKET, at(hours=1), at(hours=4)) == []

    def test_range_accepts_any_time_zone(self, store: Store) -> None:
        write_ok(store, [reading(sale(ts=at(ms=0)), "sc-001")])
        utc_start = T0.astimezone(UTC)
        assert len(store.sales(MARKET, utc_start, utc_start + timedelta(seconds=1))) == 1

    def test_oldest_first(self, store: Store) -> None:
        write_ok(
            store, [reading(sale(msg_id=i, ts=at(minutes=10 - i)), "sc-001") for i in range(1, 6)]
        )
        assert [row.msg_id for row in store.sales(MARKET, T0, DAY_END)] == [5, 4, 3, 2, 1]

    def test_filters(self, store: Store) -> None:
        write_ok(
            store,
            [
                reading(sale(msg_id=1, ts=at(minutes=1), vendor="v001", plu="1001"), "sc-001"),
                reading(sale(msg_id=2, ts=at(minutes=2), vendor="v001", plu="1002"), "sc-001"),
                reading(sale(msg_id=3, ts=at(minutes=3), vendor="v001", plu="1001"), "sc-002"),
                reading(sale(msg_id=4, ts=at(minutes=4), vendor="v002", plu="1001"), "sc-201"),
                reading(
                    sale(msg_id=5, ts=at(minutes=5), vendor="v001", plu="1001"),
                    "sc-001",
                    market=OTHER_MARKET,
                ),
            ],
        )

        def ids(**filters: str) -> list[int]:
            return [row.msg_id for row in store.sales(MARKET, T0, DAY_END, **filters)]

        assert ids() == [1, 2, 3, 4]
        assert ids(vendor="v001") == [1, 2, 3]
        assert ids(scale="sc-001") == [1, 2]
        assert ids(plu="1001") == [1, 3, 4]
        assert ids(vendor="v001", plu="1001") == [1, 3]
        assert ids(vendor="v001", scale="sc-002", plu="1001") == [3]
        assert ids(vendor="v999") == []
        assert [row.market for row in store.sales(OTHER_MARKET, T0, DAY_END)] == [OTHER_MARKET]

    def test_sale_by_receipt(self, store: Store) -> None:
        write_ok(
            store,
            [
                reading(sale(msg_id=42, ts=at(minutes=1), weight_g=420), "sc-001"),
                reading(sale(msg_id=42, ts=at(minutes=2), weight_g=421), "sc-002"),
                reading(sale(msg_id=43, ts=at(minutes=3), weight_g=430), "sc-001"),
                reading(
                    sale(msg_id=44, ts=at(minutes=4), weight_g=440), "sc-001", market=OTHER_MARKET
                ),
            ],
        )

        found = store.sale_by_receipt(MARKET, "sc-001", 42)
        assert found is not None
        assert (found.scale, found.msg_id, found.weight_g, found.ts) == (
            "sc-001",
            42,
            420,
            at(minutes=1),
        )
        other_scale = store.sale_by_receipt(MARKET, "sc-002", 42)
        assert other_scale is not None
        assert other_scale.weight_g == 421
        assert store.sale_by_receipt(MARKET, "sc-001", 41) is None
        assert store.sale_by_receipt(MARKET, "sc-001", 44) is None
        assert store.sale_by_receipt(MARKET, "sc-404", 42) is None


class TestSalesSummary:
    def test_count_and_integer_sums_per_vendor_and_product(self, store: Store) -> None:
        start, end = at(hours=1), at(hours=2)
        sales = [
            sale(msg_id=1, ts=start, vendor="v001", plu="1001", weight_g=1_000, total_fen=1_160),
            sale(msg_id=2, ts=at(hours=1, minutes=5), vendor="v001", plu="1001", weight_g=2_001),
            sale(msg_id=3, ts=at(hours=1, minutes=9), vendor="v001", plu="1002", weight_g=500),
            sale(msg_id=4, ts=end - timedelta(milliseconds=1), vendor="v002", weight_g=150_000),
        ]
        outside = [
            sale(msg_id=5, ts=start - timedelta(milliseconds=1), vendor="v001"),
            sale(msg_id=6, ts=end, vendor="v001"),
        ]
        write_ok(
            store,
            [reading(m, "sc-201" if m.vendor == "v002" else "sc-001") for m in sales + outside]
            + [reading(sale(msg_id=7, ts=start), "sc-001", market=OTHER_MARKET)],
        )

        summary = store.sales_summary(MARKET, start, end)

        assert summary == [
            SalesSummaryRow(MARKET, "v001", "1001", 2, 1_160 + 2_321, 3_001),
            SalesSummaryRow(MARKET, "v001", "1002", 1, 580, 500),
            SalesSummaryRow(MARKET, "v002", "1001", 1, 174_000, 150_000),
        ]
        assert all(type(row.total_fen) is int and type(row.weight_g) is int for row in summary)
        assert store.sales_summary(MARKET, end, at(hours=3)) == [
            SalesSummaryRow(MARKET, "v001", "1001", 1, 1_431, 1_234)
        ]

    def test_sums_beyond_32_bits_are_exact(self, store: Store) -> None:
        big = [
            sale(msg_id=i, ts=at(seconds=i), weight_g=150_000, unit_price_fen_per_kg=66_666)
            for i in range(1, 301)
        ]
        write_ok(store, [reading(message, "sc-001") for message in big])

        [row] = store.sales_summary(MARKET, T0, DAY_END)

        assert row.sales == 300
        assert row.total_fen == sum(m.total_fen for m in big) == 2_999_970_000
        assert row.weight_g == 45_000_000

    def test_no_sales(self, store: Store) -> None:
        assert store.sales_summary(MARKET, T0, DAY_END) == []


def sales_over_four_hours() -> list[Reading]:
    """Sales of two vendors and products on and around the hour boundaries after T0."""
    moments = [
        timedelta(0),
        timedelta(minutes=17, milliseconds=3),
        timedelta(hours=1) - timedelta(milliseconds=1),
        timedelta(hours=1),
        timedelta(hours=1, minutes=30),
        timedelta(hours=2, minutes=59, seconds=59),
        timedelta(hours=3),
        timedelta(hours=3, milliseconds=1),
        timedelta(hours=3, minutes=45),
    ]
    readings = []
    for i, offset in enumerate(moments):
        vendor, scale = ("v001", "sc-001") if i % 3 else ("v002", "sc-201")
        message = sale(
            msg_id=i + 1, ts=T0 + offset, vendor=vendor, plu=f"100{i % 2 + 1}", weight_g=100 + i
        )
        readings.append(reading(message, scale))
    readings.append(reading(sale(msg_id=99, ts=at(hours=1)), "sc-001", market=OTHER_MARKET))
    return readings


RANGES = [
    (T0, at(hours=4)),
    (T0, at(hours=1)),
    (at(ms=1), at(hours=3)),
    (at(minutes=10), at(hours=3, minutes=10)),
    (at(hours=1), at(hours=3, ms=1)),
    (at(minutes=20), at(minutes=40)),
    (at(hours=1, minutes=30), at(hours=1, minutes=30)),
    (at(hours=-2), at(hours=6)),
]


def summary_of(rows: Sequence[SaleRow]) -> list[SalesSummaryRow]:
    totals: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        total = totals.setdefault((row.vendor, row.plu), [0, 0, 0])
        total[0] += 1
        total[1] += row.total_fen
        total[2] += row.weight_g
    return [SalesSummaryRow(MARKET, v, p, *totals[(v, p)]) for v, p in sorted(totals)]


class TestSalesSummaryOverHours:
    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_agrees_with_the_sales_in_the_range(
        self, store: Store, start: datetime, end: datetime
    ) -> None:
        write_ok(store, sales_over_four_hours())
        assert store.sales_summary(MARKET, start, end) == summary_of(
            store.sales(MARKET, start, end)
        )

    def test_a_replay_counts_once(self, store: Store) -> None:
        message = sale(msg_id=5, ts=at(minutes=5), weight_g=300)
        write_ok(store, [reading(message, "sc-001")])
        write_ok(store, [reading(message, "sc-001", received=at(minutes=9))])

        [row] = store.sales_summary(MARKET, T0, at(hours=1))
        assert (row.sales, row.weight_g, row.total_fen) == (1, 300, 348)

    def test_a_reused_msg_id_does_not_change_the_sums(self, store: Store) -> None:
        write_ok(store, [reading(sale(msg_id=5, ts=at(minutes=5), weight_g=100), "sc-001")])
        [letter] = write_settled(
            store, [reading(sale(msg_id=5, ts=at(minutes=5), weight_g=300), "sc-001")]
        )

        assert letter.reason == REUSED_MSG_ID
        [row] = store.sales_summary(MARKET, T0, at(hours=1))
        assert (row.sales, row.weight_g, row.total_fen) == (1, 100, 116)


class TestSalesByHour:
    def test_market_totals_per_utc_hour_clipped_to_the_range(self, store: Store) -> None:
        write_ok(store, sales_over_four_hours())

        rows = store.sales_by_hour(MARKET, at(minutes=10), at(hours=3, minutes=10))

        def hour(h: int) -> datetime:
            return datetime(2025, 5, 12, h, tzinfo=UTC)

        def fen(*weights: int) -> int:
            return sum(expected_total_fen(weight, 1_160) for weight in weights)

        # at(minutes=10) is 00:10 UTC: the sale at 00:00 is outside, 00:17 inside;
        # 03:10 keeps 03:00 and 03:00:00.001 but not 03:45.
        assert rows == [
            SalesHourRow(MARKET, hour(0), 2, fen(101, 102), 101 + 102),
            SalesHourRow(MARKET, hour(1), 2, fen(103, 104), 103 + 104),
            SalesHourRow(MARKET, hour(2), 1, fen(105), 105),
            SalesHourRow(MARKET, hour(3), 2, fen(106, 107), 106 + 107),
        ]
        assert all(row.hour.utcoffset() == timedelta(0) for row in rows)
        assert all(type(row.turnover_fen) is int for row in rows)

    @pytest.mark.parametrize(("start", "end"), RANGES)
    def test_agrees_with_the_sales_in_the_range(
        self, store: Store, start: datetime, end: datetime
    ) -> None:
        write_ok(store, sales_over_four_hours())
        expected: dict[datetime, list[int]] = {}
        for row in store.sales(MARKET, start, end):
            hour = row.ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            total = expected.setdefault(hour, [0, 0, 0])
            total[0] += 1
            total[1] += row.total_fen
            total[2] += row.weight_g
        assert store.sales_by_hour(MARKET, start, end) == [
            SalesHourRow(MARKET, hour, *expected[hour]) for hour in sorted(expected)
        ]

    def test_no_sales(self, store: Store) -> None:
        assert store.sales_by_hour(MARKET, T0, DAY_END) == []
