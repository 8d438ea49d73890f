"""Moves spooled messages into the store in batches, surviving store outages.

A batch leaves the spool only after the store has taken it, so a crash at any
point means the batch is forwarded again, and point identity makes that
harmless. While the store is down the spool grows on disk; the outage is
logged once and the recovery once, with the backlog size.

A message the broker redelivers (MQTT DUP: ingest died after spooling it but
before its PUBACK) is skipped when its first delivery is earlier in the batch or
was dead-lettered (the spool remembers those): a readings' redelivery would be
harmless, but a dead letter is an event keyed by arrival, and would count twice.
The forwarder also makes the store forget msg_ids older than the device-clock
window now and then (``storage.msgids``), settles the store's rollups
(``Store.settle_rollups``) every :data:`SETTLE_EVERY_S` while it writes and as
soon as a backlog has drained, so reads of whole hours lag the raw points by
about that much at most, and, on a thread of its own, has the store apply each
market's retention (``schemas.retention``) hourly: a first pass over a large
store takes a while, and the batches go on meanwhile (the SQLite store takes
its write lock per chunk of the pass).

A batch the store keeps refusing for a reason other than being unavailable (a
*poison* batch) would block the spool's head for ever. After
``poison_after`` such failures in a row the batch is written in halves, down to
the single readings the store refuses; those are dead-lettered with the store's
error and the rest goes on. A reading counts as poison only if the store took
another reading of the same batch meanwhile: when it took none, the store is
the problem, not the data, and the batch stays in the spool (so does it when
the store refuses even the dead letters). Nothing is dropped without a trace.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from ingest.spool import Spool, SpooledMessage, SpoolError
from ingest.validate import Limits, Validator
from schemas.commands import is_command_topic
from schemas.registry import RegistrySource
from schemas.retention import RetentionPolicy
from storage._exceptions import StoreError, StoreRejected, StoreUnavailable
from storage.backoff import Backoff
from storage.base import Store
from storage.interfaces.retention import RetentionReport
from storage.records import DeadLetter, Reading, span_ns

log = logging.getLogger(__name__)

#: Pauses after an outage or a failed batch: up to 1 s, doubling up to 30 s, full jitter;
#: a store's Retry-After is honoured up to two minutes.
STORE_BACKOFF: Final = Backoff(first=1.0, cap=30.0, retry_after_cap=120.0)
#: Failures in a row of one batch, for a reason other than the store being unavailable,
#: after which it is split to find the readings the store refuses.
POISON_AFTER: Final = 3
#: Seconds between settles of the store's rollups while messages keep coming.
SETTLE_EVERY_S: Final = 10.0


@dataclass
class ForwardStats:
    """Running totals since start; read by metrics, written only by the forwarder thread."""

    stored: int = 0
    rejected: int = 0
    rejected_by_device: Counter[tuple[str, str]] = field(default_factory=Counter)
    batches: int = 0
    #: redeliveries skipped because their first delivery was already forwarded
    redeliveries: int = 0
    #: readings dead-lettered because the store kept refusing them (also in ``rejected``)
    poisoned: int = 0
    #: stallwatch's own commands to devices (``schemas.commands``), passed over: a broker
    #: without stallwatch's access rules sends them to ingest with everything under
    #: ``markets/``; they are not device messages, so neither stored nor dead letters
    commands_skipped: int = 0


@dataclass(frozen=True, slots=True)
class Memory:
    """How long the forwarder's helpers remember what they saw."""

    #: msg_ids in the store's ledger: the device-clock window (older messages are rejected)
    msg_ids: timedelta = Limits().max_age
    #: dead-lettered deliveries in the spool: the MQTT session expiry (no redelivery after it)
    redeliveries: timedelta = timedelta(days=7)
    #: how often the store is asked to forget old msg_ids
    forget_every_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class RetentionSchedule:
    """Each market's retention policy, by market id, and how often the store applies them.

    With ``follow`` (the market database), each pass takes the policies the registry
    has then: a market added or a retention changed since ingest started is kept by
    its own rules.
    """

    policies: Mapping[str, RetentionPolicy] = field(default_factory=dict)
    every_s: float = 3600.0
    follow: RegistrySource | None = None

    def current(self) -> Mapping[str, RetentionPolicy]:
        return self.policies if self.follow is None else self.follow.current().retention()


@dataclass(slots=True)
class _Sorted:
    """A batch after the edge check: readings and dead letters, with the rows they came from."""

    readings: list[Reading] = field(default_factory=list)
    reading_rows: list[SpooledMessage] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    dead_rows: list[SpooledMessage] = field(default_factory=list)


@dataclass(slots=True)
class _Written:
    """What a write of a batch's readings left behind."""

    #: readings the store itself refused and dead-lettered (usually none)
    refused: list[DeadLetter] = field(default_factory=list)
    #: readings the store kept failing on, as dead letters, with their spooled rows
    poisoned: list[tuple[SpooledMessage, DeadLetter]] = field(default_factory=list)


class Forwarder:
    def __init__(
        self,
        spool: Spool,
        store: Store,
        validator: Validator,
        *,
        batch_size: int = 5_000,
        backoff: Backoff = STORE_BACKOFF,
        on_batch: Callable[[ForwardStats], None] | None = None,
        memory: Memory | None = None,
        poison_after: int = POISON_AFTER,
        retention: RetentionSchedule | None = None,
        settle_every_s: float = SETTLE_EVERY_S,
    ) -> None:
        if poison_after < 1:
            raise ValueError(f"poison_after must be at least 1, got {poison_after}")
        self._spool = spool
        self._store = store
        self._validator = validator
        self._batch_size = batch_size
        self._backoff = backoff
        self.stats = ForwardStats()
        self._on_batch = on_batch
        self._failures = 0
        self._memory = memory or Memory()
        self._next_forget = time.monotonic()
        self._poison_after = poison_after
        #: the spool seq of the batch the store refused last, and how many times in a row
        self._refused_head = -1
        self._refusals = 0
        self._retention = retention or RetentionSchedule()
        self._retention_thread: threading.Thread | None = None
        self._settle_every_s = settle_every_s
        self._next_settle = time.monotonic() + settle_every_s
        #: written since the last settle; the last batch was full (a backlog)
        self._unsettled = False
        self._backlog = False
        self._settle_failing = False

    def forward_batch(self) -> int:
        """Validate and store the oldest batch; returns how many messages it took.

        Raises :class:`StoreUnavailable` and leaves the batch in the spool; so
        does any other :class:`StoreError`, until the batch has failed
        ``poison_after`` times in a row and is split instead.
        """
        batch = self._spool.peek(self._batch_size)
        if not batch:
            return 0
        head = batch[0][0]
        ordered = self._sort(batch)
        if self._refused_head == head and self._refusals >= self._poison_after:
            written = self._write_isolating_poison(ordered)
        else:
            written = _Written(self._write_noting_refusals(head, ordered))
        poisoned_rows = [row for row, _ in written.poisoned]
        poisoned = [letter for _, letter in written.poisoned]
        dead_lettered = [
            *ordered.dead_rows,
            *_rows_of(written.refused, ordered.readings, ordered.reading_rows),
            *poisoned_rows,
        ]
        self._spool.remove_through(
            batch[-1][0],
            [(delivery_digest(row[1], row[2]), row[3]) for row in dead_lettered],
            forget_before_ns=time.time_ns() - span_ns(self._memory.redeliveries),
        )
        self._refused_head, self._refusals = -1, 0
        self.stats.poisoned += len(poisoned)
        stored = len(ordered.readings) - len(written.refused) - len(poisoned)
        self._count(stored, [*ordered.dead, *written.refused, *poisoned])
        return len(batch)

    def _sort(self, batch: list[SpooledMessage]) -> _Sorted:
        ordered = _Sorted()
        self._validator.refresh()
        check = self._validator.check
        for row in self._first_deliveries(batch):
            if is_command_topic(row[1]):
                self.stats.commands_skipped += 1
                continue
            result = check(row[1], row[2], row[3])
            if isinstance(result, Reading):
                ordered.readings.append(result)
                ordered.reading_rows.append(row)
            else:
                ordered.dead.append(result)
                ordered.dead_rows.append(row)
        return ordered

    def _write_noting_refusals(self, head: int, ordered: _Sorted) -> list[DeadLetter]:
        """The whole batch in one write, counting failures that are not an outage."""
        try:
            return self._store.write(ordered.readings, ordered.dead)
        except StoreUnavailable:
            raise  # an outage says nothing about the batch
        except StoreError:
            if self._refused_head != head:
                self._refused_head, self._refusals = head, 0
            self._refusals += 1
            raise

    def _write_isolating_poison(self, ordered: _Sorted) -> _Written:
        """Write the readings in halves down to the ones the store fails on, then the letters.

        The halves are always the same, so a batch split again (after an outage or
        a crash) makes the same writes, and a reading written twice with the same
        content is a no-op in the store. The validator's letters and the poisoned
        readings go in one last write, so their identities do not depend on the split.
        """
        written = _Written()
        failed: list[StoreError] = []
        self._write_halves(ordered.readings, ordered.reading_rows, written, failed)
        if failed and len(failed) == len(ordered.readings):
            # The store took none of them: it is failing, not these readings. Whole
            # writes again, which cost one write each, before the next split.
            self._refusals = 0
            raise failed[0]
        letters = [*ordered.dead, *(letter for _, letter in written.poisoned)]
        if letters:
            self._store.write((), letters)
        for row, letter in written.poisoned:
            log.error(
                "dead-lettered the message from %s received at %d: %s",
                row[1],
                row[3],
                letter.reason,
            )
        return written

    def _write_halves(
        self,
        readings: Sequence[Reading],
        rows: Sequence[SpooledMessage],
        written: _Written,
        failed: list[StoreError],
    ) -> None:
        if not readings:
            return
        try:
            written.refused += self._store.write(readings)
            return
        except StoreUnavailable:
            raise
        except StoreError as exc:
            if len(readings) == 1:
                failed.append(exc)
                written.poisoned.append((rows[0], _poison_letter(rows[0], readings[0], exc)))
                return
        middle = len(readings) // 2
        self._write_halves(readings[:middle], rows[:middle], written, failed)
        self._write_halves(readings[middle:], rows[middle:], written, failed)

    def _first_deliveries(self, batch: list[SpooledMessage]) -> list[SpooledMessage]:
        """The batch without redeliveries of a delivery earlier in it or dead-lettered before."""
        if not any(redelivered for *_, redelivered in batch):
            return batch
        digests = [delivery_digest(topic, payload) for _, topic, payload, _, _ in batch]
        dead_lettered = self._spool.dead_lettered(
            digest for digest, row in zip(digests, batch, strict=True) if row[4]
        )
        seen: set[bytes] = set()
        first: list[SpooledMessage] = []
        for digest, row in zip(digests, batch, strict=True):
            if row[4] and (digest in seen or digest in dead_lettered):
                self.stats.redeliveries += 1
                continue
            seen.add(digest)
            first.append(row)
        return first

    def _count(self, stored: int, dead: list[DeadLetter]) -> None:
        self.stats.batches += 1
        self.stats.stored += stored
        self.stats.rejected += len(dead)
        self.stats.rejected_by_device.update((d.market, d.device) for d in dead)
        for letter in dead:
            log.debug("dead letter from %s: %s", letter.topic, letter.reason)
        if self._on_batch is not None:
            self._on_batch(self.stats)

    def drain(self) -> int:
        """Forward until the spool is empty, then settle (tests, shutdown); propagates outages."""
        total = 0
        while taken := self.forward_batch():
            total += taken
        if total:
            self._store.settle_rollups()
        return total

    def run(
        self, stop: threading.Event, wake: threading.Event, *, idle_poll_s: float = 0.2
    ) -> None:
        """Forward until ``stop`` is set; ``wake`` is set whenever new messages are spooled.

        When caught up it waits for ``wake`` at most ``idle_poll_s`` before looking again.
        Retention passes run on a thread of their own until ``stop`` is set.
        """
        self._start_retention(stop)
        while not stop.is_set():
            try:
                taken = self.forward_batch()
                self._settle_when_due(taken)
            except StoreUnavailable as exc:
                self._on_outage(exc)
                stop.wait(self._backoff.delay(self._failures, exc.retry_after))
                continue
            except (StoreError, SpoolError) as exc:
                # write() isolates the readings it refuses itself, so this is the store failing
                # another way (poison is split out after poison_after of these) or the spool
                # failing: keep the batch, say so loudly, retry.
                log.error("cannot forward a batch (%s); it stays in the spool", exc)
                self._failures += 1
                stop.wait(self._backoff.delay(self._failures))
                continue
            if self._failures:
                self._on_recovery()
            self._forget_old_msg_ids_when_due()
            if taken < self._batch_size:
                wake.wait(idle_poll_s)  # a partial batch means we are caught up: wait for more
                wake.clear()

    def _settle_when_due(self, taken: int) -> None:
        """Settle the rollups every ``settle_every_s`` while writing, and once a backlog drained.

        :class:`StoreUnavailable` propagates to the outage handling; another store
        error is logged once (until a settle succeeds) and retried when next due.
        """
        self._unsettled = self._unsettled or taken > 0
        drained = self._backlog and taken < self._batch_size
        self._backlog = taken >= self._batch_size
        now = time.monotonic()
        if not self._unsettled or not (drained or now >= self._next_settle):
            return
        self._next_settle = now + self._settle_every_s
        try:
            self._store.settle_rollups()
        except StoreUnavailable:
            raise
        except StoreError as exc:
            if not self._settle_failing:
                log.error("cannot settle the rollups (%s); reads of whole hours lag", exc)
            self._settle_failing = True
            return
        if self._settle_failing:
            log.info("the rollups settle again")
        self._settle_failing = False
        self._unsettled = False

    def _forget_old_msg_ids_when_due(self) -> None:
        if time.monotonic() < self._next_forget:
            return
        self._next_forget = time.monotonic() + self._memory.forget_every_s
        before = datetime.now(UTC) - self._memory.msg_ids
        try:
            self._store.forget_msg_ids(before)
        except StoreError as exc:  # StoreUnavailable included: next time, then
            log.warning("cannot forget msg_ids before %s (%s); will try again", before, exc)

    def _start_retention(self, stop: threading.Event) -> None:
        running = self._retention_thread is not None and self._retention_thread.is_alive()
        if running or not (self._retention.policies or self._retention.follow):
            return
        self._retention_thread = threading.Thread(
            target=self._retention_loop, args=(stop,), name="retention", daemon=True
        )
        self._retention_thread.start()

    def _retention_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.apply_retention(datetime.now(UTC))
            stop.wait(self._retention.every_s)

    def apply_retention(self, now: datetime) -> RetentionReport | None:
        """One retention pass as of ``now``; ``None`` when the store failed (next time, then)."""
        try:
            report = self._store.apply_retention(now, self._retention.current())
        except StoreError as exc:  # StoreUnavailable included
            log.warning("cannot apply retention as of %s (%s); will try again", now, exc)
            return None
        if report.total:
            removed = ", ".join(
                f"{market} {kind}: {count}"
                for (market, kind), count in sorted(report.removed.items())
                if count
            )
            log.info("retention removed %d rows (%s)", report.total, removed)
        return report

    def _on_outage(self, exc: StoreUnavailable) -> None:
        if self._failures == 0:
            log.warning("store unavailable (%s); keeping messages in the spool", exc)
        else:
            log.debug("store still unavailable: %s", exc)
        self._failures += 1

    def _on_recovery(self) -> None:
        log.info("store resumed, %d pending", self._spool.pending())  # nothing to act on
        self._failures = 0


def delivery_digest(topic: str, payload: bytes) -> bytes:
    """What identifies a delivery across a redelivery: its topic and its bytes."""
    return hashlib.blake2b(topic.encode() + b"\0" + payload, digest_size=16).digest()


def _rows_of(
    refused: Sequence[DeadLetter], readings: Sequence[Reading], rows: Sequence[SpooledMessage]
) -> list[SpooledMessage]:
    """The spooled rows of the readings the store refused (rare: usually none)."""
    if not refused:
        return []
    row_of = {
        (reading.market, reading.device, reading.received_ns): row
        for reading, row in zip(readings, rows, strict=True)
    }
    found = (row_of.get((d.market, d.device, d.received_ns)) for d in refused)
    return [row for row in found if row is not None]


def _poison_letter(row: SpooledMessage, reading: Reading, error: StoreError) -> DeadLetter:
    """The message as it arrived, with the store's error as the reason."""
    reason = str(error)
    if isinstance(error, StoreRejected) and error.detail and error.detail not in reason:
        reason = f"{reason}: {error.detail}"
    return DeadLetter(
        received_ns=row[3],
        topic=row[1],
        payload=row[2],
        reason=f"the store keeps failing on it: {reason}",
        market=reading.market,
        device=reading.device,
    )
