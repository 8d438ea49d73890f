"""Pacing market time against a clock."""

from __future__ import annotations

import pytest

from simulators.clock import Pacer, VirtualClock


def test_speed_divides_the_spacing_of_events() -> None:
    clock = VirtualClock(start=100.0)
    pacer = Pacer.start(clock, speed=60, anchor_ms=0)
    pumped: list[float] = []
    pacer.wait_for(3_600_000, pumped.append)  # one market hour later
    assert clock.now() == pytest.approx(160.0)
    assert pumped == [0.0]
    assert pacer.market_ms() == 3_600_000


def test_events_before_the_anchor_are_due_at_once() -> None:
    clock = VirtualClock()
    pacer = Pacer.start(clock, speed=1, anchor_ms=10_000)
    pacer.wait_for(5_000, lambda _: None)
    assert clock.waited == 0


def test_speed_zero_never_waits() -> None:
    clock = VirtualClock()
    pacer = Pacer.start(clock, speed=0, anchor_ms=0)
    pacer.wait_for(86_400_000, lambda _: None)
    assert clock.waited == 0


def test_negative_speed_is_refused() -> None:
    with pytest.raises(ValueError, match="speed"):
        Pacer.start(VirtualClock(), speed=-1, anchor_ms=0)
