"""The store contract of footfall (``storage.interfaces.footfall.FootfallStore``).

Runs once per backend through the parametrized ``store`` fixture in conftest.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from storage.base import Store
from storage.footfall import hourly_footfall
from storage.interfaces.footfall import FootfallRow, GateCountRow
from storage.msgids import REUSED_MSG_ID
from storage.records import Reading
from tests.storage.contract.helpers import DAY_END, write_ok, write_settled
from tests.storage.factories import (
    MARKET,
    OTHER_MARKET,
    SHANGHAI,
    T0,
    at,
    gate_count,
    reading,
)


class TestRoundTrip:
    def test_gate_count_keeps_large_counters(self, store: Store) -> None:
        write_ok(
            store, [reading(gate_count(ts=at(ms=1), in_total=2**53 - 1, out_total=0), "g-north")]
        )
        assert store.gate_counts(MARKET, T0, DAY_END) == [
            GateCountRow(
                market=MARKET, gate="g-north", ts=at(ms=1), in_total=2**53 - 1, out_total=0
            )
        ]


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
    refused = [letter for batch_ in gate_history() for letter in write_settled(store, batch_)]
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
