"""One log line when the store goes away and one when it is back, however many readers notice.

The web service answers every request during a store outage with a 503, and the
dashboard skips every callback: logging each of them buries the two lines an
operator needs under hundreds of identical ones. Readers report what they see
here instead; the first failure is a WARNING, the rest are DEBUG, and the first
answer after it is one INFO line saying how long it lasted and how many
requests it cost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from storage._exceptions import StoreError, StoreUnavailable


class OutageLog:
    """Tracks whether the store answers, for the readers that share it (thread-safe)."""

    def __init__(
        self,
        log: logging.Logger,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None
        self._failed_requests = 0

    @property
    def in_outage(self) -> bool:
        return self._since is not None

    def failed(self, error: StoreError, where: str) -> None:
        """A reader's store call failed; an outage starts with the first unavailability."""
        if not isinstance(error, StoreUnavailable):
            # A refused query is about that request, not the store: each one is worth a line.
            self._log.error("store error during %s: %s", where, error)
            return
        with self._lock:
            self._failed_requests += 1
            starts = self._since is None
            if starts:
                self._since = self._clock()
        if starts:
            self._log.warning("store unavailable (%s); answering 503 until it is back", error)
        else:
            self._log.debug("store still unavailable during %s: %s", where, error)

    def answered(self) -> None:
        """A reader's store calls succeeded; ends an outage if there was one."""
        if self._since is None:  # the common case, without the lock
            return
        with self._lock:
            since, failed = self._since, self._failed_requests
            self._since, self._failed_requests = None, 0
        if since is not None:
            lasted = self._clock() - since
            self._log.info(
                "store resumed after %.0f s; %d requests were answered 503", lasted, failed
            )
