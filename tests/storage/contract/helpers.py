"""What the contract tests of every concern share."""

from __future__ import annotations

from collections.abc import Sequence

from storage.base import Store
from storage.records import DeadLetter, Reading
from tests.storage.factories import (
    at,
    batch,
    gate_count,
    price,
    rapid_test,
    reading,
    sale,
    status,
)

DAY_END = at(hours=24)


def write_ok(
    store: Store, readings: Sequence[Reading], dead_letters: Sequence[DeadLetter] = ()
) -> None:
    assert store.write(readings, dead_letters) == []
    store.settle_rollups()  # the reads of whole hours use the rollups (a no-op on SQLite)


def write_settled(
    store: Store, readings: Sequence[Reading], dead_letters: Sequence[DeadLetter] = ()
) -> list[DeadLetter]:
    """``store.write``, then a settle; returns what the store refused."""
    refused = store.write(readings, dead_letters)
    store.settle_rollups()
    return refused


def one_of_each() -> list[Reading]:
    return [
        reading(sale(), "sc-001"),
        reading(price(), "scr-001"),
        reading(batch(), "in-01"),
        reading(rapid_test(msg_id=2), "in-01"),  # a re-test, from the same station
        reading(gate_count(in_total=5, out_total=2), "g-north"),
        reading(status(msg_id=2), "sc-001"),  # one id sequence per device
    ]
