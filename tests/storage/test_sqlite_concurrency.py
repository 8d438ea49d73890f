"""SQLite store: readers alongside the writer, other processes' locks, and closing."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from storage._exceptions import StoreError, StoreUnavailable
from storage.records import Reading
from storage.sqlite import SQLiteStore
from tests.storage.factories import MARKET, T0, at, dead_letter, reading, sale

BATCHES = 20
BATCH_SIZE = 250
DAY_END = at(hours=24)
JOIN_TIMEOUT = 60


def sales_batch(number: int) -> list[Reading]:
    first = number * BATCH_SIZE
    return [
        reading(sale(msg_id=first + i, ts=at(ms=first + i)), "sc-001") for i in range(BATCH_SIZE)
    ]


def run_in_thread(target: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    def guarded() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 -- handed to the test thread, which re-raises
            errors.append(exc)

    thread = threading.Thread(target=guarded)
    thread.start()
    return thread


def test_readers_see_whole_batches_while_the_writer_writes(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    seen: list[int] = []
    reading_started, done = threading.Event(), threading.Event()
    with SQLiteStore(tmp_path / "store.db") as store:

        def write_all() -> None:
            try:
                assert reading_started.wait(JOIN_TIMEOUT)
                for number in range(BATCHES):
                    assert store.write(sales_batch(number)) == []
            finally:
                done.set()

        def read_until_done() -> None:
            while True:
                finished = done.is_set()  # read once more after the writer finished
                seen.append(len(store.sales(MARKET, T0, DAY_END)))
                reading_started.set()
                if finished:
                    return

        writer = run_in_thread(write_all, errors)
        reader = run_in_thread(read_until_done, errors)
        writer.join(JOIN_TIMEOUT)
        reader.join(JOIN_TIMEOUT)

        assert not errors, errors
        assert (seen[0], seen[-1]) == (0, BATCHES * BATCH_SIZE)
        assert seen == sorted(seen)
        assert {count % BATCH_SIZE for count in seen} == {0}  # never half a transaction
        assert len(store.sales(MARKET, T0, DAY_END)) == BATCHES * BATCH_SIZE


def test_reads_do_not_wait_for_an_open_write_transaction(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with SQLiteStore(path) as store:
        committed = dead_letter(received=at(ms=1), reason="committed")
        assert store.write([], [committed]) == []
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("DELETE FROM dead_letter")

            assert store.dead_letters(T0, DAY_END) == [committed]

            other.execute("COMMIT")
            assert store.dead_letters(T0, DAY_END) == []
        finally:
            other.close()


def test_a_write_lock_held_by_another_process_makes_the_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with SQLiteStore(path, busy_timeout=0.05) as store:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailable, match="locked"):
                store.write([reading(sale(), "sc-001")])
            other.execute("ROLLBACK")
        finally:
            other.close()

        assert store.write([reading(sale(), "sc-001")]) == []
        assert len(store.sales(MARKET, T0, DAY_END)) == 1


def test_many_threads_read_at_once(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    counts: list[int] = []
    with SQLiteStore(tmp_path / "store.db") as store:
        assert store.write(sales_batch(0)) == []
        start_together = threading.Barrier(8)

        def read() -> None:
            start_together.wait(JOIN_TIMEOUT)
            counts.append(len(store.sales(MARKET, T0, DAY_END, vendor="v001")))

        threads = [run_in_thread(read, errors) for _ in range(8)]
        for thread in threads:
            thread.join(JOIN_TIMEOUT)

        assert not errors, errors
        assert counts == [BATCH_SIZE] * 8


def test_a_closed_store_refuses_use_without_claiming_an_outage(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    store.ping()
    store.close()
    store.close()  # closing twice is harmless

    for call in (store.ping, lambda: store.write([reading(sale(), "sc-001")])):
        with pytest.raises(StoreError, match="closed") as caught:
            call()
        assert not isinstance(caught.value, StoreUnavailable)
