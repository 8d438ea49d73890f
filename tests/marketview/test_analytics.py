"""The read core's analytics on hand-made rows: pure, no store, no clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from marketview.analytics import (
    UNKNOWN_CATEGORY,
    Bucket,
    GateTotals,
    HourTotals,
    MedianPoint,
    PricePoint,
    SalesFigures,
    average_ticket_fen,
    batch_balance,
    bucket_starts,
    footfall_frame,
    footfall_per_gate,
    footfall_per_hour,
    footfall_totals,
    market_median,
    occupancy,
    prices_in_force,
    sales_frame,
    sales_per_category,
    sales_per_vendor,
    sales_totals,
    top_products,
    yuan,
)
from storage.interfaces.footfall import FootfallRow
from storage.interfaces.prices import PriceRow
from storage.interfaces.sales import SaleRow, SalesSummaryRow
from storage.traceability import TraceStatus

MARKET = "tm"
SHANGHAI = ZoneInfo("Asia/Shanghai")
CODE = "TM-20261121-A01-0001"
VERIFIED = TraceStatus.VERIFIED


# -- prices in force ------------------------------------------------------------------


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


def setting(vendor: str, moment: datetime, fen: int, msg_id: int = 1) -> PriceRow:
    return PriceRow(MARKET, vendor, "1001", f"P-{vendor}", fen, None, moment, msg_id)


def test_bucket_starts_are_local_days_and_real_hours() -> None:
    assert bucket_starts(date(2026, 11, 1), date(2026, 11, 3), Bucket.DAY, SHANGHAI) == [
        at(1),
        at(2),
        at(3),
    ]
    hours = bucket_starts(date(2026, 11, 1), date(2026, 11, 1), Bucket.HOUR, SHANGHAI)
    assert hours == [at(1, h) for h in range(24)]
    berlin = ZoneInfo("Europe/Berlin")  # 2026-03-29: clocks go from 02:00 to 03:00
    spring = bucket_starts(date(2026, 3, 29), date(2026, 3, 29), Bucket.HOUR, berlin)
    assert len(spring) == 23
    assert [moment.hour for moment in spring[:4]] == [0, 1, 3, 4]
    utc = [moment.astimezone(UTC) for moment in spring]
    assert [b - a for a, b in pairwise(utc)] == [timedelta(hours=1)] * 22
    with pytest.raises(ValueError, match="before"):
        bucket_starts(date(2026, 11, 2), date(2026, 11, 1), Bucket.DAY, SHANGHAI)


def test_prices_in_force_at_each_close_carried_forward() -> None:
    changes = [
        setting("a", at(1, 8), 500),  # before the range: the baseline
        setting("a", at(3, 10), 600),
        setting("b", at(3, 23, 59), 710, msg_id=2),  # same millisecond: the later message wins
        setting("b", at(3, 23, 59), 700),
        setting("c", at(4), 900),  # exactly at the close of 11-03: belongs to 11-04
    ]
    starts = bucket_starts(date(2026, 11, 2), date(2026, 11, 5), Bucket.DAY, SHANGHAI)

    in_force = prices_in_force(changes, starts, until=at(4, 12))

    assert in_force == {
        "a": [PricePoint(at(2), 500), PricePoint(at(3), 600), PricePoint(at(4), 600)],
        "b": [PricePoint(at(3), 710), PricePoint(at(4), 710)],
        "c": [PricePoint(at(4), 900)],
    }
    assert market_median(in_force) == [
        MedianPoint(at(2), 1, 500, Decimal(500), 500),
        MedianPoint(at(3), 2, 600, Decimal("655"), 710),
        MedianPoint(at(4), 3, 600, Decimal(710), 900),
    ]


def test_median_of_an_even_count_is_exact_to_half_a_fen() -> None:
    changes = [setting("a", at(1), 397), setting("b", at(1), 400)]
    in_force = prices_in_force(changes, [at(2)], until=at(3))
    [point] = market_median(in_force)
    assert point.median_fen_per_kg == Decimal("398.5")
    assert isinstance(point.median_fen_per_kg, Decimal)


def test_a_price_changed_within_a_bucket_counts_at_its_close_only() -> None:
    changes = [setting("a", at(2, 9), 500), setting("a", at(2, 17), 450)]
    in_force = prices_in_force(changes, [at(2)], until=at(3))
    assert in_force == {"a": [PricePoint(at(2), 450)]}


def test_no_prices() -> None:
    in_force = prices_in_force([], [at(2), at(3)], until=at(4))
    assert in_force == {}
    assert market_median(in_force) == []


# -- sales ----------------------------------------------------------------------------


def summary(*rows: tuple[str, str, int, int, int]) -> list[SalesSummaryRow]:
    return [SalesSummaryRow(MARKET, *row) for row in rows]


def test_average_ticket_is_rounded_half_up_to_the_fen() -> None:
    assert average_ticket_fen(10, 4) == 3  # 2.5 → 3
    assert average_ticket_fen(14, 4) == 4  # 3.5 → 4
    assert average_ticket_fen(13, 4) == 3  # 3.25 → 3
    assert average_ticket_fen(2, 3) == 1  # 0.67 → 1
    assert average_ticket_fen(10**15 + 1, 2) == 5 * 10**14 + 1  # exact beyond float precision
    assert average_ticket_fen(0, 0) is None


def test_yuan_is_exact() -> None:
    assert [yuan(0), yuan(5), yuan(100), yuan(12_345), yuan(2**62)] == [
        "0.00",
        "0.05",
        "1.00",
        "123.45",
        "46116860184273879.04",
    ]


def test_totals_per_vendor_per_category_and_top_products() -> None:
    frame = sales_frame(
        summary(
            ("V01", "1001", 2, 300, 1_000),
            ("V01", "2001", 1, 101, 10),
            ("V02", "1001", 3, 1_000, 5),
            ("V03", "9999", 1, 1_000, 7),
        )
    )

    assert sales_totals(frame) == SalesFigures("total", 7, 2_401, 1_022, 343, 3)
    assert sales_per_vendor(frame) == [
        SalesFigures("V02", 3, 1_000, 5, 333, 1),
        SalesFigures("V03", 1, 1_000, 7, 1_000, 1),  # ties by id
        SalesFigures("V01", 3, 401, 1_010, 134, 1),
    ]
    assert sales_per_category(frame, {"1001": "vegetables", "2001": "meat"}) == [
        SalesFigures("vegetables", 5, 1_300, 1_005, 260, 2),
        SalesFigures(UNKNOWN_CATEGORY, 1, 1_000, 7, 1_000, 1),
        SalesFigures("meat", 1, 101, 10, 101, 1),
    ]
    assert top_products(frame, 2) == [
        SalesFigures("1001", 5, 1_300, 1_005, 260, 2),
        SalesFigures("9999", 1, 1_000, 7, 1_000, 1),
    ]
    assert [type(f.turnover_fen) for f in sales_per_vendor(frame)] == [int, int, int]


def test_no_sales() -> None:
    frame = sales_frame([])
    assert sales_totals(frame) == SalesFigures("total", 0, 0, 0, None, 0)
    assert sales_per_vendor(frame) == sales_per_category(frame, {}) == top_products(frame, 3) == []
    with pytest.raises(ValueError, match="limit"):
        top_products(frame, 0)


# -- footfall -------------------------------------------------------------------------


def hour(h: int) -> datetime:
    return datetime(2026, 11, 3, h, tzinfo=SHANGHAI)


def test_per_gate_per_hour_and_occupancy() -> None:
    frame = footfall_frame(
        [
            FootfallRow(MARKET, "G-N", hour(7), 10, 2),
            FootfallRow(MARKET, "G-S", hour(7), 5, 1),
            FootfallRow(MARKET, "G-N", hour(8), 3, 9),
            FootfallRow(MARKET, "G-S", hour(9), 0, 4),
        ]
    )

    assert footfall_per_gate(frame) == [GateTotals("G-N", 13, 11), GateTotals("G-S", 5, 5)]
    assert footfall_per_hour(frame) == [
        HourTotals(hour(7), 15, 3, 12),
        HourTotals(hour(8), 3, 9, 6),
        HourTotals(hour(9), 0, 4, 2),
    ]
    assert footfall_totals(frame) == (18, 16)
    assert occupancy(frame) == 2


def test_occupancy_is_not_clamped_so_counter_drift_shows() -> None:
    frame = footfall_frame([FootfallRow(MARKET, "G-N", hour(7), 1, 3)])
    assert footfall_per_hour(frame) == [HourTotals(hour(7), 1, 3, -2)]
    assert occupancy(frame) == -2


def test_no_footfall() -> None:
    frame = footfall_frame([])
    assert footfall_per_gate(frame) == []
    assert footfall_per_hour(frame) == []
    assert occupancy(frame) == 0


# -- traceability ---------------------------------------------------------------------


def test_batch_balance() -> None:
    def sold(*weights: int) -> list[SaleRow]:
        moment = datetime(2026, 11, 21, tzinfo=UTC)
        return [
            SaleRow(MARKET, "S-A01", "V01", "1001", moment, i, w, None, 398, 0, CODE, 0, VERIFIED)
            for i, w in enumerate(weights)
        ]

    exact = batch_balance(3_000, sold(1_000, 2_000))
    assert (exact.sold_g, exact.remaining_g, exact.oversold) == (3_000, 0, False)
    over = batch_balance(3_000, sold(1_000, 2_001))
    assert (over.sold_g, over.remaining_g, over.oversold) == (3_001, -1, True)
    assert batch_balance(500, []).remaining_g == 500
