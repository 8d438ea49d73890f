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
window now and then (``storage.msgids``).
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ingest.spool import Spool, SpooledMessage, SpoolError
from ingest.validate import Limits, Validator
from storage._exceptions import StoreError, StoreUnavailable
from storage.base import Store
from storage.records import DeadLetter, Reading

log = logging.getLogger(__name__)


@dataclass
class ForwardStats:
    """Running totals since start; read by metrics, written only by the forwarder thread."""

    stored: int = 0
    rejected: int = 0
    rejected_by_device: Counter[tuple[str, str]] = field(default_factory=Counter)
    batches: int = 0
    #: redeliveries skipped because their first delivery was already forwarded
    redeliveries: int = 0


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
class Backoff:
    """Exponential backoff with full jitter, overridden by the server's Retry-After."""

    first: float = 0.5
    cap: float = 30.0

    def delay(self, failures: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap * 4)
        return random.uniform(0, min(self.cap, self.first * 2 ** min(failures, 16)))


class Forwarder:
    def __init__(
        self,
        spool: Spool,
        store: Store,
        validator: Validator,
        *,
        batch_size: int = 5_000,
        backoff: Backoff | None = None,
        on_batch: Callable[[ForwardStats], None] | None = None,
        memory: Memory | None = None,
    ) -> None:
        self._spool = spool
        self._store = store
        self._validator = validator
        self._batch_size = batch_size
        self._backoff = backoff or Backoff()
        self.stats = ForwardStats()
        self._on_batch = on_batch
        self._failures = 0
        self._memory = memory or Memory()
        self._next_forget = time.monotonic()

    def forward_batch(self) -> int:
        """Validate and store the oldest batch; returns how many messages it took.

        Raises :class:`StoreUnavailable` and leaves the batch in the spool.
        """
        batch = self._spool.peek(self._batch_size)
        if not batch:
            return 0
        readings: list[Reading] = []
        dead: list[DeadLetter] = []
        # The spooled rows they came from, to remember the dead-lettered deliveries.
        reading_rows: list[SpooledMessage] = []
        dead_rows: list[SpooledMessage] = []
        check = self._validator.check
        for row in self._first_deliveries(batch):
            result = check(row[1], row[2], row[3])
            if isinstance(result, Reading):
                readings.append(result)
                reading_rows.append(row)
            else:
                dead.append(result)
                dead_rows.append(row)
        refused = self._store.write(readings, dead)
        dead_lettered = [*dead_rows, *_rows_of(refused, readings, reading_rows)]
        self._spool.remove_through(
            batch[-1][0],
            [(delivery_digest(row[1], row[2]), row[3]) for row in dead_lettered],
            forget_before_ns=time.time_ns() - _ns(self._memory.redeliveries),
        )
        self._count(len(readings) - len(refused), [*dead, *refused])
        return len(batch)

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
        """Forward until the spool is empty (tests and shutdown); propagates outages."""
        total = 0
        while taken := self.forward_batch():
            total += taken
        return total

    def run(
        self, stop: threading.Event, wake: threading.Event, *, idle_poll_s: float = 0.2
    ) -> None:
        """Forward until ``stop`` is set; ``wake`` is set whenever new messages are spooled.

        When caught up it waits for ``wake`` at most ``idle_poll_s`` before looking again.
        """
        while not stop.is_set():
            try:
                taken = self.forward_batch()
            except StoreUnavailable as exc:
                self._on_outage(exc)
                stop.wait(self._backoff.delay(self._failures, exc.retry_after))
                continue
            except (StoreError, SpoolError) as exc:
                # write() isolates bad readings itself, so this is the store refusing its own
                # dead letters or the spool failing: keep the batch, say so loudly, retry.
                log.error("cannot forward a batch (%s); it stays in the spool", exc)
                self._failures += 1
                stop.wait(self._backoff.delay(self._failures, None))
                continue
            if self._failures:
                self._on_recovery()
            self._forget_old_msg_ids_when_due()
            if taken < self._batch_size:
                wake.wait(idle_poll_s)  # a partial batch means we are caught up: wait for more
                wake.clear()

    def _forget_old_msg_ids_when_due(self) -> None:
        if time.monotonic() < self._next_forget:
            return
        self._next_forget = time.monotonic() + self._memory.forget_every_s
        before = datetime.now(UTC) - self._memory.msg_ids
        try:
            self._store.forget_msg_ids(before)
        except StoreError as exc:  # StoreUnavailable included: next time, then
            log.warning("cannot forget msg_ids before %s (%s); will try again", before, exc)

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


def _ns(span: timedelta) -> int:
    return span // timedelta(microseconds=1) * 1_000
