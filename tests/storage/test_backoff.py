"""The process's one backoff policy (``storage.backoff``): deterministic, nothing sleeps."""

from __future__ import annotations

import pytest

from ingest.forwarder import STORE_BACKOFF
from ingest.mqtt import RECONNECT_BACKOFF
from storage.backoff import EQUAL_JITTER, FULL_JITTER, NO_JITTER, Backoff
from storage.influx.client import CLIENT_BACKOFF


def always(value: float) -> Backoff:
    """A full-jitter policy whose random source always answers ``value``."""
    return Backoff(first=0.5, cap=4.0, jitter=FULL_JITTER, random=lambda: value)


def test_the_ceiling_doubles_from_first_up_to_the_cap() -> None:
    policy = Backoff(first=0.5, cap=4.0, jitter=NO_JITTER)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_huge_number_of_failures_stays_at_the_cap() -> None:
    assert Backoff(first=0.5, cap=4.0, jitter=NO_JITTER).delay(10**9) == 4.0


def test_no_failure_yet_counts_as_the_first() -> None:
    assert Backoff(first=0.5, cap=4.0, jitter=NO_JITTER).delay(0) == 0.5


def test_full_jitter_draws_anything_up_to_the_ceiling() -> None:
    assert always(0.0).delay(3) == 0.0
    assert always(0.5).delay(3) == 1.0
    assert always(0.75).delay(9) == 3.0


def test_equal_jitter_waits_at_least_half_the_ceiling() -> None:
    low = Backoff(first=0.5, cap=4.0, jitter=EQUAL_JITTER, random=lambda: 0.0)
    high = Backoff(first=0.5, cap=4.0, jitter=EQUAL_JITTER, random=lambda: 1.0)
    assert [low.delay(n) for n in (1, 2, 3)] == [0.25, 0.5, 1.0]
    assert [high.delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]


def test_a_retry_after_replaces_the_computed_pause() -> None:
    assert always(0.0).delay(1, retry_after=7.5) == 7.5
    assert always(0.0).delay(1, retry_after=-3.0) == 0.0  # a clock skewed HTTP-date


def test_a_retry_after_is_cut_to_its_cap_when_there_is_one() -> None:
    capped = Backoff(first=0.5, cap=4.0, retry_after_cap=10.0, random=lambda: 0.0)
    assert capped.delay(1, retry_after=600.0) == 10.0
    assert capped.delay(1, retry_after=2.0) == 2.0


@pytest.mark.parametrize(
    ("first", "cap", "jitter"),
    [(0.0, 1.0, FULL_JITTER), (2.0, 1.0, FULL_JITTER), (0.5, 1.0, 1.5), (0.5, 1.0, -0.1)],
)
def test_nonsense_parameters_are_refused(first: float, cap: float, jitter: float) -> None:
    with pytest.raises(ValueError, match=r"first|jitter"):
        Backoff(first=first, cap=cap, jitter=jitter)


def test_each_user_keeps_the_pauses_it_had() -> None:
    """The three former implementations, as parameters of the one policy."""
    # The forwarder: full jitter under 0.5 s * 2**failures, at most 30 s; Retry-After to 120 s.
    assert (STORE_BACKOFF.jitter, STORE_BACKOFF.retry_after_cap) == (FULL_JITTER, 120.0)
    assert [STORE_BACKOFF.ceiling(n) for n in (1, 2, 5, 6, 7)] == [1.0, 2.0, 16.0, 30.0, 30.0]
    # MQTT reconnects: 0.5 s doubling to 30 s, no jitter.
    assert [RECONNECT_BACKOFF.delay(n) for n in (1, 2, 3, 7, 8)] == [0.5, 1.0, 2.0, 30.0, 30.0]
    # The InfluxDB client's retries inside one write: equal jitter from 0.2 s up to 5 s.
    assert (CLIENT_BACKOFF.first, CLIENT_BACKOFF.cap, CLIENT_BACKOFF.jitter) == (
        0.2,
        5.0,
        EQUAL_JITTER,
    )
