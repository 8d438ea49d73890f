"""The store contract of devices (``storage.interfaces.devices.DeviceStore``).

Runs once per backend through the parametrized ``store`` fixture in conftest.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from storage.base import Store
from storage.interfaces.devices import ScaleStatusRow
from tests.storage.contract.helpers import DAY_END, one_of_each, write_ok
from tests.storage.factories import (
    LATENCY,
    MARKET,
    OTHER_MARKET,
    T0,
    at,
    batch,
    gate_count,
    price,
    reading,
    sale,
    status,
)


class TestRoundTrip:
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
                received=at(ms=9) + LATENCY,
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


class TestScaleStatus:
    def test_latest_status_per_scale_with_last_will(self, store: Store) -> None:
        will_received = at(hours=3, ms=250)

        def after(hours: int) -> datetime:
            return at(hours=hours) + LATENCY

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
            ScaleStatusRow(MARKET, "sc-001", at(hours=2), True, False, None, False, None, after(2)),
            ScaleStatusRow(
                MARKET, "sc-002", will_received, False, True, None, None, None, will_received
            ),
            ScaleStatusRow(MARKET, "sc-003", at(hours=2), True, False, None, None, None, after(2)),
        ]

    def test_no_status(self, store: Store) -> None:
        assert store.scale_status(MARKET) == []

    def test_a_will_that_arrived_after_a_status_ahead_of_the_clock_is_in_force(
        self, store: Store
    ) -> None:
        # The scale's clock runs 4 minutes ahead (ingest allows up to 5): its last
        # heartbeat is stamped 10:04 but arrived at 10:00; the broker's will for it
        # arrived at 10:01, before the heartbeat's point time. The scale is gone.
        ahead = timedelta(minutes=4)
        heard = at(hours=10)
        will_heard = at(hours=10, minutes=1)
        write_ok(
            store,
            [
                reading(status(msg_id=7, ts=heard + ahead), "sc-001", received=heard),
                reading(
                    status(msg_id=0, ts=at(hours=-5), online=False, will=True),
                    "sc-001",
                    received=will_heard,
                ),
            ],
        )

        [row] = store.scale_status(MARKET)
        assert (row.will, row.online, row.received) == (True, False, will_heard)

    def test_a_status_that_arrived_after_the_will_is_in_force_whatever_its_clock(
        self, store: Store
    ) -> None:
        # The scale came back after its will with a clock 3 minutes slow: its
        # heartbeat's point time is before the will's, but it arrived after it.
        will_heard = at(hours=10)
        back = at(hours=10, minutes=1)
        write_ok(
            store,
            [
                reading(status(msg_id=1, ts=at(hours=9, minutes=50)), "sc-001"),
                reading(
                    status(msg_id=0, ts=at(hours=-5), online=False, will=True),
                    "sc-001",
                    received=will_heard,
                ),
                reading(
                    status(msg_id=2, ts=back - timedelta(minutes=3), seal_intact=False),
                    "sc-001",
                    received=back,
                ),
            ],
        )

        [row] = store.scale_status(MARKET)
        assert (row.will, row.online, row.seal_intact, row.received) == (False, True, False, back)

    def test_of_its_own_statuses_the_newest_by_the_scale_clock_is_in_force(
        self, store: Store
    ) -> None:
        # A backlog replayed after the current heartbeat must not hide a broken seal.
        write_ok(
            store,
            [
                reading(status(msg_id=5, ts=at(hours=10), seal_intact=False), "sc-001"),
                reading(
                    status(msg_id=4, ts=at(hours=9, minutes=59), seal_intact=True),
                    "sc-001",
                    received=at(hours=10, minutes=2),
                ),
            ],
        )

        [row] = store.scale_status(MARKET)
        assert (row.ts, row.seal_intact) == (at(hours=10), False)

    def test_a_will_long_before_the_newest_status_is_not_weighed(self, store: Store) -> None:
        # Two hours of hourly-looking history: only the last hour is read, and the
        # old will (arrived before every later status) is not in force either way.
        write_ok(
            store,
            [
                reading(
                    status(msg_id=0, ts=at(hours=-5), online=False, will=True),
                    "sc-001",
                    received=at(hours=7),
                ),
                *(
                    reading(status(msg_id=n, ts=at(hours=8, minutes=n)), "sc-001")
                    for n in range(1, 74)
                ),
            ],
        )

        [row] = store.scale_status(MARKET)
        assert (row.will, row.online, row.ts) == (
            False,
            True,
            at(hours=8, minutes=73),
        )


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

        # When each newest reading arrived (the factories' readings arrive LATENCY late).
        assert store.device_last_seen(MARKET, since) == {
            "sc-001": at(hours=1, minutes=20) + LATENCY,
            "sc-201": at(hours=1, minutes=30) + LATENCY,
            "g-north": at(hours=1, minutes=2) + LATENCY,
            "scr-001": at(hours=1, minutes=4) + LATENCY,
            "scr-002": at(hours=1, minutes=3) + LATENCY,
            "in-01": at(hours=1, minutes=6) + LATENCY,
        }
        assert all(
            t.utcoffset() == timedelta(0) for t in store.device_last_seen(MARKET, since).values()
        )
        assert store.device_last_seen(MARKET, at(hours=3)) == {}

    def test_times_are_arrival_times_whatever_the_device_clock(self, store: Store) -> None:
        # Presence is on the clock of arrival: a scale whose clock runs 10 minutes ahead
        # and a gate whose clock runs 10 minutes behind are seen when they were heard.
        heard = at(hours=1) + timedelta(microseconds=123_457)
        skew = timedelta(minutes=10)
        write_ok(
            store,
            [
                reading(sale(msg_id=1, ts=at(hours=1) + skew), "sc-001", received=heard),
                reading(status(msg_id=2, ts=at(hours=1) + skew), "sc-001", received=heard),
                reading(gate_count(msg_id=1, ts=at(hours=1) - skew), "g-north", received=heard),
                reading(price(msg_id=1, ts=at(hours=1) - skew), "scr-001", received=heard),
                reading(batch(msg_id=1, ts=at(hours=1) + skew), "in-01", received=heard),
            ],
        )

        assert store.device_last_seen(MARKET, at(minutes=30)) == dict.fromkeys(
            ("g-north", "in-01", "sc-001", "scr-001"), heard
        )
        [row] = store.scale_status(MARKET)
        assert (row.ts, row.received) == (at(hours=1) + skew, heard)


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
        # Without sales: the scales' statuses only.
        assert store.message_counts(start, end, sales=False) == {
            (MARKET, "sc-001"): 1,
            (MARKET, "scr-001"): 2,
            (MARKET, "scr-201"): 1,
            (MARKET, "g-north"): 1,
            (MARKET, "in-01"): 1,
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
            (MARKET, "in-01"): 2,
            (MARKET, "g-north"): 1,
        }

    def test_empty_store(self, store: Store) -> None:
        assert store.message_counts(T0, DAY_END) == {}
