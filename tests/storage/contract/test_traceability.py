"""The store contract of traceability (``storage.interfaces.traceability.TraceabilityStore``).

Batches, the trace status of sales (``storage.traceability``) and a batch's
sales. Runs once per backend through the parametrized ``store`` fixture in
conftest.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from schemas.messages import RapidTestReport, RapidTestResult
from storage.base import Store
from storage.interfaces.traceability import (
    BatchBalanceRow,
    BatchRow,
    RapidTestRow,
    UnverifiedSalesRow,
)
from storage.msgids import REUSED_MSG_ID
from storage.records import Reading, to_ns
from storage.traceability import LATE_BATCH_GRACE, TraceStatus
from tests.storage.contract.helpers import DAY_END, write_ok, write_settled
from tests.storage.factories import (
    MARKET,
    OTHER_MARKET,
    T0,
    at,
    batch,
    rapid_test,
    reading,
    sale,
)

HOSTILE = "Li \"Big\" Wang\\s, a=b 'x' 李记"


class TestRoundTrip:
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


class TestUntestedBatches:
    """A batch taken in without a rapid test (markets test a sample): stored and read back
    as not tested, which is neither passed nor failed."""

    CODE = "SD370782-20250512-009"

    def test_a_batch_not_tested_at_intake_reads_back_without_a_test(self, store: Store) -> None:
        message = batch(
            msg_id=12,
            ts=at(hours=-2, ms=7),
            trace_code=self.CODE,
            supplier=HOSTILE,
            certificate_no='DQ-4111/027, "x"',
            passed=None,
        )
        assert message.rapid_test is None
        received_ns = to_ns(at(hours=-2, ms=900)) + 5
        write_ok(store, [reading(message, "in-01", received_ns=received_ns)])

        expected = BatchRow(
            market=MARKET,
            station="in-01",
            vendor="v001",
            plu="1001",
            trace_code=self.CODE,
            origin="山东寿光",
            supplier=HOSTILE,
            quantity_g=250_000,
            certificate_no='DQ-4111/027, "x"',
            rapid_test_passed=None,
            inhibition_pct=None,
            ts=at(hours=-2, ms=7),
            msg_id=12,
            received_ns=received_ns,
        )
        assert store.batch(MARKET, self.CODE) == expected
        assert store.batches(MARKET, at(hours=-3), T0) == [expected]
        assert store.batches(MARKET, at(hours=-3), T0, vendor="v001") == [expected]
        assert not expected.tested_at_intake

    def test_a_redelivered_untested_batch_is_stored_once(self, store: Store) -> None:
        one = reading(batch(msg_id=12, trace_code=self.CODE, passed=None), "in-01")
        write_ok(store, [one])
        write_ok(store, [one])
        rows = store.batches(MARKET, at(hours=-1), at(hours=1))
        assert [(row.trace_code, row.rapid_test_passed) for row in rows] == [(self.CODE, None)]

    def test_untested_and_tested_batches_side_by_side(self, store: Store) -> None:
        write_ok(
            store,
            [
                reading(batch(msg_id=1, ts=at(minutes=1), trace_code="TC-1", passed=None), "in-01"),
                reading(
                    batch(
                        msg_id=2,
                        ts=at(minutes=2),
                        trace_code="TC-2",
                        passed=False,
                        inhibition_pct=Decimal("55.5"),
                    ),
                    "in-01",
                ),
                reading(batch(msg_id=3, ts=at(minutes=3), trace_code="TC-3"), "in-01"),
            ],
        )
        rows = store.batches(MARKET, T0, at(hours=1))
        assert [(row.trace_code, row.rapid_test_passed, row.inhibition_pct) for row in rows] == [
            ("TC-1", None, None),
            ("TC-2", False, Decimal("55.5")),
            ("TC-3", True, Decimal("12.5")),
        ]


class TestSales:
    """Which sales name a trace code (the rest of ``TestSales`` is in ``test_sales.py``)."""

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
        refused = write_settled(
            store,
            [sold("TC-A", 4, 30, 700, "v001", "1001"), sold("TC-A", 5, 50, 400, "v001", "1001")],
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


class TestBatchAlerts:
    """The balances that need an alert: a failed batch that sold, an oversold one."""

    START, END = TestBatchBalances.START, TestBatchBalances.END

    def write_history(self, store: Store) -> None:
        TestBatchBalances().write_history(store)
        intake, sold = TestBatchBalances.intake, TestBatchBalances.sold
        write_ok(
            store,
            [
                # failed, nothing sold yet: no alert until it sells
                intake("TC-G", -10, "v003", "1004", passed=False, inhibition_pct=Decimal("72.0")),
                # exactly sold out: no alert
                intake("TC-H", -5, "v003", "1005", quantity_g=1_000),
                sold("TC-H", 21, 10, 1_000, "v003", "1005"),
                # another vendor's false claim on a small batch does not oversell it
                sold("TC-H", 22, 11, 5_000, "v001", "1005"),
            ],
        )

    def test_failed_on_sale_and_oversold_batches_only(self, store: Store) -> None:
        self.write_history(store)

        alerts = store.batch_alerts(MARKET, self.START, self.END)

        assert [(row.trace_code, row.failed_on_sale, row.oversold) for row in alerts] == [
            ("TC-C", False, True),
            ("TC-D", True, False),
        ]
        assert alerts == [
            row for row in store.batch_balances(MARKET, self.START, self.END) if row.needs_alert
        ]

    def test_a_failed_batch_becomes_an_alert_when_it_first_sells(self, store: Store) -> None:
        self.write_history(store)
        write_ok(store, [TestBatchBalances.sold("TC-G", 23, 20, 300, "v003", "1004")])

        alerts = store.batch_alerts(MARKET, self.START, self.END)

        assert [row.trace_code for row in alerts] == ["TC-C", "TC-D", "TC-G"]
        (failed,) = [row for row in alerts if row.trace_code == "TC-G"]
        assert (failed.sales, failed.sold_g, failed.last_sale) == (1, 300, at(minutes=20))

    def test_equals_the_generic_version_over_other_ranges_and_markets(self, store: Store) -> None:
        self.write_history(store)
        for market, start, end in [
            (MARKET, at(hours=-4), at(minutes=-50)),
            (MARKET, at(minutes=-45), self.END),
            (MARKET, T0, DAY_END),
            (OTHER_MARKET, self.START, self.END),
        ]:
            assert store.batch_alerts(market, start, end) == Store.batch_alerts(
                store, market, start, end
            )


class TestUntestedBatchBalances:
    """A batch not tested at intake has not failed: it sells without an alert, but an
    oversold one is still an alert."""

    START, END = TestBatchBalances.START, TestBatchBalances.END

    def write_history(self, store: Store) -> None:
        intake, sold = TestBatchBalances.intake, TestBatchBalances.sold
        write_ok(
            store,
            [
                intake("TU-A", -90, "v001", "1001", passed=None),
                intake("TU-B", -80, "v001", "1002", passed=None, quantity_g=1_000),
                intake("TU-C", -70, "v002", "1001", passed=False, inhibition_pct=Decimal("66.0")),
                intake("TU-D", -60, "v002", "1002", passed=None),  # nothing sold yet
                sold("TU-A", 1, 10, 700, "v001", "1001"),
                sold("TU-B", 2, 20, 900, "v001", "1002"),
                sold("TU-B", 3, 30, 400, "v001", "1002"),
                sold("TU-C", 4, 40, 300, "v002", "1001"),
            ],
        )

    def test_balances_say_not_tested(self, store: Store) -> None:
        self.write_history(store)

        rows = store.batch_balances(MARKET, self.START, self.END)

        assert [(row.trace_code, row.rapid_test_passed, row.sales, row.sold_g) for row in rows] == [
            ("TU-A", None, 1, 700),
            ("TU-B", None, 2, 1_300),
            ("TU-C", False, 1, 300),
            ("TU-D", None, 0, 0),
        ]
        assert [row.trace_code for row in rows if row.failed_on_sale] == ["TU-C"]
        assert rows == Store.batch_balances(store, MARKET, self.START, self.END)

    def test_an_untested_batch_on_sale_is_no_alert_unless_oversold(self, store: Store) -> None:
        self.write_history(store)

        alerts = store.batch_alerts(MARKET, self.START, self.END)

        assert [
            (row.trace_code, row.rapid_test_passed, row.failed_on_sale, row.oversold)
            for row in alerts
        ] == [("TU-B", None, False, True), ("TU-C", False, True, False)]
        assert alerts == Store.batch_alerts(store, MARKET, self.START, self.END)


class TestRapidTests:
    """Tests after intake (``RapidTestReport``): kept beside each other, found by batch."""

    CODE = "SD370782-20250512-001"
    START, END = at(hours=-4), DAY_END

    def write_history(self, store: Store) -> list[Reading]:
        """The batch (passed at intake), a spot check that passes, a re-test that fails;
        a report naming the code for another vendor, and one of an unregistered code."""
        written = [
            reading(batch(msg_id=1, ts=at(hours=-3), passed=True), "in-01"),
            reading(rapid_test(msg_id=2, ts=at(hours=-1), inhibition_pct=Decimal("30.0")), "in-01"),
            reading(
                rapid_test(
                    msg_id=3, ts=at(minutes=-30), passed=False, inhibition_pct=Decimal("61.5")
                ),
                "in-02",
            ),
            reading(rapid_test(msg_id=4, ts=at(minutes=-20), vendor="v002"), "in-01"),
            reading(rapid_test(msg_id=5, ts=at(minutes=-10), trace_code="NO-SUCH-BATCH"), "in-01"),
        ]
        write_ok(store, written)
        return written

    @staticmethod
    def row(written: Reading) -> RapidTestRow:
        message = written.message
        assert isinstance(message, RapidTestReport)
        return RapidTestRow(
            market=written.market,
            station=written.device,
            vendor=message.vendor,
            plu=message.plu,
            trace_code=message.trace_code,
            passed=message.rapid_test.result is RapidTestResult.PASS,
            inhibition_pct=message.rapid_test.inhibition_pct,
            ts=message.ts,
            msg_id=message.msg_id,
            received_ns=written.received_ns,
        )

    def test_every_report_of_the_range_is_kept_in_test_time_order(self, store: Store) -> None:
        written = self.write_history(store)

        reports = store.rapid_tests(MARKET, self.START, self.END)

        assert reports == [self.row(one) for one in written[1:]]
        assert store.rapid_tests(MARKET, at(minutes=-30), at(minutes=-10)) == [
            self.row(written[2]),
            self.row(written[3]),
        ]
        assert store.rapid_tests(OTHER_MARKET, self.START, self.END) == []

    def test_a_batch_has_its_own_vendors_reports_in_order_and_a_retest_replaces_none(
        self, store: Store
    ) -> None:
        written = self.write_history(store)

        tests = store.rapid_tests_of_batch(MARKET, self.CODE)

        assert tests == [self.row(written[1]), self.row(written[2])]
        batch_row = store.batch(MARKET, self.CODE)
        assert batch_row is not None
        assert batch_row.rapid_test_passed  # the intake's own test stays as it was

    def test_a_redelivered_report_is_stored_once(self, store: Store) -> None:
        written = self.write_history(store)
        write_ok(store, written[1:3])

        assert store.rapid_tests_of_batch(MARKET, self.CODE) == [
            self.row(written[1]),
            self.row(written[2]),
        ]

    def test_reports_of_an_unregistered_code_belong_to_no_batch(self, store: Store) -> None:
        self.write_history(store)
        assert store.rapid_tests_of_batch(MARKET, "NO-SUCH-BATCH") == []

    def test_reports_from_before_the_batch_grace_window_are_not_its(self, store: Store) -> None:
        self.write_history(store)
        early = at(hours=-3) - LATE_BATCH_GRACE - timedelta(minutes=1)
        write_ok(store, [reading(rapid_test(msg_id=6, ts=early), "in-01")])

        assert [row.msg_id for row in store.rapid_tests_of_batch(MARKET, self.CODE)] == [2, 3]
