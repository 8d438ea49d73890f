"""Pacing a market day against a clock: real time, faster, or as fast as possible.

The runner asks a :class:`Clock` to let time pass while the network is serviced
(``pump``). :class:`WallClock` really waits; :class:`VirtualClock` only moves its
own time forward, so tests play a whole day at ``speed=60`` in no time and can
still check where the pacing put every message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

Pump = Callable[[float], None]
"""Does network work for at most the given number of seconds."""


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""

    def wait(self, seconds: float, pump: Pump) -> None:
        """Let ``seconds`` pass, calling ``pump`` meanwhile."""


class WallClock:
    def now(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, pump: Pump) -> None:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            pump(remaining)


class VirtualClock:
    """A clock that jumps: waiting takes no real time."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self.waited = 0.0

    def now(self) -> float:
        return self._now

    def wait(self, seconds: float, pump: Pump) -> None:
        if seconds > 0:
            self._now += seconds
            self.waited += seconds
        pump(0.0)


@dataclass(frozen=True, slots=True)
class Pacer:
    """Maps market time (epoch ms) to clock time: ``speed`` market seconds per clock second.

    ``speed == 0`` means as fast as possible. Events at or before ``anchor_ms``
    are due at once (catching up); later ones keep their spacing, divided by speed.
    """

    clock: Clock
    speed: float
    anchor_ms: int
    started: float

    @classmethod
    def start(cls, clock: Clock, speed: float, anchor_ms: int) -> Pacer:
        if speed < 0:
            raise ValueError("speed must be ≥ 0 (0 = as fast as possible)")
        return cls(clock, speed, anchor_ms, clock.now())

    def due(self, at_ms: int) -> float:
        """Clock time at which the event at ``at_ms`` is due."""
        if self.speed == 0 or at_ms <= self.anchor_ms:
            return self.started
        return self.started + (at_ms - self.anchor_ms) / 1000 / self.speed

    def wait_for(self, at_ms: int, pump: Pump) -> None:
        delay = self.due(at_ms) - self.clock.now()
        if delay > 0:
            self.clock.wait(delay, pump)

    def market_ms(self) -> int:
        """The market time the clock stands at now (for Last Wills composed meanwhile)."""
        if self.speed == 0:
            return self.anchor_ms
        return self.anchor_ms + round((self.clock.now() - self.started) * self.speed * 1000)
