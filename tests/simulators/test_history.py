"""Fast-forward history into a store, bypassing MQTT."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from schemas.messages import GateCount, Sale, ScaleStatus
from schemas.registry import Market
from simulators import history
from simulators.day import MarketDay
from simulators.history import day_readings, generate_history
from stallwatch.localservices import Influxd
from storage._exceptions import StoreUnavailable
from storage.influx.store import InfluxStore
from storage.records import DeadLetter, Reading, to_ns
from storage.sqlite import SQLiteStore
from tests.simulators.conftest import DAY


class ListSink:
    def __init__(self) -> None:
        self.batches: list[list[Reading]] = []

    def write(
        self, readings: Sequence[Reading], dead_letters: Sequence[DeadLetter] = ()
    ) -> list[DeadLetter]:
        self.batches.append(list(readings))
        return []

    @property
    def readings(self) -> list[Reading]:
        return [reading for batch in self.batches for reading in batch]


def test_history_writes_every_days_messages_in_batches(xiaohe_market: Market) -> None:
    sink = ListSink()
    summary = generate_history(
        xiaohe_market, sink, start_date=DAY, days=3, seed=4, batch_size=1_000
    )
    readings = sink.readings
    assert summary.days == 3
    assert summary.readings == len(readings) == summary.counts.total()
    assert all(len(batch) <= 1_000 for batch in sink.batches)
    days = {reading.message.ts.date() for reading in readings}
    assert days == {DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)}
    assert {r.market for r in readings} == {"xiaohe"}


def test_readings_older_than_their_kind_s_retention_are_not_written(
    xiaohe_market: Market,
) -> None:
    """Heartbeats are kept 30 days, gate counts 90 (defaults): 40 days on, only the first go."""
    everything, kept = ListSink(), ListSink()
    generate_history(xiaohe_market, everything, start_date=DAY, days=2, seed=4)
    as_of = datetime.combine(DAY, time(0), xiaohe_market.tz) + timedelta(days=40)

    summary = generate_history(
        xiaohe_market, kept, start_date=DAY, days=2, seed=4, kept_as_of=as_of
    )

    statuses = [r for r in everything.readings if isinstance(r.message, ScaleStatus)]
    assert statuses
    assert summary.expired == len(statuses)
    assert kept.readings == [r for r in everything.readings if r not in statuses]
    assert summary.readings == len(kept.readings) == summary.counts.total()


def test_history_is_what_the_day_model_publishes(xiaohe_market: Market) -> None:
    sink = ListSink()
    generate_history(xiaohe_market, sink, start_date=DAY, days=1, seed=4)
    published = [(e.device, e.message) for e in MarketDay(xiaohe_market, DAY, seed=4).events()]
    assert [(r.device, r.message) for r in sink.readings] == published


def test_readings_arrive_a_little_after_their_device_time(xiaohe_market: Market) -> None:
    delays_ms = [
        (reading.received_ns - to_ns(reading.message.ts)) / 1e6
        for reading in day_readings(MarketDay(xiaohe_market, DAY, seed=4))
    ]
    assert min(delays_ms) >= 10
    assert max(delays_ms) <= 3_000
    assert 50 < sorted(delays_ms)[len(delays_ms) // 2] < 120


def test_history_can_scale_the_market_first(xiaohe_market: Market) -> None:
    sink = ListSink()
    generate_history(xiaohe_market, sink, start_date=DAY, days=1, seed=4, vendors_scale=20)
    scales = {r.device for r in sink.readings if isinstance(r.message, Sale)}
    assert len(scales) == 20
    assert "XH-S01.2" in scales


class FlakyStore(ListSink):
    """Unavailable once, then fine: the writer retries the same batch."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    def write(
        self, readings: Sequence[Reading], dead_letters: Sequence[DeadLetter] = ()
    ) -> list[DeadLetter]:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("database is locked", retry_after=0.01)
        return super().write(readings, dead_letters)


def test_an_unavailable_store_is_retried(xiaohe_market: Market) -> None:
    store = FlakyStore()
    summary = generate_history(xiaohe_market, store, start_date=DAY, days=1, seed=4)
    assert summary.readings == len(store.readings) > 0


def test_a_store_that_stays_unavailable_fails_the_run(xiaohe_market: Market) -> None:
    store = FlakyStore()
    store.failures = 10
    with pytest.raises(StoreUnavailable):
        generate_history(xiaohe_market, store, start_date=DAY, days=1, seed=4, retries=2)


class SlowToSettle(ListSink):
    """Settles fail (a server too busy to answer in time) the first ``failing`` attempts."""

    def __init__(self, failing: int) -> None:
        super().__init__()
        self.failing = failing
        self.outcomes: list[str] = []

    def settle_rollups(self) -> int:
        if self.failing:
            self.failing -= 1
            self.outcomes.append("unavailable")
            raise StoreUnavailable("InfluxDB /query timed out", retry_after=0.01)
        self.outcomes.append("settled")
        return 0


def test_a_settle_unavailable_through_its_retries_waits_for_the_next(
    xiaohe_market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "SETTLE_EVERY_S", 0.0)  # a settle after every day
    store = SlowToSettle(failing=3)  # the first settle's three attempts
    summary = generate_history(xiaohe_market, store, start_date=DAY, days=2, seed=4, retries=2)
    assert summary.readings == len(store.readings) > 0
    # The first settle gave up after its retries without failing the run; the last one
    # (and the second day's, if it began before the first day's had given up) settled.
    assert store.outcomes[:3] == ["unavailable"] * 3
    assert store.outcomes[3:] in (["settled"], ["settled", "settled"])


def test_a_last_settle_that_stays_unavailable_fails_the_run(
    xiaohe_market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "SETTLE_EVERY_S", 0.0)
    store = SlowToSettle(failing=100)
    with pytest.raises(StoreUnavailable):
        generate_history(xiaohe_market, store, start_date=DAY, days=2, seed=4, retries=2)


class SettlesWhileWritten(ListSink):
    """Its settle returns once a later day's readings arrive (or gives up after 30 s)."""

    def __init__(self) -> None:
        super().__init__()
        self.later_day_written = threading.Event()
        self.settled_during_writes: list[bool] = []
        self._days_seen: set[object] = set()

    def write(
        self, readings: Sequence[Reading], dead_letters: Sequence[DeadLetter] = ()
    ) -> list[DeadLetter]:
        self._days_seen |= {reading.message.ts.date() for reading in readings}
        if len(self._days_seen) > 1:
            self.later_day_written.set()
        return super().write(readings, dead_letters)

    def settle_rollups(self) -> int:
        if not self.settled_during_writes:  # the first settle, after the first day
            self.settled_during_writes.append(self.later_day_written.wait(timeout=30))
        return 0


def test_the_days_go_on_being_written_while_a_settle_waits_for_the_store(
    xiaohe_market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "SETTLE_EVERY_S", 0.0)
    store = SettlesWhileWritten()
    generate_history(xiaohe_market, store, start_date=DAY, days=2, seed=4)
    assert store.settled_during_writes == [True]


def test_history_in_sqlite_answers_domain_queries(xiaohe_market: Market, tmp_path: Path) -> None:
    day = MarketDay(xiaohe_market, DAY, seed=4)
    expected = Counter(type(e.message).__name__ for e in day.events())
    with SQLiteStore(tmp_path / "history.db") as store:
        summary = generate_history(xiaohe_market, store, start_date=DAY, days=1, seed=4)
        assert summary.refused == 0
        start = datetime.combine(DAY, time(0), xiaohe_market.tz)
        end = start + timedelta(days=1)
        sales = store.sales("xiaohe", start, end)
        assert len(sales) == expected["Sale"]
        assert len(store.batches("xiaohe", start, end)) == expected["BatchIntake"]
        first_sale = sales[0]
        assert store.batch("xiaohe", first_sale.trace_code) is not None
        footfall = store.footfall_hourly("xiaohe", start, end)
        gate_counts = [e.message for e in day.events() if isinstance(e.message, GateCount)]
        assert sum(row.people_in for row in footfall) > 0
        assert len(gate_counts) == len(store.gate_counts("xiaohe", start, end))


@pytest.mark.influx
def test_history_into_influxdb_leaves_rollups_equal_to_the_raw_sales(
    xiaohe_market: Market, influx_server: Influxd
) -> None:
    # Settles come every SETTLE_EVERY_S while days are written and once at the end: the
    # reads of whole hours (rollups) must then agree with the raw sales.
    with InfluxStore(influx_server.url, "history_rollups", create_database=True) as store:
        generate_history(xiaohe_market, store, start_date=DAY, days=2, seed=4)
        start = datetime.combine(DAY, time(0), UTC)
        end = start + timedelta(days=3)
        expected: Counter[tuple[datetime, str]] = Counter()
        for row in store.sales(xiaohe_market.id, start, end):
            hour = row.ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            expected[(hour, "transactions")] += 1
            expected[(hour, "turnover_fen")] += row.total_fen
            expected[(hour, "weight_g")] += row.weight_g
        hours = store.sales_by_hour(xiaohe_market.id, start, end)
    assert expected  # two days of a market sell something
    assert (
        Counter(
            {
                (row.hour, name): value
                for row in hours
                for name, value in (
                    ("transactions", row.transactions),
                    ("turnover_fen", row.turnover_fen),
                    ("weight_g", row.weight_g),
                )
            }
        )
        == expected
    )


class RefusesSales(ListSink):
    """A sink that turns every sale into a dead letter, as a store refusing them would."""

    def write(
        self, readings: Sequence[Reading], dead_letters: Sequence[DeadLetter] = ()
    ) -> list[DeadLetter]:
        super().write(readings, dead_letters)
        return [
            DeadLetter(r.received_ns, f"t/{r.device}", b"", "refused")
            for r in readings
            if isinstance(r.message, Sale)
        ]


def test_a_fan_out_writes_the_same_history_to_each_sink_and_counts_a_refusal_once(
    xiaohe_market: Market,
) -> None:
    plain, refusing, also_refusing = ListSink(), RefusesSales(), RefusesSales()
    summary = generate_history(
        xiaohe_market,
        history.FanOut([plain, refusing, also_refusing]),
        start_date=DAY,
        days=1,
        seed=4,
    )
    assert plain.readings == refusing.readings == also_refusing.readings
    sales = sum(isinstance(r.message, Sale) for r in plain.readings)
    assert sales > 0
    assert summary.refused == sales
    assert summary.readings == len(plain.readings) - sales


@pytest.mark.influx
def test_a_fan_out_leaves_sqlite_and_influxdb_answering_alike(
    xiaohe_market: Market, influx_server: Influxd, tmp_path: Path
) -> None:
    with (
        SQLiteStore(tmp_path / "fan.db") as sqlite,
        InfluxStore(influx_server.url, "history_fan_out", create_database=True) as influx,
    ):
        generate_history(
            xiaohe_market, history.FanOut([sqlite, influx]), start_date=DAY, days=2, seed=4
        )
        start = datetime.combine(DAY, time(0), UTC)
        end = start + timedelta(days=3)
        influx_hours = influx.sales_by_hour(xiaohe_market.id, start, end)
        sqlite_hours = sqlite.sales_by_hour(xiaohe_market.id, start, end)
        assert influx_hours  # two days of a market sell something
        assert [(h.hour, h.transactions, h.turnover_fen, h.weight_g) for h in influx_hours] == [
            (h.hour, h.transactions, h.turnover_fen, h.weight_g) for h in sqlite_hours
        ]
