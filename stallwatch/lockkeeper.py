"""Locks a batch that failed its rapid test on its vendor's scales and screens.

The loop, in ``stallwatch serve``:

1. A failed test arrives: an intake whose test failed, or a later report
   (``RapidTestReport``) that failed, as the live view validates it from MQTT
   (:meth:`LockKeeper.observe`), or handed over in-process by the intake form.
2. The keeper records the lock in the market database (``marketdb.locks``; once per
   batch and product however often the failure arrives).
3. It publishes, retained at QoS 1, the new whole state of each of that vendor's scales
   and screens (``schemas.commands.SuspendedBatches``) and waits for the broker's PUBACK.
   A device online gets it at once; one offline gets it when it reconnects.

A manager's unlock (:meth:`LockKeeper.unlock`) records it and publishes the states
without the batch. A publish that fails leaves the lock recorded; :meth:`publish_all`
(at start, and after a failed publish on the next :meth:`tick`) sends every device's
state again: it is the whole state, so sending it twice is harmless.

A failed test that arrived while ``serve`` was down is not seen by the live view;
:meth:`catch_up` locks the failed tests of the last days that have no lock yet. The live
view's session is a clean one, so a test published while it was reconnecting is not seen
either: :meth:`sweep`, every :data:`SWEEP_S` on the keeper's thread, looks for the
failures of the last :data:`SWEEP_WINDOW` that ingest stored and nothing locked.
A lock once lifted is not made again by the test that caused it (the manager
decided); a new failing test locks again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Final, Protocol

from marketdb._exceptions import MarketDatabaseError
from marketdb.locks import BatchLock, Locks, device_commands
from mqttedge.publisher import CommandNotSent
from schemas.commands import SuspensionReason, command_topic
from schemas.messages import BatchIntake, RapidTest, RapidTestReport, RapidTestResult
from schemas.registry import Market
from storage._exceptions import StoreError
from storage.interfaces.traceability import TraceabilityStore
from storage.records import Reading

log = logging.getLogger(__name__)

#: How far back :meth:`LockKeeper.catch_up` looks for failed tests without a lock.
CATCH_UP_WINDOW: Final = timedelta(days=7)
#: Failed tests waiting for the keeper's thread. Failures are rare (a few a day); a
#: full queue means the market database is down, and what is dropped is logged and
#: locked by the next start's catch-up.
QUEUE_SIZE: Final = 1_000
#: Seconds between resends of states that failed to go out.
TICK_S: Final = 5.0
#: Seconds between sweeps for failed tests the live view missed, and how far back they
#: look (a day: one bounded read of the day's batches and reports per market).
SWEEP_S: Final = 60.0
SWEEP_WINDOW: Final = timedelta(days=1)
#: How far an intake desk's clock may run ahead of the keeper's: a lock made this long
#: before a failed test's own time is taken for that test's lock.
TEST_CLOCK_SLACK: Final = timedelta(minutes=5)


def failed_test_in(
    reading: Reading,
) -> tuple[BatchIntake | RapidTestReport, RapidTest] | None:
    """The batch and its failed test, if the reading is an intake or a report that failed."""
    message = reading.message
    if not isinstance(message, BatchIntake | RapidTestReport):
        return None
    test = message.rapid_test
    if test is None or test.result is not RapidTestResult.FAIL:
        return None
    return message, test


#: Told a market's suspended products per vendor, whole, after every change: the live
#: view, for the stall screens (``LiveState.set_suspensions``).
SuspensionsFollower = Callable[[str, Mapping[str, frozenset[str]]], None]


class Publisher(Protocol):
    """Where commands go: ``mqttedge.publisher.RetainedPublisher``. Raises
    :class:`~mqttedge.publisher.CommandNotSent` when the broker did not take one."""

    def publish(self, topic: str, payload: bytes) -> None: ...


class LockKeeper:
    """See the module docstring. Thread-safe: one lock or unlock is published at a time."""

    def __init__(
        self,
        locks: Locks,
        markets: Callable[[], Mapping[str, Market]],
        publisher: Publisher,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self._locks = locks
        self._markets = markets
        self._publisher = publisher
        self._clock = clock
        self._publishing = threading.Lock()
        self._unsent: set[str] = set()  # markets whose last publish failed
        self._followers: list[SuspensionsFollower] = []

    # -- what arrives -----------------------------------------------------------------
    def observe(self, reading: Reading) -> None:
        """A validated reading (the live view calls this for each): a failed test locks."""
        found = failed_test_in(reading)
        if found is not None:
            message, test = found
            batch = (message.trace_code, message.vendor, message.plu)
            self.failed_test(reading.market, *batch, test, message.ts)

    def failed_test(
        self,
        market: str,
        trace_code: str,
        vendor: str,
        plu: str,
        test: RapidTest,
        tested_at: datetime,
    ) -> BatchLock:
        cause = f"rapid test {tested_at.isoformat(timespec='minutes')}: {test.inhibition_pct}%"
        lock, made = self._locks.lock(
            market,
            trace_code,
            vendor,
            plu,
            reason=SuspensionReason.RAPID_TEST_FAILED,
            cause=cause,
        )
        if made:
            log.warning("batch %s (%s, %s) failed its rapid test: locked", trace_code, vendor, plu)
            self._publish_vendor(market, vendor)
        return lock

    def unlock(
        self, market: str, trace_code: str, plu: str, *, actor: str, reason: str
    ) -> BatchLock:
        lifted = self._locks.unlock(market, trace_code, plu, actor=actor, reason=reason)
        log.info("batch %s (%s) unlocked by %s: %s", trace_code, plu, actor, reason)
        self._publish_vendor(market, lifted.vendor)
        return lifted

    def follow(self, follower: SuspensionsFollower) -> None:
        """Tell ``follower`` every market's suspended products now, and after each change."""
        with self._publishing:
            self._followers.append(follower)
            for market in self._markets():
                follower(market, _suspended_products(self._locks.open_locks(market)))

    def locks(self, market: str, *, lifted: bool = False) -> list[BatchLock]:
        """The market's open locks, oldest first; with ``lifted``, every lock it has had."""
        return self._locks.all_locks(market) if lifted else self._locks.open_locks(market)

    def of_batch(self, market: str, trace_code: str) -> list[BatchLock]:
        """Every lock the batch has had, open or lifted, oldest first."""
        return self._locks.of_batch(market, trace_code)

    # -- keeping the devices told -------------------------------------------------------
    def publish_all(self, market: str) -> int:
        """Send every scale's and screen's state; returns how many were sent."""
        return self._publish(market, vendor=None)

    def tick(self) -> None:
        """Publish again what failed to go out (call it every few seconds)."""
        for market in sorted(self._unsent):
            self.publish_all(market)

    def catch_up(
        self, store: TraceabilityStore, market: Market, window: timedelta = CATCH_UP_WINDOW
    ) -> list[BatchLock]:
        """Lock the failed tests of the last ``window`` that have no lock at all (they
        arrived while nothing was watching)."""
        end = self._clock()
        start = end - window
        failed = [
            (b.trace_code, b.vendor, b.plu, b.ts, b.inhibition_pct)
            for b in store.batches(market.id, start, end)
            if b.rapid_test_passed is False and b.inhibition_pct is not None
        ] + [
            (r.trace_code, r.vendor, r.plu, r.ts, r.inhibition_pct)
            for r in store.rapid_tests(market.id, start, end)
            if not r.passed
        ]
        made = []
        for trace_code, vendor, plu, tested_at, pct in failed:
            if self._has_lock_for(market.id, trace_code, plu, tested_at):
                continue  # locked already, or locked for this test and lifted by a manager
            test = RapidTest(result=RapidTestResult.FAIL, inhibition_pct=pct)
            made.append(self.failed_test(market.id, trace_code, vendor, plu, test, tested_at))
        return made

    def start_up(self, store: TraceabilityStore) -> None:
        """At start: lock what failed while nothing watched, then tell every device its
        state (a broker that lost its retained messages gets them back)."""
        for market in self._markets().values():
            try:
                self.catch_up(store, market)
            except StoreError as exc:
                log.warning("missed failures of %s not looked for: %s", market.id, exc)
            self.publish_all(market.id)

    def _has_lock_for(self, market: str, trace_code: str, plu: str, tested_at: datetime) -> bool:
        """Whether the product of the batch is locked now, or was locked for this test
        (a lock made after it, allowing for the desk's clock): a manager's lift stands,
        while a later failed re-test that nothing locked is locked again."""
        for lock in self._locks.of_batch(market, trace_code):
            if lock.plu == plu and (lock.open or lock.locked_at >= tested_at - TEST_CLOCK_SLACK):
                return True
        return False

    def sweep(self, store: TraceabilityStore) -> None:
        """Lock the failures of the last :data:`SWEEP_WINDOW` the live view missed."""
        for market in self._markets().values():
            try:
                for lock in self.catch_up(store, market, SWEEP_WINDOW):
                    log.warning("batch %s: a failed test the live view missed", lock.trace_code)
            except StoreError as exc:
                log.warning("missed failures of %s not looked for: %s", market.id, exc)

    def _publish_vendor(self, market: str, vendor: str) -> None:
        self._publish(market, vendor=vendor)

    def _publish(self, market_id: str, *, vendor: str | None) -> int:
        market = self._markets().get(market_id)
        if market is None:
            return 0
        with self._publishing:
            open_locks = self._locks.open_locks(market_id)
            for follower in self._followers:
                follower(market_id, _suspended_products(open_locks))
            commands = device_commands(
                market,
                open_locks,
                version=self._locks.state_version(market_id),
                now=self._clock(),
            )
            sent = 0
            for (kind, device_id), command in commands.items():
                if vendor is not None and market.devices[device_id].vendor != vendor:
                    continue
                try:
                    self._publisher.publish(
                        command_topic(market_id, kind, device_id),
                        command.model_dump_json().encode(),
                    )
                except CommandNotSent as exc:  # the state stays recorded: the next tick resends
                    log.warning("commands of %s not sent, retrying: %s", market_id, exc)
                    self._unsent.add(market_id)
                    return sent
                sent += 1
            self._unsent.discard(market_id)
            return sent


def _suspended_products(locks: list[BatchLock]) -> dict[str, frozenset[str]]:
    by_vendor: dict[str, set[str]] = {}
    for lock in locks:
        by_vendor.setdefault(lock.vendor, set()).add(lock.plu)
    return {vendor: frozenset(plus) for vendor, plus in by_vendor.items()}


class KeeperThread:
    """Runs a :class:`LockKeeper` on a thread of its own, so the live view's MQTT thread
    only hands over the (rare) failed tests and never waits for the database or a PUBACK.

    Bounded queue; a failed test that finds it full is dropped with a log line (the next
    start's :meth:`LockKeeper.catch_up` locks it).
    """

    def __init__(
        self,
        keeper: LockKeeper,
        *,
        on_start: Callable[[], None] | None = None,
        tick_s: float = TICK_S,
        sweep: Callable[[], None] | None = None,
        sweep_s: float = SWEEP_S,
    ) -> None:
        self.keeper = keeper
        self._on_start = on_start
        self._tick_s = tick_s
        self._sweep = sweep
        self._sweep_s = sweep_s
        self._next_sweep = time.monotonic() + sweep_s
        self._queue: queue.Queue[Reading | None] = queue.Queue(QUEUE_SIZE)
        self._thread = threading.Thread(target=self._run, name="lock-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        try:
            self._queue.put(None, timeout=5)
        except queue.Full:  # the thread is stuck on the database: it is a daemon thread
            log.error("lock keeper did not stop: its queue is full")
            return
        self._thread.join(timeout=30)

    def observe(self, reading: Reading) -> None:
        """Hand over a reading if it is a failed test; anything else costs nothing."""
        found = failed_test_in(reading)
        if found is None:
            return
        try:
            self._queue.put_nowait(reading)
        except queue.Full:
            log.error(
                "lock queue full: batch %s not locked now (catch-up at the next start)",
                found[0].trace_code,
            )

    def _run(self) -> None:
        if self._on_start is not None:
            try:
                self._on_start()
            except MarketDatabaseError as exc:
                log.error("lock states not published at start, the market database failed: %s", exc)
        while True:
            try:
                reading = self._queue.get(timeout=self._tick_s)
            except queue.Empty:
                self._resend()
                continue
            if reading is None:
                return
            try:
                self.keeper.observe(reading)
            except MarketDatabaseError as exc:
                log.error("batch not locked, the market database failed: %s", exc)
            self._resend()

    def _resend(self) -> None:
        try:
            self.keeper.tick()
            if self._sweep is not None and time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + self._sweep_s
                self._sweep()
        except MarketDatabaseError as exc:
            log.warning("lock states not resent, the market database failed: %s", exc)
