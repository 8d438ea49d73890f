"""The contract every Store backend passes (see ``storage/base.py``).

Runs once per backend through the parametrized ``store`` fixture in conftest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from schemas.messages import Sale, expected_total_fen
from storage.base import (
    BatchBalanceRow,
    BatchRow,
    FootfallRow,
    GateCountRow,
    PriceRow,
    PromotionRow,
    SaleRow,
    SalesHourRow,
    SalesSummaryRow,
    ScaleStatusRow,
    Store,
    UnverifiedSalesRow,
)
from storage.footfall import hourly_footfall
from storage.msgids import REUSED_MSG_ID
from storage.records import UNREGISTERED, DeadLetter, Reading, to_ns
from storage.traceability import LATE_BATCH_GRACE, TraceStatus
from tests.storage.factories import (
    MARKET,
    OTHER_MARKET,
    SHANGHAI,
    T0,
    at,
    batch,
    dead_letter,
    gate_count,
    price,
    promotion,
    reading,
    sale,
    status,
)

HOSTILE = "Li \"Big\" Wang\\s, a=b 'x' 李记"
DAY_END = at(hours=24)


def write_ok(
    store: Store, readings: Sequence[Reading], dead_letters: Sequence[DeadLetter] = ()
) -> None:
    assert store.write(readings, dead_letters) == []


def one_of_each() -> list[Reading]:
    return [
        reading(sale(), "sc-001"),
        reading(price(), "scr-001"),
        reading(batch(), "in-01"),
        reading(gate_count(in_total=5, out_total=2), "g-north"),
        reading(status(msg_id=2), "sc-001"),  # one id sequence per device
    ]


class TestWrite:
    def test_good_data_is_not_refused(self, store: Store) -> None:
        assert store.write(one_of_each(), [dead_letter()]) == []

    def test_nothing_to_write(self, store: Store) -> None:
        assert store.write([]) == []

    def test_a_reading_the_store_cannot_hold_is_dead_lettered_and_the_rest_written(
        self, store: Store
    ) -> None:
        # Bypasses validation: an integer beyond 64 bits fits no backend.
        unstorable = Sale.model_construct(
            v=1,
            msg_id=7,
            ts=at(ms=7),
            vendor="v001",
            plu="1001",
            weight_g=500,
            tare_g=None,
            unit_price_fen_per_kg=1_000,
            total_fen=2**64,
            trace_code="SD370782-20250512-001",
        )
        good = reading(sale(msg_id=8, ts=at(ms=8)), "sc-001")
        bad = reading(unstorable, "sc-001")

        refused = store.write([bad, good])

        assert len(refused) == 1
        letter = refused[0]
        assert (letter.market, letter.device) == (MARKET, "sc-001")
        assert letter.topic == "markets/nanmen/scales/sc-001/sale"
        assert letter.received_ns == bad.received_ns
        assert letter.reason
        assert json.loads(letter.payload)["total_fen"] == 2**64
        assert json.loads(letter.payload)["msg_id"] == 7
        assert store.dead_letters(T0, DAY_END) == [letter]
        assert [row.msg_id for row in store.sales(MARKET, T0, DAY_END)] == [8]


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

    def test_price_with_promotion(self, store: Store) -> None:
        until = at(hours=10, ms=5) + timedelta(microseconds=7)
        promo = promotion(
            price_fen_per_kg=1_990, text="限时特价 \"5折\", a=b \\ '买一送一'", until=until
        )
        message = price(
            msg_id=3, ts=at(ms=30), vendor="v001", plu="1001", price_fen_per_kg=2_580, promo=promo
        )
        write_ok(store, [reading(message, "scr-001")])

        expected = PriceRow(
            market=MARKET,
            vendor="v001",
            plu="1001",
            screen="scr-001",
            price_fen_per_kg=2_580,
            promo=PromotionRow(
                price_fen_per_kg=1_990, text="限时特价 \"5折\", a=b \\ '买一送一'", until=until
            ),
            ts=at(ms=30),
            msg_id=3,
        )
        assert store.latest_prices(MARKET) == [expected]
        assert store.price_history(MARKET, T0, DAY_END) == [expected]

    def test_price_without_promotion(self, store: Store) -> None:
        write_ok(store, [reading(price(promo=None), "scr-001")])
        assert store.latest_prices(MARKET)[0].promo is None

    def test_batch_keeps_every_field(self, store: Store) -> None:
        message = batch(
            msg_id=11,
            ts=at(hours=-2, ms=1),
            trace_code="SD370782-20250512-001",
            vendor="v001",
            plu="1001",
            origin="山东寿光",
            supplier=HOSTILE,
            quantity_g=50_000_000,
            certificate_no='HG-2025/000,123 \\"',
            passed=True,
            inhibition_pct=Decimal("12.5"),
        )
        received_ns = to_ns(at(hours=-2, ms=900)) + 3
        write_ok(store, [reading(message, "in-01", received_ns=received_ns)])

        expected = BatchRow(
            market=MARKET,
            station="in-01",
            vendor="v001",
            plu="1001",
            trace_code="SD370782-20250512-001",
            origin="山东寿光",
            supplier=HOSTILE,
            quantity_g=50_000_000,
            certificate_no='HG-2025/000,123 \\"',
            rapid_test_passed=True,
            inhibition_pct=Decimal("12.5"),
            ts=at(hours=-2, ms=1),
            msg_id=11,
            received_ns=received_ns,
        )
        assert store.batch(MARKET, "SD370782-20250512-001") == expected
        assert store.batches(MARKET, at(hours=-3), T0) == [expected]

    @pytest.mark.parametrize(
        ("passed", "pct"),
        [
            (True, Decimal("0")),
            (True, Decimal("49.9")),
            (False, Decimal("50.0")),
            (False, Decimal("100")),
        ],
    )
    def test_rapid_test_is_exact(self, store: Store, passed: bool, pct: Decimal) -> None:
        write_ok(store, [reading(batch(passed=passed, inhibition_pct=pct), "in-01")])
        row = store.batch(MARKET, "SD370782-20250512-001")
        assert row is not None
        assert row.rapid_test_passed is passed
        assert isinstance(row.inhibition_pct, Decimal)
        assert row.inhibition_pct == pct

    def test_scale_status_with_every_field(self, store: Store) -> None:
        message = status(
            msg_id=9,
            ts=at(ms=9),
            online=True,
            zero_ok=False,
            seal_intact=True,
            calibration_due=date(2026, 1, 31),
        )
        write_ok(store, [reading(message, "sc-001")])
        assert store.scale_status(MARKET) == [
            ScaleStatusRow(
                market=MARKET,
                scale="sc-001",
                ts=at(ms=9),
                online=True,
                will=False,
                zero_ok=False,
                seal_intact=True,
                calibration_due=date(2026, 1, 31),
            )
        ]

    def test_scale_status_without_optional_fields(self, store: Store) -> None:
        write_ok(store, [reading(status(online=False), "sc-001")])
        [row] = store.scale_status(MARKET)
        assert (row.online, row.zero_ok, row.seal_intact, row.calibration_due) == (
            False,
            None,
            None,
            None,
        )

    def test_gate_count_keeps_large_counters(self, store: Store) -> None:
        write_ok(
            store, [reading(gate_count(ts=at(ms=1), in_total=2**53 - 1, out_total=0), "g-north")]
        )
        assert store.gate_counts(MARKET, T0, DAY_END) == [
            GateCountRow(
                market=MARKET, gate="g-north", ts=at(ms=1), in_total=2**53 - 1, out_total=0
            )
        ]


class TestPointIdentity:
    def test_the_same_readings_written_twice_are_stored_once(self, store: Store) -> None:
        readings = one_of_each()
        write_ok(store, readings)
        write_ok(store, readings)

        assert len(store.sales(MARKET, T0, DAY_END)) == 1
        assert len(store.price_history(MARKET, T0, DAY_END)) == 1
        assert len(store.batches(MARKET, T0, DAY_END)) == 1
        assert len(store.gate_counts(MARKET, T0, DAY_END)) == 1
        assert len(store.scale_status(MARKET)) == 1

    def test_a_replay_received_later_overwrites_the_first_delivery(self, store: Store) -> None:
        message = sale(msg_id=5, ts=at(ms=5))
        first = to_ns(at(ms=200))
        replayed = to_ns(at(minutes=30))
        write_ok(store, [reading(message, "sc-001", received_ns=first)])
        write_ok(store, [reading(message, "sc-001", received_ns=replayed)])

        rows = store.sales(MARKET, T0, DAY_END)
        assert [(row.msg_id, row.received_ns) for row in rows] == [(5, replayed)]

    def test_a_replay_within_one_batch_is_one_row(self, store: Store) -> None:
        message = sale(msg_id=5, ts=at(ms=5))
        write_ok(store, [reading(message, "sc-001"), reading(message, "sc-001")])
        assert len(store.sales(MARKET, T0, DAY_END)) == 1

    def test_two_sales_in_the_same_millisecond_are_two_rows(self, store: Store) -> None:
        write_ok(
            store,
            [
                reading(sale(msg_id=2, ts=at(ms=1), weight_g=200), "sc-001"),
                reading(sale(msg_id=1, ts=at(ms=1), weight_g=100), "sc-001"),
            ],
        )
        rows = store.sales(MARKET, T0, DAY_END)
        assert [(row.msg_id, row.weight_g, row.ts) for row in rows] == [
            (1, 100, at(ms=1)),
            (2, 200, at(ms=1)),
        ]

    def test_the_same_message_id_on_two_scales_is_two_rows(self, store: Store) -> None:
        write_ok(
            store,
            [
                reading(sale(msg_id=1, ts=at(ms=1)), "sc-001"),
                reading(sale(msg_id=1, ts=at(ms=1)), "sc-002"),
            ],
        )
        assert sorted(row.scale for row in store.sales(MARKET, T0, DAY_END)) == ["sc-001", "sc-002"]


class TestMsgIdLedger:
    """One message per (market, device, msg_id): the first (``storage.msgids``)."""

    @pytest.mark.parametrize("msg_id", [0, 5, 2**63 - 1])
    @pytest.mark.parametrize("later_ts", [at(ms=5), at(minutes=3)], ids=["same ts", "later ts"])
    def test_a_reused_msg_id_with_other_content_is_dead_lettered_and_the_first_kept(
        self, store: Store, msg_id: int, later_ts: datetime
    ) -> None:
        first = reading(sale(msg_id=msg_id, ts=at(ms=5), weight_g=100), "sc-001")
        reuse = reading(sale(msg_id=msg_id, ts=later_ts, weight_g=1033), "sc-001")
        write_ok(store, [first])

        refused = store.write([reuse])

        assert [(d.reason, d.market, d.device, d.received_ns) for d in refused] == [
            (REUSED_MSG_ID, MARKET, "sc-001", reuse.received_ns)
        ]
        assert json.loads(refused[0].payload)["weight_g"] == 1033
        assert refused[0].topic == "markets/nanmen/scales/sc-001/sale"
        assert store.dead_letters(T0, DAY_END) == refused
        assert store.reject_counts(T0, DAY_END) == {(MARKET, "sc-001"): 1}
        assert [(r.msg_id, r.weight_g) for r in store.sales(MARKET, T0, DAY_END)] == [(msg_id, 100)]

    def test_within_one_write_the_first_wins(self, store: Store) -> None:
        first = reading(sale(msg_id=5, ts=at(ms=5), weight_g=100), "sc-001")
        reuse = reading(sale(msg_id=5, ts=at(ms=9), weight_g=200), "sc-001")
        refused = store.write([first, reuse, first])

        assert [d.reason for d in refused] == [REUSED_MSG_ID]
        assert [r.weight_g for r in store.sales(MARKET, T0, DAY_END)] == [100]

    def test_every_message_type_claims_its_msg_id(self, store: Store) -> None:
        write_ok(store, one_of_each())
        reused = [
            reading(sale(weight_g=999), "sc-001"),
            reading(price(price_fen_per_kg=999), "scr-001"),
            reading(batch(quantity_g=999), "in-01"),
            reading(gate_count(in_total=999, out_total=2), "g-north"),
            reading(status(msg_id=2, online=False), "sc-001"),
        ]
        refused = store.write(reused)
        assert sorted((d.device, d.reason) for d in refused) == sorted(
            (r.device, REUSED_MSG_ID) for r in reused
        )

    def test_the_ledger_is_shared_by_every_instance_and_survives_reopening(
        self, store_pair: tuple[Store, Store]
    ) -> None:
        one, other = store_pair
        write_ok(one, [reading(sale(msg_id=5, weight_g=100), "sc-001")])
        one.close()

        [letter] = other.write([reading(sale(msg_id=5, weight_g=200), "sc-001")])

        assert letter.reason == REUSED_MSG_ID
        assert [r.weight_g for r in other.sales(MARKET, T0, DAY_END)] == [100]

    def test_ids_are_per_device_and_market(self, store: Store) -> None:
        write_ok(
            store,
            [
                reading(sale(msg_id=5, weight_g=100), "sc-001"),
                reading(sale(msg_id=5, weight_g=200), "sc-002"),
                reading(sale(msg_id=5, weight_g=300), "sc-001", market=OTHER_MARKET),
            ],
        )

    def test_a_last_will_repeating_the_last_msg_id_is_stored(self, store: Store) -> None:
        write_ok(store, [reading(sale(msg_id=5), "sc-001")])
        will = status(msg_id=5, ts=at(minutes=-30), online=False, will=True)
        write_ok(store, [reading(will, "sc-001", received=at(minutes=1))])
        assert [row.will for row in store.scale_status(MARKET)] == [True]

    def test_forgotten_ids_can_be_used_again_and_newer_ones_cannot(self, store: Store) -> None:
        write_ok(
            store,
            [
                reading(sale(msg_id=1, ts=at(hours=1)), "sc-001"),
                reading(sale(msg_id=2, ts=at(hours=3)), "sc-001"),
                reading(sale(msg_id=1, ts=at(hours=1)), "sc-002"),
            ],
        )

        store.forget_msg_ids(at(hours=2))

        again = [
            reading(sale(msg_id=1, ts=at(hours=4), weight_g=11), "sc-001"),
            reading(sale(msg_id=2, ts=at(hours=4), weight_g=22), "sc-001"),
            reading(sale(msg_id=1, ts=at(hours=4), weight_g=33), "sc-002"),
        ]
        refused = store.write(again)
        assert [(d.device, json.loads(d.payload)["msg_id"]) for d in refused] == [("sc-001", 2)]


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

    def test_sales_of_batch(self, store: Store) -> None:
        code, other = "SD370782-20250512-001", "SD370782-20250512-002"
        write_ok(
            store,
            [
                reading(sale(msg_id=1, ts=at(minutes=30), trace_code=code), "sc-001"),
                reading(sale(msg_id=2, ts=at(minutes=10), trace_code=code), "sc-002"),
                reading(sale(msg_id=3, ts=at(minutes=20), trace_code=other), "sc-001"),
                reading(sale(msg_id=4, ts=at(hours=-30), trace_code=code), "sc-001"),
                reading(
                    sale(msg_id=5, ts=at(minutes=15), trace_code=code),
                    "sc-001",
                    market=OTHER_MARKET,
                ),
            ],
        )

        rows = store.sales_of_batch(MARKET, code)

        assert [(row.msg_id, row.scale) for row in rows] == [
            (4, "sc-001"),
            (2, "sc-002"),
            (1, "sc-001"),
        ]
        assert {row.trace_code for row in rows} == {code}
        assert store.sales_of_batch(MARKET, "SD370782-99999999-999") == []

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


class TestPrices:
    def test_latest_price_per_vendor_and_product(self, store: Store) -> None:
        early = promotion(price_fen_per_kg=900, text="早市特价", until=at(hours=2))
        late = promotion(price_fen_per_kg=950, text='晚市 "清仓"', until=at(hours=12))
        # Written newest first: "latest" is by device time, not by arrival.
        write_ok(
            store,
            [
                reading(
                    price(
                        msg_id=3,
                        ts=at(hours=9),
                        vendor="v001",
                        plu="1001",
                        price_fen_per_kg=1_300,
                        promo=late,
                    ),
                    "scr-001",
                ),
                reading(
                    price(
                        msg_id=1,
                        ts=at(hours=0),
                        vendor="v001",
                        plu="1001",
                        price_fen_per_kg=1_200,
                        promo=early,
                    ),
                    "scr-001",
                ),
                reading(
                    price(
                        msg_id=2, ts=at(hours=5), vendor="v001", plu="1001", price_fen_per_kg=1_250
                    ),
                    "scr-001",
                ),
                reading(
                    price(
                        msg_id=4,
                        ts=at(hours=1),
                        vendor="v001",
                        plu="1002",
                        price_fen_per_kg=1_000,
                        promo=early,
                    ),
                    "scr-002",
                ),
                reading(
                    price(
                        msg_id=5, ts=at(hours=7), vendor="v002", plu="1001", price_fen_per_kg=1_100
                    ),
                    "scr-201",
                ),
                reading(
                    price(
                        msg_id=6, ts=at(hours=8), vendor="v001", plu="1001", price_fen_per_kg=9_999
                    ),
                    "scr-001",
                    market=OTHER_MARKET,
                ),
            ],
        )

        assert store.latest_prices(MARKET) == [
            PriceRow(
                MARKET,
                "v001",
                "1001",
                "scr-001",
                1_300,
                PromotionRow(950, '晚市 "清仓"', at(hours=12)),
                at(hours=9),
                3,
            ),
            PriceRow(
                MARKET,
                "v001",
                "1002",
                "scr-002",
                1_000,
                PromotionRow(900, "早市特价", at(hours=2)),
                at(hours=1),
                4,
            ),
            PriceRow(MARKET, "v002", "1001", "scr-201", 1_100, None, at(hours=7), 5),
        ]

    def test_a_promotion_does_not_outlive_the_price_that_carried_it(self, store: Store) -> None:
        write_ok(
            store,
            [
                reading(
                    price(msg_id=1, ts=at(hours=0), promo=promotion(until=at(hours=8))), "scr-001"
                ),
                reading(price(msg_id=2, ts=at(hours=1), price_fen_per_kg=1_500), "scr-001"),
            ],
        )
        [latest] = store.latest_prices(MARKET)
        assert (latest.msg_id, latest.price_fen_per_kg, latest.promo) == (2, 1_500, None)

    def test_no_prices(self, store: Store) -> None:
        assert store.latest_prices(MARKET) == []

    def test_price_history_filters_and_range(self, store: Store) -> None:
        write_ok(
            store,
            [
                reading(price(msg_id=1, ts=at(hours=1), vendor="v001", plu="1001"), "scr-001"),
                reading(price(msg_id=2, ts=at(hours=2), vendor="v001", plu="1002"), "scr-001"),
                reading(price(msg_id=3, ts=at(hours=3), vendor="v002", plu="1001"), "scr-201"),
                reading(price(msg_id=4, ts=at(hours=4), vendor="v001", plu="1001"), "scr-001"),
                reading(
                    price(msg_id=5, ts=at(hours=2), vendor="v001", plu="1001"),
                    "scr-001",
                    market=OTHER_MARKET,
                ),
            ],
        )

        def ids(start: datetime, end: datetime, **filters: str) -> list[int]:
            return [row.msg_id for row in store.price_history(MARKET, start, end, **filters)]

        assert ids(T0, DAY_END) == [1, 2, 3, 4]
        assert ids(at(hours=1), at(hours=4)) == [1, 2, 3]
        assert ids(T0, DAY_END, plu="1001") == [1, 3, 4]
        assert ids(T0, DAY_END, vendor="v001") == [1, 2, 4]
        assert ids(T0, DAY_END, vendor="v001", plu="1001") == [1, 4]


class TestBatches:
    def test_batch_by_trace_code_is_the_latest_record(self, store: Store) -> None:
        code = "SD370782-20250512-001"
        write_ok(
            store,
            [
                reading(
                    batch(msg_id=2, ts=at(minutes=20), trace_code=code, quantity_g=120_000), "in-01"
                ),
                reading(
                    batch(msg_id=1, ts=at(minutes=10), trace_code=code, quantity_g=100_000), "in-01"
                ),
                reading(
                    batch(msg_id=3, ts=at(minutes=5), trace_code="SD370782-20250512-002"), "in-01"
                ),
                reading(
                    batch(msg_id=4, ts=at(minutes=30), trace_code=code, quantity_g=1),
                    "in-01",
                    market=OTHER_MARKET,
                ),
            ],
        )

        found = store.batch(MARKET, code)

        assert found is not None
        assert (found.msg_id, found.quantity_g, found.trace_code) == (2, 120_000, code)
        assert store.batch(MARKET, "SD370782-99999999-999") is None

    def test_batches_in_range_by_vendor(self, store: Store) -> None:
        start, end = at(hours=-3), T0
        write_ok(
            store,
            [
                reading(
                    batch(msg_id=1, ts=start - timedelta(milliseconds=1), trace_code="TC-0001"),
                    "in-01",
                ),
                reading(batch(msg_id=2, ts=start, trace_code="TC-0002", vendor="v001"), "in-01"),
                reading(
                    batch(msg_id=3, ts=at(hours=-2), trace_code="TC-0003", vendor="v002"), "in-02"
                ),
                reading(
                    batch(msg_id=4, ts=end - timedelta(milliseconds=1), trace_code="TC-0004"),
                    "in-02",
                ),
                reading(batch(msg_id=5, ts=end, trace_code="TC-0005"), "in-01"),
                reading(
                    batch(msg_id=6, ts=at(hours=-1), trace_code="TC-0006"),
                    "in-01",
                    market=OTHER_MARKET,
                ),
            ],
        )

        assert [row.msg_id for row in store.batches(MARKET, start, end)] == [2, 3, 4]
        assert [row.msg_id for row in store.batches(MARKET, start, end, vendor="v001")] == [2, 4]
        assert [row.station for row in store.batches(MARKET, start, end, vendor="v002")] == [
            "in-02"
        ]


PORK = "TC-B01-PORK"
CABBAGE = "TC-A01-CABBAGE"


def pork_and_cabbage_batches() -> list[Reading]:
    """A meat vendor's pork batch and a vegetable vendor's cabbage batch, at T0."""
    return [
        reading(batch(msg_id=1, trace_code=PORK, vendor="b01", plu="2001"), "in-01"),
        reading(batch(msg_id=2, trace_code=CABBAGE, vendor="a01", plu="1001"), "in-01"),
    ]


def cabbage_sale(msg_id: int, trace_code: str, *, ts: datetime | None = None) -> Reading:
    """Vegetable vendor a01 sells Napa cabbage (PLU 1001) at scale sc-a01."""
    message = sale(
        msg_id=msg_id, ts=ts or at(minutes=msg_id), vendor="a01", plu="1001", trace_code=trace_code
    )
    return reading(message, "sc-a01")


def statuses_of(store: Store) -> dict[int, TraceStatus]:
    return {row.msg_id: row.trace_status for row in store.sales(MARKET, at(hours=-48), DAY_END)}


class TestTraceStatus:
    def test_each_sale_is_checked_against_the_registered_batches(self, store: Store) -> None:
        write_ok(store, pork_and_cabbage_batches())
        write_ok(
            store,
            [
                cabbage_sale(1, CABBAGE),
                cabbage_sale(2, PORK),  # the reproduced lie: cabbage sold as the pork batch
                cabbage_sale(3, "TC-NOWHERE-01"),
                reading(
                    sale(msg_id=4, ts=at(minutes=4), vendor="a01", plu="1002", trace_code=CABBAGE),
                    "sc-a01",
                ),
            ],
        )

        assert statuses_of(store) == {
            1: TraceStatus.VERIFIED,
            2: TraceStatus.OTHER_VENDOR,
            3: TraceStatus.UNKNOWN_BATCH,
            4: TraceStatus.PRODUCT_MISMATCH,
        }
        receipt = store.sale_by_receipt(MARKET, "sc-a01", 2)
        assert receipt is not None
        assert receipt.trace_status is TraceStatus.OTHER_VENDOR
        assert not receipt.origin_verified
        assert next(row.trace_status for row in store.sales_of_batch(MARKET, CABBAGE)) is (
            TraceStatus.VERIFIED
        )

    def test_a_batch_in_the_same_write_counts(self, store: Store) -> None:
        write_ok(store, [cabbage_sale(1, CABBAGE), *pork_and_cabbage_batches()])

        assert statuses_of(store) == {1: TraceStatus.VERIFIED}

    def test_a_sale_outside_the_stalls_categories_is_flagged_even_with_a_good_batch(
        self, store: Store
    ) -> None:
        outside = Reading(
            MARKET, "sc-a01", to_ns(at(minutes=1)), cabbage_sale(1, CABBAGE).message, True
        )
        write_ok(store, [*pork_and_cabbage_batches(), outside])

        assert statuses_of(store) == {1: TraceStatus.OUTSIDE_CATEGORIES}

    def test_a_late_batch_verifies_its_vendors_sales_within_the_grace_window(
        self, store: Store
    ) -> None:
        grace_edge = T0 - LATE_BATCH_GRACE
        write_ok(
            store,
            [
                cabbage_sale(1, CABBAGE, ts=grace_edge - timedelta(milliseconds=1)),
                cabbage_sale(2, CABBAGE, ts=grace_edge),
                cabbage_sale(3, CABBAGE, ts=at(minutes=-5)),
                cabbage_sale(4, CABBAGE, ts=at(minutes=5)),  # the desk even stamped it late
                reading(
                    sale(msg_id=5, ts=at(minutes=-4), vendor="b01", plu="1001", trace_code=CABBAGE),
                    "sc-b01",
                ),
                reading(
                    sale(msg_id=6, ts=at(minutes=-3), vendor="a01", plu="1002", trace_code=CABBAGE),
                    "sc-a01",
                ),
            ],
        )
        assert set(statuses_of(store).values()) == {TraceStatus.UNKNOWN_BATCH}

        write_ok(store, pork_and_cabbage_batches())

        assert statuses_of(store) == {
            1: TraceStatus.UNKNOWN_BATCH,  # sold before the grace window: not from this batch
            2: TraceStatus.VERIFIED,
            3: TraceStatus.VERIFIED,
            4: TraceStatus.VERIFIED,
            5: TraceStatus.UNKNOWN_BATCH,  # another vendor's sale is not turned verified
            6: TraceStatus.UNKNOWN_BATCH,
        }
        verified = store.sale_by_receipt(MARKET, "sc-a01", 3)
        assert verified is not None
        assert verified.origin_verified
        # the upgrade rewrote the same points: no sale was added or lost
        assert len(store.sales(MARKET, at(hours=-48), DAY_END)) == 6
        assert sum(row.sales for row in store.sales_summary(MARKET, at(hours=-48), DAY_END)) == 6

    def test_a_redelivered_sale_is_checked_again(self, store: Store) -> None:
        write_ok(store, [cabbage_sale(1, CABBAGE)])
        write_ok(store, pork_and_cabbage_batches()[:1])  # only the pork batch arrives
        write_ok(store, [*pork_and_cabbage_batches()[1:], cabbage_sale(1, CABBAGE)])

        assert statuses_of(store) == {1: TraceStatus.VERIFIED}

    def test_unverified_sales_are_counted_per_vendor_and_scale(self, store: Store) -> None:
        write_ok(store, pork_and_cabbage_batches())
        write_ok(
            store,
            [
                cabbage_sale(1, CABBAGE),
                cabbage_sale(2, PORK),
                cabbage_sale(3, PORK),
                cabbage_sale(4, "TC-NOWHERE-01"),
                cabbage_sale(5, "TC-NOWHERE-01", ts=DAY_END),  # outside the range
                reading(sale(msg_id=6, ts=at(minutes=6), vendor="a01", trace_code=PORK), "sc-a02"),
                reading(
                    sale(msg_id=7, ts=at(minutes=7), vendor="b01", plu="2001", trace_code=PORK),
                    "sc-b01",
                ),
                reading(
                    sale(msg_id=8, ts=at(minutes=8), vendor="a01", trace_code=PORK),
                    "sc-a01",
                    market=OTHER_MARKET,
                ),
            ],
        )

        assert store.unverified_sales(MARKET, T0, DAY_END) == [
            UnverifiedSalesRow(MARKET, "a01", "sc-a01", TraceStatus.UNKNOWN_BATCH, 1),
            UnverifiedSalesRow(MARKET, "a01", "sc-a01", TraceStatus.OTHER_VENDOR, 2),
            UnverifiedSalesRow(MARKET, "a01", "sc-a02", TraceStatus.OTHER_VENDOR, 1),
        ]
        assert store.unverified_sales(MARKET, at(minutes=3), at(minutes=4)) == [
            UnverifiedSalesRow(MARKET, "a01", "sc-a01", TraceStatus.OTHER_VENDOR, 1)
        ]


class TestTheSalesOfABatch:
    """A batch's sales are its vendor's sales of its product that name its code.

    A sale of another vendor or product that names the code is a false claim
    (flagged by its trace status and ``unverified_sales``), never the batch's
    sale: it is not listed with the batch and does not count against its stock.
    """

    START, END = at(hours=-48), DAY_END

    @staticmethod
    def small_cabbage_batch() -> Reading:
        """Vendor a01 took in 1 kg of Napa cabbage at T0."""
        message = batch(msg_id=2, trace_code=CABBAGE, vendor="a01", plu="1001", quantity_g=1_000)
        return reading(message, "in-01")

    @staticmethod
    def claim(
        msg_id: int,
        vendor: str,
        plu: str,
        weight_g: int,
        *,
        ts: datetime | None = None,
        outside_categories: bool = False,
    ) -> Reading:
        """A sale naming the cabbage batch, by ``vendor`` of ``plu``."""
        message = sale(
            msg_id=msg_id,
            ts=ts or at(minutes=msg_id),
            vendor=vendor,
            plu=plu,
            weight_g=weight_g,
            trace_code=CABBAGE,
        )
        return Reading(MARKET, f"sc-{vendor}", to_ns(message.ts), message, outside_categories)

    def balance(self, store: Store) -> BatchBalanceRow:
        (row,) = store.batch_balances(MARKET, self.START, self.END)
        assert row == Store.batch_balances(store, MARKET, self.START, self.END)[0]
        return row

    def test_another_vendors_false_sale_leaves_the_batch_as_it_was(self, store: Store) -> None:
        write_ok(store, [self.small_cabbage_batch(), self.claim(1, "a01", "1001", 600)])
        before = self.balance(store)

        write_ok(
            store,
            [
                self.claim(2, "b01", "1001", 900),  # a neighbour's scale names a01's batch
                self.claim(3, "b01", "2001", 700, outside_categories=True),
                self.claim(4, "a01", "1002", 800),  # a01's own scale, but another product
            ],
        )

        after = self.balance(store)
        assert after == before
        assert (after.sales, after.sold_g, after.last_sale) == (1, 600, at(minutes=1))
        assert not after.oversold
        assert [row.msg_id for row in store.sales_of_batch(MARKET, CABBAGE)] == [1]
        # The false claims are flagged at the scales that made them.
        assert {
            (row.vendor, row.trace_status): row.sales
            for row in store.unverified_sales(MARKET, self.START, self.END)
        } == {
            ("a01", TraceStatus.PRODUCT_MISMATCH): 1,
            ("b01", TraceStatus.OTHER_VENDOR): 1,
            ("b01", TraceStatus.OUTSIDE_CATEGORIES): 1,
        }

    def test_an_own_sale_outside_the_stalls_categories_still_came_from_the_batch(
        self, store: Store
    ) -> None:
        write_ok(
            store,
            [
                self.small_cabbage_batch(),
                self.claim(1, "a01", "1001", 600),
                self.claim(2, "a01", "1001", 500, outside_categories=True),
            ],
        )

        balance = self.balance(store)
        assert (balance.sales, balance.sold_g, balance.oversold) == (2, 1_100, True)
        assert [
            (row.msg_id, row.trace_status) for row in store.sales_of_batch(MARKET, CABBAGE)
        ] == [(1, TraceStatus.VERIFIED), (2, TraceStatus.OUTSIDE_CATEGORIES)]

    def test_a_late_batch_counts_its_vendors_sales_within_the_grace_window(
        self, store: Store
    ) -> None:
        grace_edge = T0 - LATE_BATCH_GRACE
        write_ok(
            store,
            [
                self.claim(1, "a01", "1001", 300, ts=grace_edge - timedelta(milliseconds=1)),
                self.claim(2, "a01", "1001", 200, ts=grace_edge),
                self.claim(3, "a01", "1001", 100, ts=at(minutes=-5)),
                self.claim(4, "b01", "1001", 900, ts=at(minutes=-4)),
            ],
        )
        write_ok(store, [self.small_cabbage_batch()])
        write_ok(store, [self.claim(5, "a01", "1001", 50, ts=at(minutes=5))])

        balance = self.balance(store)
        assert (balance.sales, balance.sold_g, balance.last_sale) == (3, 350, at(minutes=5))
        assert [row.msg_id for row in store.sales_of_batch(MARKET, CABBAGE)] == [2, 3, 5]
        assert {row.trace_status for row in store.sales_of_batch(MARKET, CABBAGE)} == {
            TraceStatus.VERIFIED
        }

    def test_without_a_registered_batch_every_sale_naming_the_code_is_listed(
        self, store: Store
    ) -> None:
        write_ok(store, [self.claim(1, "a01", "1001", 600), self.claim(2, "b01", "1001", 900)])

        assert [
            (row.msg_id, row.trace_status) for row in store.sales_of_batch(MARKET, CABBAGE)
        ] == [(1, TraceStatus.UNKNOWN_BATCH), (2, TraceStatus.UNKNOWN_BATCH)]


class TestBatchBalances:
    """Batches in a range with their sales so far; equal to the generic per-batch version."""

    START, END = at(hours=-2), at(hours=2)

    @staticmethod
    def intake(code: str, minutes: int, vendor: str, plu: str, **fields: object) -> Reading:
        return reading(
            batch(
                msg_id=minutes + 1_000,
                ts=at(minutes=minutes),
                trace_code=code,
                vendor=vendor,
                plu=plu,
                **fields,
            ),  # type: ignore[arg-type]
            "in-01",
        )

    @staticmethod
    def sold(code: str, msg_id: int, minutes: int, weight_g: int, vendor: str, plu: str) -> Reading:
        message = sale(
            msg_id=msg_id,
            ts=at(minutes=minutes),
            vendor=vendor,
            plu=plu,
            weight_g=weight_g,
            trace_code=code,
        )
        return reading(message, f"sc-{vendor}")

    def write_history(self, store: Store) -> None:
        intake, sold = self.intake, self.sold
        write_ok(
            store,
            [
                intake("TC-E", -180, "v001", "1001"),  # before the range
                intake("TC-A", -90, "v001", "1001", quantity_g=10_000),
                intake("TC-B", -80, "v001", "1001"),
                intake("TC-C", -60, "v001", "1002", quantity_g=2_000),
                intake("TC-D", -40, "v002", "1001", passed=False, inhibition_pct=Decimal("61.0")),
                intake("TC-F", -20, "v003", "1003"),  # nothing sold yet
                reading(
                    batch(msg_id=1, ts=at(minutes=-90), trace_code="TC-A"),
                    "in-01",
                    market=OTHER_MARKET,
                ),
                sold("TC-E", 1, -170, 9_000, "v001", "1001"),
                sold("TC-A", 2, 10, 1_000, "v001", "1001"),
                sold("TC-A", 3, 20, 2_000, "v001", "1001"),
                sold("TC-A", 4, 30, 500, "v001", "1001"),
                sold("TC-B", 5, 50, 400, "v001", "1001"),
                sold("TC-C", 6, 5, 1_500, "v001", "1002"),
                sold("TC-C", 7, 15, 1_200, "v001", "1002"),
                sold("TC-D", 1, 40, 800, "v002", "1001"),
                reading(
                    sale(msg_id=1, ts=at(minutes=10), trace_code="TC-A", weight_g=5_000),
                    "sc-v001",
                    market=OTHER_MARKET,
                ),
            ],
        )
        # Redeliveries: identical (twice in one write); then a "correction" and one
        # that names another batch: msg_ids reused with other content, refused.
        write_ok(
            store,
            [
                sold("TC-A", 2, 10, 1_000, "v001", "1001"),
                sold("TC-A", 3, 20, 2_000, "v001", "1001"),
                sold("TC-A", 3, 20, 2_000, "v001", "1001"),
            ],
        )
        refused = store.write(
            [sold("TC-A", 4, 30, 700, "v001", "1001"), sold("TC-A", 5, 50, 400, "v001", "1001")]
        )
        assert [letter.reason for letter in refused] == [REUSED_MSG_ID, REUSED_MSG_ID]

    def test_sales_so_far_of_each_batch_in_the_range(self, store: Store) -> None:
        self.write_history(store)
        nothing_sold = {"sales": 0, "sold_g": 0, "last_sale": None}

        rows = store.batch_balances(MARKET, self.START, self.END)

        assert rows == [
            BatchBalanceRow(
                MARKET,
                "TC-A",
                "v001",
                "1001",
                at(minutes=-90),
                10_000,
                True,
                sales=3,
                sold_g=1_000 + 2_000 + 500,
                last_sale=at(minutes=30),
            ),
            BatchBalanceRow(
                MARKET,
                "TC-B",
                "v001",
                "1001",
                at(minutes=-80),
                250_000,
                True,
                sales=1,
                sold_g=400,
                last_sale=at(minutes=50),
            ),
            BatchBalanceRow(
                MARKET,
                "TC-C",
                "v001",
                "1002",
                at(minutes=-60),
                2_000,
                True,
                sales=2,
                sold_g=2_700,
                last_sale=at(minutes=15),
            ),
            BatchBalanceRow(
                MARKET,
                "TC-D",
                "v002",
                "1001",
                at(minutes=-40),
                250_000,
                False,
                sales=1,
                sold_g=800,
                last_sale=at(minutes=40),
            ),
            BatchBalanceRow(
                MARKET, "TC-F", "v003", "1003", at(minutes=-20), 250_000, True, **nothing_sold
            ),  # type: ignore[arg-type]
        ]
        assert [row.trace_code for row in rows if row.oversold] == ["TC-C"]
        assert [row.trace_code for row in rows if not row.rapid_test_passed] == ["TC-D"]

    def test_equals_the_generic_version(self, store: Store) -> None:
        self.write_history(store)
        for start, end in [(self.START, self.END), (at(hours=-4), at(minutes=-60)), (T0, DAY_END)]:
            assert store.batch_balances(MARKET, start, end) == Store.batch_balances(
                store, MARKET, start, end
            )
        assert store.batch_balances(OTHER_MARKET, self.START, self.END) == Store.batch_balances(
            store, OTHER_MARKET, self.START, self.END
        )

    def test_no_batches(self, store: Store) -> None:
        write_ok(store, [self.sold("TC-A", 1, 10, 1_000, "v001", "1001")])
        assert store.batch_balances(MARKET, self.START, self.END) == []


class TestFootfall:
    def test_gate_counts_in_range_per_gate_and_time(self, store: Store) -> None:
        start, end = at(hours=1), at(hours=2)
        write_ok(
            store,
            [
                reading(
                    gate_count(msg_id=1, ts=start - timedelta(milliseconds=1), in_total=1),
                    "g-north",
                ),
                reading(gate_count(msg_id=2, ts=start, in_total=2, out_total=1), "g-south"),
                reading(
                    gate_count(msg_id=3, ts=at(hours=1, minutes=1), in_total=3, out_total=2),
                    "g-north",
                ),
                reading(
                    gate_count(msg_id=4, ts=at(hours=1, minutes=2), in_total=4, out_total=3),
                    "g-south",
                ),
                reading(gate_count(msg_id=5, ts=end, in_total=5), "g-north"),
                reading(gate_count(msg_id=6, ts=start, in_total=6), "g-north", market=OTHER_MARKET),
            ],
        )

        assert store.gate_counts(MARKET, start, end) == [
            GateCountRow(MARKET, "g-north", at(hours=1, minutes=1), 3, 2),
            GateCountRow(MARKET, "g-south", start, 2, 1),
            GateCountRow(MARKET, "g-south", at(hours=1, minutes=2), 4, 3),
        ]

    def test_gate_counts_before_is_the_last_reading_strictly_before(self, store: Store) -> None:
        moment = at(hours=1)
        write_ok(
            store,
            [
                reading(
                    gate_count(msg_id=1, ts=at(minutes=50), in_total=10, out_total=1), "g-north"
                ),
                reading(
                    gate_count(
                        msg_id=2, ts=moment - timedelta(milliseconds=1), in_total=11, out_total=2
                    ),
                    "g-north",
                ),
                reading(gate_count(msg_id=3, ts=moment, in_total=12, out_total=3), "g-north"),
                reading(
                    gate_count(msg_id=4, ts=at(minutes=10), in_total=20, out_total=5), "g-south"
                ),
                reading(gate_count(msg_id=5, ts=at(hours=2), in_total=30), "g-east"),
                reading(
                    gate_count(msg_id=6, ts=at(minutes=55), in_total=99),
                    "g-north",
                    market=OTHER_MARKET,
                ),
            ],
        )

        assert store.gate_counts_before(MARKET, moment) == [
            GateCountRow(MARKET, "g-north", moment - timedelta(milliseconds=1), 11, 2),
            GateCountRow(MARKET, "g-south", at(minutes=10), 20, 5),
        ]

    def test_footfall_hourly_with_baseline_and_counter_reset(self, store: Store) -> None:
        start, end = T0, at(hours=3)  # 08:00–11:00 Asia/Shanghai
        write_ok(
            store,
            [
                reading(
                    gate_count(msg_id=1, ts=at(minutes=-10), in_total=100, out_total=90), "g-north"
                ),
                reading(
                    gate_count(msg_id=2, ts=at(minutes=10), in_total=110, out_total=95), "g-north"
                ),
                reading(
                    gate_count(msg_id=3, ts=at(minutes=40), in_total=130, out_total=100), "g-north"
                ),
                # power cycle: the counter restarted and counted 7 in, 3 out since
                reading(
                    gate_count(msg_id=4, ts=at(hours=1, minutes=20), in_total=7, out_total=3),
                    "g-north",
                ),
                reading(
                    gate_count(msg_id=5, ts=at(hours=2, minutes=5), in_total=20, out_total=10),
                    "g-north",
                ),
                reading(gate_count(msg_id=6, ts=end, in_total=500, out_total=500), "g-north"),
                # no baseline: the first reading only sets the level
                reading(
                    gate_count(msg_id=7, ts=at(minutes=30), in_total=50, out_total=40), "g-south"
                ),
                reading(
                    gate_count(msg_id=8, ts=at(hours=1, minutes=30), in_total=58, out_total=41),
                    "g-south",
                ),
            ],
        )

        rows = store.footfall_hourly(MARKET, start, end)

        def hour(h: int) -> datetime:
            return datetime(2025, 5, 12, h, 0, tzinfo=SHANGHAI)

        assert rows == [
            FootfallRow(MARKET, "g-north", hour(8), 30, 10),
            FootfallRow(MARKET, "g-north", hour(9), 7, 3),
            FootfallRow(MARKET, "g-north", hour(10), 13, 7),
            FootfallRow(MARKET, "g-south", hour(8), 0, 0),
            FootfallRow(MARKET, "g-south", hour(9), 8, 1),
        ]
        assert [row.hour.utcoffset() for row in rows] == [timedelta(hours=8)] * 5


class TestScaleStatus:
    def test_latest_status_per_scale_with_last_will(self, store: Store) -> None:
        will_received = at(hours=3, ms=250)
        write_ok(
            store,
            [
                reading(status(msg_id=1, ts=at(hours=1), seal_intact=True), "sc-001"),
                reading(status(msg_id=2, ts=at(hours=2), seal_intact=False), "sc-001"),
                reading(status(msg_id=1, ts=at(hours=2)), "sc-002"),
                # The will was composed at connect time, hours before the heartbeat above.
                reading(
                    status(msg_id=0, ts=at(hours=-5), online=False, will=True),
                    "sc-002",
                    received=will_received,
                ),
                reading(
                    status(msg_id=0, ts=at(hours=-5), online=False, will=True),
                    "sc-003",
                    received=at(hours=1),
                ),
                reading(status(msg_id=1, ts=at(hours=2), online=True), "sc-003"),
                reading(status(msg_id=9, ts=at(hours=4)), "sc-009", market=OTHER_MARKET),
            ],
        )

        assert store.scale_status(MARKET) == [
            ScaleStatusRow(MARKET, "sc-001", at(hours=2), True, False, None, False, None),
            ScaleStatusRow(MARKET, "sc-002", will_received, False, True, None, None, None),
            ScaleStatusRow(MARKET, "sc-003", at(hours=2), True, False, None, None, None),
        ]

    def test_no_status(self, store: Store) -> None:
        assert store.scale_status(MARKET) == []


class TestDeadLetters:
    def test_raw_bytes_and_every_field_round_trip(self, store: Store) -> None:
        letters = [
            dead_letter(
                received=at(ms=1),
                payload=b'\xff\xfe\x00\x80{"v": 1}\\,= "\xe6\x9d',
                reason="not JSON",
            ),
            dead_letter(received=at(ms=2), payload=b"", reason="empty payload"),
            dead_letter(
                received=at(ms=3),
                payload=b"x" * 1024,
                payload_size=300_000,
                reason="payload too large",
            ),
            DeadLetter(
                received_ns=to_ns(at(ms=4)) + 5,
                topic='markets/北门 x/scales/"a",b=c\\/sale',
                payload=b"{}",
                reason='topic "markets/北门 x/…" does not match, a=b \\',
            ),
        ]
        write_ok(store, [], letters)

        stored = store.dead_letters(T0, DAY_END)

        assert stored == letters[::-1]
        assert (stored[0].market, stored[0].device) == (UNREGISTERED, UNREGISTERED)
        assert stored[1].payload_size == 300_000

    def test_newest_first_with_limit_market_and_half_open_range(self, store: Store) -> None:
        start, end = at(hours=1), at(hours=2)
        before = dead_letter(received=start - timedelta(microseconds=1), reason="before")
        first = dead_letter(received=start, reason="first")
        other = dead_letter(
            received=at(hours=1, minutes=30), market=OTHER_MARKET, device="sc-900", reason="other"
        )
        last = dead_letter(received=end - timedelta(microseconds=1), reason="last")
        after = dead_letter(received=end, reason="after")
        write_ok(store, [], [last, before, after, first, other])

        assert store.dead_letters(start, end) == [last, other, first]
        assert store.dead_letters(start, end, limit=2) == [last, other]
        assert store.dead_letters(start, end, market=MARKET) == [last, first]
        assert store.dead_letters(start, end, market=OTHER_MARKET) == [other]

    def test_identical_dead_letters_both_survive(self, store: Store) -> None:
        letter = dead_letter(received=at(ms=1))
        write_ok(store, [], [letter, letter])
        assert store.dead_letters(T0, DAY_END) == [letter, letter]

    def test_a_batch_written_again_stores_its_dead_letters_once(self, store: Store) -> None:
        # The forwarder writes a batch again when it died before trimming its spool.
        letters = [
            dead_letter(received=at(ms=1), reason="first"),
            dead_letter(received=at(ms=1), reason="first"),  # identical, also its own
            dead_letter(received=at(ms=2), reason="second"),
        ]
        write_ok(store, [], letters)
        write_ok(store, [], letters)

        assert store.dead_letters(T0, DAY_END) == letters[::-1]
        assert store.reject_counts(T0, DAY_END) == {(MARKET, "sc-001"): 3}

    def test_reject_counts_per_market_and_device(self, store: Store) -> None:
        write_ok(
            store,
            [],
            [
                dead_letter(received=at(minutes=1), device="sc-001"),
                dead_letter(received=at(minutes=2), device="sc-001"),
                dead_letter(received=at(minutes=3), device="g-north"),
                dead_letter(received=at(minutes=4), market=UNREGISTERED, device=UNREGISTERED),
                dead_letter(received=at(hours=2), device="sc-001"),
            ],
        )

        assert store.reject_counts(T0, at(hours=1)) == {
            (MARKET, "sc-001"): 2,
            (MARKET, "g-north"): 1,
            (UNREGISTERED, UNREGISTERED): 1,
        }
        assert store.reject_counts(at(hours=3), at(hours=4)) == {}


class TestPricesBefore:
    def test_the_last_price_of_each_series_strictly_before_the_moment(self, store: Store) -> None:
        moment = at(hours=2)
        promo = promotion(price_fen_per_kg=900, until=at(hours=5))
        write_ok(
            store,
            [
                reading(price(msg_id=1, ts=at(hours=0), price_fen_per_kg=1_000), "scr-001"),
                reading(
                    price(
                        msg_id=2,
                        ts=moment - timedelta(milliseconds=1),
                        price_fen_per_kg=1_100,
                        promo=promo,
                    ),
                    "scr-001",
                ),
                reading(price(msg_id=3, ts=moment, price_fen_per_kg=1_200), "scr-001"),
                reading(price(msg_id=4, ts=at(hours=1), plu="1002"), "scr-001"),
                reading(price(msg_id=1, ts=at(hours=-30), vendor="v002"), "scr-201"),
                reading(price(msg_id=2, ts=at(hours=3), vendor="v003"), "scr-301"),
                reading(price(msg_id=9, ts=at(hours=1)), "scr-001", market=OTHER_MARKET),
            ],
        )

        rows = store.prices_before(MARKET, moment)

        assert [(r.vendor, r.plu, r.price_fen_per_kg, r.msg_id) for r in rows] == [
            ("v001", "1001", 1_100, 2),
            ("v001", "1002", 1_160, 4),
            ("v002", "1001", 1_160, 1),
        ]
        assert rows[0].promo == PromotionRow(900, "限时特价", at(hours=5))
        assert rows[0].ts == moment - timedelta(milliseconds=1)
        assert [(r.vendor, r.plu) for r in store.prices_before(MARKET, moment, plu="1002")] == [
            ("v001", "1002")
        ]
        assert store.prices_before(MARKET, at(hours=-31)) == []


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


#: Ranges on and off hour boundaries (T0 is a UTC hour), within one hour and across several.
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
        [letter] = store.write([reading(sale(msg_id=5, ts=at(minutes=5), weight_g=300), "sc-001")])

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


def gate_history() -> list[list[Reading]]:
    """Two gates' counters over five hours, in write batches that arrive out of order.

    g-north resets twice and has a gap; one reading is replayed, and one is
    sent again with "corrected" counts, which the store refuses (its msg_id is
    used: ``storage.msgids``; see :func:`write_gate_history`); g-south starts late.
    """
    north = [(-20, 50, 40), (5, 60, 41), (50, 75, 50), (70, 3, 1), (95, 10, 4), (130, 30, 9)]
    north += [(185, 31, 12), (200, 2, 0), (230, 9, 5), (290, 12, 7)]
    south = [(100, 500, 400), (101, 499, 401), (160, 530, 420), (245, 600, 480)]

    def counts(gate: str, rows: list[tuple[int, int, int]], first_id: int) -> list[Reading]:
        return [
            reading(
                gate_count(msg_id=first_id + i, ts=at(minutes=m), in_total=i_, out_total=o), gate
            )
            for i, (m, i_, o) in enumerate(rows)
        ]

    north_readings, south_readings = counts("g-north", north, 1), counts("g-south", south, 1)
    corrected = reading(
        gate_count(msg_id=5, ts=at(minutes=95), in_total=12, out_total=4), "g-north"
    )
    return [
        north_readings[5:],
        south_readings[2:],
        [*north_readings[:2], north_readings[7]],
        north_readings[2:5],
        south_readings[:2],
        [corrected, north_readings[1]],
    ]


def write_gate_history(store: Store) -> None:
    refused = [letter for batch_ in gate_history() for letter in store.write(batch_)]
    assert [(letter.device, letter.reason) for letter in refused] == [("g-north", REUSED_MSG_ID)]


class TestFootfallOverHours:
    @pytest.mark.parametrize(
        "zone", [SHANGHAI, UTC, ZoneInfo("Asia/Kolkata"), ZoneInfo("America/New_York")]
    )
    @pytest.mark.parametrize(
        ("start", "end"),
        [
            (T0, at(hours=5)),
            (at(hours=-1), at(hours=6)),
            (at(minutes=30), at(hours=4, minutes=10)),
            (at(hours=1), at(hours=1, minutes=40)),
            (at(minutes=1), at(hours=3, minutes=50)),
        ],
    )
    def test_equals_the_computation_from_raw_counts(
        self, store: Store, zone: ZoneInfo, start: datetime, end: datetime
    ) -> None:
        write_gate_history(store)
        start, end = start.astimezone(zone), end.astimezone(zone)

        expected = hourly_footfall(
            MARKET,
            store.gate_counts_before(MARKET, start),
            store.gate_counts(MARKET, start, end),
            start,
            end,
        )

        rows = store.footfall_hourly(MARKET, start, end)
        assert rows == expected
        assert [row.hour.utcoffset() for row in rows] == [row.hour.utcoffset() for row in expected]

    def test_replayed_readings_and_a_refused_correction(self, store: Store) -> None:
        write_gate_history(store)

        rows = store.footfall_hourly(MARKET, T0, at(hours=2))

        def hour(h: int) -> datetime:
            return datetime(2025, 5, 12, h, 0, tzinfo=SHANGHAI)

        # 08:05 +10; 08:50 +15; 09:10 reset +3; 09:35 +7 (its "correction" to 12 was
        # refused); south's first reading at 09:40 only sets the level, 09:41 goes
        # down: a reset, +499.
        assert rows == [
            FootfallRow(MARKET, "g-north", hour(8), 25, 10),
            FootfallRow(MARKET, "g-north", hour(9), 3 + 7, 1 + 3),
            FootfallRow(MARKET, "g-south", hour(9), 499, 1),
        ]


class TestDeviceLastSeen:
    def test_newest_reading_of_each_device_since_the_moment(self, store: Store) -> None:
        since = at(hours=1)
        write_ok(
            store,
            [
                reading(sale(msg_id=1, ts=at(hours=1, minutes=5)), "sc-001"),
                reading(status(msg_id=2, ts=at(hours=1, minutes=20)), "sc-001"),
                reading(sale(msg_id=3, ts=at(hours=1, minutes=10)), "sc-001"),
                reading(sale(msg_id=1, ts=at(hours=1, minutes=30), vendor="v002"), "sc-201"),
                reading(status(msg_id=0, ts=at(minutes=59)), "sc-201"),
                # A will says the broker lost the scale: not a sign of life.
                reading(
                    status(msg_id=0, ts=at(hours=-5), online=False, will=True),
                    "sc-002",
                    received=at(hours=2),
                ),
                reading(gate_count(msg_id=1, ts=at(hours=1, minutes=1)), "g-north"),
                reading(gate_count(msg_id=2, ts=at(hours=1, minutes=2)), "g-north"),
                reading(gate_count(msg_id=1, ts=since - timedelta(milliseconds=1)), "g-south"),
                # scr-002 set a price that scr-001 has since replaced: it still was seen.
                reading(price(msg_id=1, ts=at(hours=1, minutes=3), vendor="v002"), "scr-002"),
                reading(price(msg_id=7, ts=at(hours=1, minutes=4), vendor="v002"), "scr-001"),
                reading(price(msg_id=8, ts=since, plu="1002"), "scr-001"),
                reading(batch(msg_id=1, ts=at(hours=1, minutes=6)), "in-01"),
                reading(sale(msg_id=1, ts=at(hours=1, minutes=40)), "sc-001", market=OTHER_MARKET),
            ],
        )

        assert store.device_last_seen(MARKET, since) == {
            "sc-001": at(hours=1, minutes=20),
            "sc-201": at(hours=1, minutes=30),
            "g-north": at(hours=1, minutes=2),
            "scr-001": at(hours=1, minutes=4),
            "scr-002": at(hours=1, minutes=3),
            "in-01": at(hours=1, minutes=6),
        }
        assert all(
            t.utcoffset() == timedelta(0) for t in store.device_last_seen(MARKET, since).values()
        )
        assert store.device_last_seen(MARKET, at(hours=3)) == {}


class TestMessageCounts:
    def test_readings_per_market_and_device_in_the_range(self, store: Store) -> None:
        start, end = at(hours=1), at(hours=2)
        write_ok(
            store,
            [
                reading(sale(msg_id=1, ts=start), "sc-001"),
                reading(sale(msg_id=2, ts=at(hours=1, minutes=1)), "sc-001"),
                reading(status(msg_id=3, ts=at(hours=1, minutes=2)), "sc-001"),
                reading(sale(msg_id=1, ts=at(hours=1, minutes=3), vendor="v002"), "sc-201"),
                reading(price(msg_id=1, ts=at(hours=1, minutes=4)), "scr-001"),
                reading(price(msg_id=2, ts=at(hours=1, minutes=5), plu="1002"), "scr-001"),
                reading(price(msg_id=1, ts=at(hours=1, minutes=6), vendor="v002"), "scr-201"),
                reading(gate_count(msg_id=1, ts=at(hours=1, minutes=7)), "g-north"),
                reading(batch(msg_id=1, ts=at(hours=1, minutes=8)), "in-01"),
                reading(sale(msg_id=1, ts=at(hours=1, minutes=9)), "sc-001", market=OTHER_MARKET),
                # outside the range
                reading(sale(msg_id=9, ts=start - timedelta(milliseconds=1)), "sc-001"),
                reading(gate_count(msg_id=9, ts=end), "g-north"),
                reading(price(msg_id=9, ts=end), "scr-001"),
                reading(status(msg_id=9, ts=at(hours=3)), "sc-002"),
            ],
        )

        assert store.message_counts(start, end) == {
            (MARKET, "sc-001"): 3,
            (MARKET, "sc-201"): 1,
            (MARKET, "scr-001"): 2,
            (MARKET, "scr-201"): 1,
            (MARKET, "g-north"): 1,
            (MARKET, "in-01"): 1,
            (OTHER_MARKET, "sc-001"): 1,
        }
        assert store.message_counts(at(hours=4), at(hours=5)) == {}

    def test_a_last_will_counts_when_it_arrived(self, store: Store) -> None:
        will = status(msg_id=0, ts=at(hours=-5), online=False, will=True)
        write_ok(store, [reading(will, "sc-001", received=at(hours=1, minutes=30))])

        assert store.message_counts(at(hours=1), at(hours=2)) == {(MARKET, "sc-001"): 1}
        assert store.message_counts(at(hours=-6), at(hours=-4)) == {}

    def test_replays_are_counted_once(self, store: Store) -> None:
        write_ok(store, one_of_each())
        write_ok(store, one_of_each())
        assert store.message_counts(T0, DAY_END) == {
            (MARKET, "sc-001"): 2,
            (MARKET, "scr-001"): 1,
            (MARKET, "in-01"): 1,
            (MARKET, "g-north"): 1,
        }

    def test_empty_store(self, store: Store) -> None:
        assert store.message_counts(T0, DAY_END) == {}


def test_ping(store: Store) -> None:
    store.ping()
