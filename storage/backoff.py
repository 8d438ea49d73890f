"""The process's one backoff policy: how long to pause before trying again.

Exponential: the pause's ceiling doubles with each consecutive failure, from
``first`` up to ``cap``. ``jitter`` is the share of the ceiling that is drawn
at random, so that many clients failing together do not retry together:
:data:`FULL_JITTER` waits anything up to the ceiling, :data:`EQUAL_JITTER`
between half and all of it, :data:`NO_JITTER` exactly the ceiling. A server's
``Retry-After`` replaces the computed pause (cut to ``retry_after_cap`` when set).

It lives in ``storage`` because the lowest layer that retries (the InfluxDB
client) is here; ingest, which depends on storage anyway, uses the same type
for the forwarder's waits and the MQTT reconnects. ``random`` is injectable so
tests are deterministic and never sleep.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

FULL_JITTER: Final = 1.0
EQUAL_JITTER: Final = 0.5
NO_JITTER: Final = 0.0
#: Past this many doublings the ceiling is the cap anyway; stops 2**n from growing without end.
_MAX_DOUBLINGS: Final = 32


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with a share of jitter, overridden by a server's ``Retry-After``."""

    #: the pause's ceiling after the first failure, seconds
    first: float = 0.5
    #: the largest ceiling, seconds
    cap: float = 30.0
    #: the share of the ceiling drawn at random, from 0 (none) to 1 (all of it)
    jitter: float = FULL_JITTER
    #: a ``Retry-After`` longer than this is cut to it; ``None`` takes it as it is
    retry_after_cap: float | None = None
    #: a source of numbers in [0, 1)
    random: Callable[[], float] = field(default=_random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.cap:
            raise ValueError(f"need 0 < first <= cap, got first={self.first}, cap={self.cap}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter is a share between 0 and 1, got {self.jitter}")

    def ceiling(self, failures: int) -> float:
        """The longest pause after ``failures`` consecutive failures (the first is 1)."""
        doublings = min(max(failures - 1, 0), _MAX_DOUBLINGS)
        return min(self.cap, self.first * 2.0**doublings)

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to pause after ``failures`` consecutive failures (the first is 1)."""
        if retry_after is not None:
            wait = max(retry_after, 0.0)
            return wait if self.retry_after_cap is None else min(wait, self.retry_after_cap)
        ceiling = self.ceiling(failures)
        fixed = ceiling * (1.0 - self.jitter)
        return fixed + ceiling * self.jitter * self.random()


__all__ = ["EQUAL_JITTER", "FULL_JITTER", "NO_JITTER", "Backoff"]
