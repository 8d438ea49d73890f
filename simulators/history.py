"""Fast-forward: weeks or a year of a market's history, written straight into a store.

``generate_history(market, store, start_date=…, days=365, seed=1)`` runs the
day model for each day and writes the messages as :class:`~storage.records.Reading`
objects in batches (``store.write``), bypassing MQTT and ingest. Each reading's
``received_ns`` is its device time plus a small network delay (median 80 ms),
as ingest would have stamped it. Gate counters keep counting from one day to
the next. Writes are idempotent, so a retried or repeated run overwrites itself.

``kept_as_of=now`` skips the readings older than their kind's retention as of
``now`` (the market's ``[retention]``: heartbeats 30 days, gate counts 90, …):
a store keeping each kind in an InfluxDB retention policy of its own refuses
points beyond the policy (they would come back as dead letters), and any store's
retention pass would delete them. ``summary.expired`` counts them. A year of
history "as of today" so has raw heartbeats and gate counts for their last
weeks only, as a store that has been running a year would.

``vendors_scale=300`` first clones the market to 300 vendors (see
``simulators.scaling``); write the scaled market with ``dump_market_toml`` so
ingest and the API load the same registry.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Final, Protocol, TypeVar

from schemas.messages import (
    BatchIntake,
    DeviceMessage,
    GateCount,
    PriceSet,
    RapidTestReport,
    Sale,
    ScaleStatus,
)
from schemas.registry import Market
from schemas.retention import DataKind, RetentionPolicy
from simulators.config import DayConfig
from simulators.day import MarketDay, market_days
from simulators.randomness import derive_rng
from simulators.scaling import scale_market
from storage._exceptions import StoreUnavailable
from storage.records import DeadLetter, Reading, to_ns

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_NS_PER_MS = 1_000_000
_MEDIAN_DELAY_MS = 80


class ReadingSink(Protocol):
    """Where readings go: any ``storage.base.Store``, or a list-backed sink for measurements."""

    def write(
        self, readings: Sequence[Reading], dead_letters: Sequence[DeadLetter] = ()
    ) -> list[DeadLetter]: ...


class FanOut:
    """Writes each batch to several sinks in turn: the same history in SQLite and InfluxDB,
    made once (making the days is about half of a load's time).

    A reading counts as refused when any sink refused it, once, with the first sink's
    reason. Settling and closing go to each sink that has them.
    """

    def __init__(self, sinks: Sequence[ReadingSink]) -> None:
        self.sinks = tuple(sinks)

    def write(
        self, readings: Sequence[Reading], dead_letters: Sequence[DeadLetter] = ()
    ) -> list[DeadLetter]:
        refused: dict[tuple[int, str], DeadLetter] = {}
        for sink in self.sinks:
            for letter in sink.write(readings, dead_letters):
                refused.setdefault((letter.received_ns, letter.topic), letter)
        return list(refused.values())

    def settle_rollups(self) -> int:
        settled = 0
        for sink in self.sinks:
            settle: Callable[[], int] | None = getattr(sink, "settle_rollups", None)
            if settle is not None:
                settled += settle()
        return settled

    def close(self) -> None:
        for sink in self.sinks:
            close: Callable[[], None] | None = getattr(sink, "close", None)
            if close is not None:
                close()


@dataclass(slots=True)
class HistorySummary:
    market: str
    start: date
    days: int = 0
    readings: int = 0
    refused: int = 0  # readings the store turned into dead letters
    expired: int = 0  # readings older than their kind's retention, not written
    counts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def readings_per_second(self) -> float:
        return self.readings / self.seconds if self.seconds > 0 else 0.0


def day_readings(day: MarketDay) -> Iterator[Reading]:
    """The day's messages as ingest would have stored them."""
    rng = derive_rng(day.seed, day.market.id, day.day.isoformat(), "delivery")
    mu = math.log(_MEDIAN_DELAY_MS)
    for event in day.events():
        delay_ms = min(3_000.0, max(10.0, rng.lognormvariate(mu, 0.6)))
        received_ns = event.at_ms * _NS_PER_MS + round(delay_ms * _NS_PER_MS)
        yield Reading(day.market.id, event.device, received_ns, event.message)


def generate_history(
    market: Market,
    store: ReadingSink,
    *,
    start_date: date,
    days: int,
    seed: int,
    vendors_scale: int | None = None,
    config: DayConfig | None = None,
    batch_size: int = 5_000,
    retries: int = 3,
    on_day: Callable[[date, HistorySummary], None] | None = None,
    until: datetime | None = None,
    kept_as_of: datetime | None = None,
) -> HistorySummary:
    """Write ``days`` market days from ``start_date`` into ``store``; returns what was written.

    With ``until``, what the devices would have sent after it is left out: a store
    "as of now" for a demo or a test whose last day is today. With ``kept_as_of``,
    readings older than their kind's retention then are left out (module docstring).
    """
    if vendors_scale is not None:
        market = scale_market(market, vendors_scale)
    summary = HistorySummary(market.id, start_date)
    started = time.monotonic()
    writer = _BatchWriter(store, batch_size, retries, summary)
    until_ns = None if until is None else to_ns(until)
    cutoffs = None if kept_as_of is None else _cutoffs_ns(market.retention, kept_as_of)
    for day in market_days(market, start_date, days, seed=seed, config=config):
        for reading in day_readings(day):
            if until_ns is not None and reading.received_ns > until_ns:
                continue
            if cutoffs is not None and _expired(reading, cutoffs):
                summary.expired += 1
                continue
            summary.counts[type(reading.message).__name__] += 1
            writer.add(reading)
        writer.flush()
        writer.settle_when_due()
        summary.days += 1
        summary.seconds = time.monotonic() - started
        log.info(
            "%s %s: %d readings so far (%.0f/s)",
            market.id,
            day.day,
            summary.readings,
            summary.readings_per_second,
        )
        if on_day is not None:
            on_day(day.day, summary)
    writer.settle()
    summary.seconds = time.monotonic() - started
    return summary


#: Seconds between settles of the store's rollups while days are written. Each settle
#: reads the marks of the settle slack (5 minutes of wall clock, ``storage.influx.rollups``),
#: which a fast-forward fills with many days: a settle after every day read each mark
#: about 15 times and took half the run at a 300-vendor market.
SETTLE_EVERY_S: Final = 60.0


#: The kind of data each message is kept as (``schemas.retention``).
_KIND_OF_MESSAGE: Final[dict[type[DeviceMessage], DataKind]] = {
    Sale: DataKind.TRACE,
    BatchIntake: DataKind.TRACE,
    RapidTestReport: DataKind.TRACE,
    PriceSet: DataKind.PRICES,
    GateCount: DataKind.GATE_COUNTS,
    ScaleStatus: DataKind.HEARTBEATS,
}


def _cutoffs_ns(policy: RetentionPolicy, now: datetime) -> dict[type[DeviceMessage], int]:
    return {
        kind_type: to_ns(policy.cutoff(kind, now)) for kind_type, kind in _KIND_OF_MESSAGE.items()
    }


def _expired(reading: Reading, cutoffs: dict[type[DeviceMessage], int]) -> bool:
    """Whether the reading's device time is before its kind's cut-off."""
    message = reading.message
    return to_ns(message.ts) < cutoffs[type(message)]


class _BatchWriter:
    def __init__(
        self, store: ReadingSink, size: int, retries: int, summary: HistorySummary
    ) -> None:
        if size < 1:
            raise ValueError("batch_size must be positive")
        self._store, self._size, self._retries, self._summary = store, size, retries, summary
        self._batch: list[Reading] = []
        self._next_settle = time.monotonic() + SETTLE_EVERY_S
        self._settler = ThreadPoolExecutor(1, thread_name_prefix="history-settle")
        self._settling: Future[None] | None = None

    def add(self, reading: Reading) -> None:
        self._batch.append(reading)
        if len(self._batch) >= self._size:
            self.flush()

    def flush(self) -> None:
        if not self._batch:
            return
        refused = self._write_with_retries(self._batch)
        self._summary.readings += len(self._batch) - len(refused)
        self._summary.refused += len(refused)
        self._batch = []

    def settle_when_due(self) -> None:
        """Start a settle in the background when :data:`SETTLE_EVERY_S` have passed since
        the last one began and that one is over.

        A settle mostly waits for the store (InfluxDB sums each marked hour), and the
        days go on being made and written meanwhile: a 300-vendor market's year took
        25 s a day with settles in line, half of it waiting. One settle at a time.

        A store that stays unavailable through the retries only postpones it: the marks
        stay in the store, and the next settle (the last one at the latest, which does
        fail the run) recomputes their buckets. A long load should not die of one slow
        minute of the server.
        """
        if self._settling is not None:
            if not self._settling.done():
                return
            self._finish_background_settle()
        if time.monotonic() >= self._next_settle:
            self._next_settle = time.monotonic() + SETTLE_EVERY_S
            self._settling = self._settler.submit(self._settle_with_retries)

    def _finish_background_settle(self) -> None:
        settling, self._settling = self._settling, None
        if settling is None:
            return
        try:
            settling.result()
        except StoreUnavailable as exc:
            log.warning("settle postponed to the next one: %s", exc)

    def settle(self) -> None:
        """Settle a store's rollups (``Store.settle_rollups``), as at the end of a run, so
        reads of its whole hours are exact; a sink without rollups has nothing to do.
        Waits for a background settle first; this one's failure fails the run."""
        self._finish_background_settle()
        self._settler.shutdown()
        self._settle_with_retries()

    def _settle_with_retries(self) -> None:
        settle: Callable[[], int] | None = getattr(self._store, "settle_rollups", None)
        if settle is not None:
            self._with_retries(settle)

    def _write_with_retries(self, batch: list[Reading]) -> list[DeadLetter]:
        return self._with_retries(lambda: self._store.write(batch))

    def _with_retries(self, call: Callable[[], _T]) -> _T:
        attempt = 0
        while True:
            try:
                return call()
            except StoreUnavailable as exc:  # writes and settles are idempotent: try again
                if attempt >= self._retries:
                    raise
                wait = exc.retry_after or 0.5 * 2**attempt
                attempt += 1
                log.warning("store unavailable (%s); retry %d in %.1fs", exc, attempt, wait)
                time.sleep(wait)
