"""Moves spooled messages into the store in batches, surviving store outages.

A batch leaves the spool only after the store has taken it, so a crash at any
point means the batch is forwarded again, and point identity makes that
harmless. While the store is down the spool grows on disk; the outage is
logged once and the recovery once, with the backlog size.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ingest.spool import Spool, SpoolError
from ingest.validate import Validator
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
    ) -> None:
        self._spool = spool
        self._store = store
        self._validator = validator
        self._batch_size = batch_size
        self._backoff = backoff or Backoff()
        self.stats = ForwardStats()
        self._on_batch = on_batch
        self._failures = 0

    def forward_batch(self) -> int:
        """Validate and store the oldest batch; returns how many messages it took.

        Raises :class:`StoreUnavailable` and leaves the batch in the spool.
        """
        batch = self._spool.peek(self._batch_size)
        if not batch:
            return 0
        readings: list[Reading] = []
        dead: list[DeadLetter] = []
        check = self._validator.check
        for _seq, topic, payload, received_ns in batch:
            result = check(topic, payload, received_ns)
            if isinstance(result, Reading):
                readings.append(result)
            else:
                dead.append(result)
        refused = self._store.write(readings, dead)
        self._spool.remove_through(batch[-1][0])
        self._count(len(readings) - len(refused), [*dead, *refused])
        return len(batch)

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
            if taken < self._batch_size:
                wake.wait(idle_poll_s)  # a partial batch means we are caught up: wait for more
                wake.clear()

    def _on_outage(self, exc: StoreUnavailable) -> None:
        if self._failures == 0:
            log.warning("store unavailable (%s); keeping messages in the spool", exc)
        else:
            log.debug("store still unavailable: %s", exc)
        self._failures += 1

    def _on_recovery(self) -> None:
        log.info("store resumed, %d pending", self._spool.pending())  # nothing to act on
        self._failures = 0
