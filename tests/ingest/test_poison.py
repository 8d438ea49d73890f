"""A batch the store keeps failing on does not block the spool's head (``ingest.forwarder``).

A real SQLite store, made by the test to fail deterministically: a trigger on the
store's own file RAISEs for one msg_id where ``SQLiteStore.write`` does not isolate
the failure (the msg_id ledger), so the whole write fails with ``StoreRejected``
and the forwarder sees it, as it would any deterministic non-outage failure.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.forwarder import Forwarder, delivery_digest
from ingest.spool import ArrivedMessage, Spool
from ingest.validate import Validator
from schemas.registry import Registry, load_market
from storage.backoff import Backoff
from storage.sqlite import SQLiteStore
from tests.ingest.helpers import SALE_TOPIC, running, sale_payload, wait_until, write_market

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
FOREVER = datetime(2100, 1, 1, tzinfo=UTC)
SALES = 20
POISON_MSG_ID = 7
POISON_AFTER = 3
#: Pauses of a millisecond: the test waits on conditions, not on the backoff.
NO_PAUSE = Backoff(first=0.001, cap=0.001)
NOT_JSON = b"not json"

REFUSE_POISON_IN_LEDGER = f"""
CREATE TRIGGER poison BEFORE INSERT ON msg_id_ledger WHEN NEW.msg_id = {POISON_MSG_ID}
BEGIN SELECT RAISE(ABORT, 'the test refuses msg_id {POISON_MSG_ID}'); END
"""
REFUSE_THE_LEDGER = """
CREATE TRIGGER broken BEFORE INSERT ON msg_id_ledger
BEGIN SELECT RAISE(ABORT, 'the test refuses every ledger entry'); END
"""
REFUSE_POISON_LETTERS = """
CREATE TRIGGER no_letters BEFORE INSERT ON dead_letter WHEN NEW.reason LIKE '%keeps failing%'
BEGIN SELECT RAISE(ABORT, 'the test refuses the dead letter'); END
"""


def messages() -> list[ArrivedMessage]:
    """``SALES`` good sales (one of them poison to the store) and one the edge check rejects."""
    now = time.time_ns()
    sales = [(SALE_TOPIC, sale_payload(i), now + i, False) for i in range(SALES)]
    return [*sales, (SALE_TOPIC, NOT_JSON, now + SALES, False)]


def run_sql(path: Path, sql: str) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(sql)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry([load_market(write_market(tmp_path))])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "store.db")
    yield store
    store.close()


@pytest.fixture
def arrived() -> list[ArrivedMessage]:
    return messages()


@pytest.fixture
def spool(tmp_path: Path, arrived: list[ArrivedMessage]) -> Iterator[Spool]:
    receiver = Spool(tmp_path / "spool.db", "receiver")
    receiver.append(arrived)
    receiver.close()
    spool = Spool(tmp_path / "spool.db", "forwarder")
    yield spool
    spool.close()


def forwarder_of(spool: Spool, store: SQLiteStore, registry: Registry) -> Forwarder:
    return Forwarder(
        spool,
        store,
        Validator(registry),
        batch_size=50,
        backoff=NO_PAUSE,
        poison_after=POISON_AFTER,
    )


def failed_batches(caplog: pytest.LogCaptureFixture) -> int:
    return sum("cannot forward a batch" in record.getMessage() for record in caplog.records)


def stored_msg_ids(store: SQLiteStore) -> list[int]:
    return sorted(row.msg_id for row in store.sales("tm", EPOCH, FOREVER, scale="S-A01"))


def assert_all_but_the_poison_stored_once(store: SQLiteStore) -> None:
    good = [i for i in range(SALES) if i != POISON_MSG_ID]
    assert stored_msg_ids(store) == good
    # The rollups count each sale once, however often a half was written.
    (summary,) = store.sales_summary("tm", EPOCH, FOREVER)
    assert summary.sales == len(good)
    assert summary.weight_g == sum(1000 + i % 500 for i in good)


def test_a_reading_the_store_keeps_failing_on_is_dead_lettered_and_the_rest_goes_on(
    registry: Registry, store: SQLiteStore, spool: Spool, arrived: list[ArrivedMessage]
) -> None:
    run_sql(store.path, REFUSE_POISON_IN_LEDGER)
    forwarder = forwarder_of(spool, store, registry)
    with running(forwarder):
        wait_until(lambda: spool.pending() == 0, timeout=30, what="the spool drained")

    assert_all_but_the_poison_stored_once(store)
    _, poison_payload, poison_received_ns, _ = arrived[POISON_MSG_ID]
    letters = {letter.payload: letter for letter in store.dead_letters(EPOCH, FOREVER)}
    assert sorted(letters) == sorted([NOT_JSON, poison_payload])
    poison = letters[poison_payload]  # as it arrived, with the store's error
    assert (poison.topic, poison.received_ns) == (SALE_TOPIC, poison_received_ns)
    assert (poison.market, poison.device) == ("tm", "S-A01")
    assert f"the test refuses msg_id {POISON_MSG_ID}" in poison.reason
    assert store.reject_counts(EPOCH, FOREVER) == {("tm", "S-A01"): 2}
    assert forwarder.stats.poisoned == 1
    assert forwarder.stats.stored == SALES - 1
    # A broker redelivery of the poison is skipped, not dead-lettered twice.
    digest = delivery_digest(SALE_TOPIC, poison_payload)
    assert spool.dead_lettered([digest]) == {digest}


def test_a_poison_that_cannot_even_be_dead_lettered_stays_in_the_spool(
    registry: Registry,
    store: SQLiteStore,
    spool: Spool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="ingest.forwarder")
    run_sql(store.path, REFUSE_POISON_IN_LEDGER)
    run_sql(store.path, REFUSE_POISON_LETTERS)
    with running(forwarder_of(spool, store, registry)):
        # The first failures are whole writes, then each try splits the batch.
        wait_until(lambda: failed_batches(caplog) > POISON_AFTER + 1, what="failed splits")
    assert spool.pending() == SALES + 1
    assert store.dead_letters(EPOCH, FOREVER) == []

    # Once the store takes dead letters again, the halves written meanwhile are no-ops.
    run_sql(store.path, "DROP TRIGGER no_letters")
    forwarder = forwarder_of(spool, store, registry)
    with running(forwarder):
        wait_until(lambda: spool.pending() == 0, timeout=30, what="the spool drained")
    assert_all_but_the_poison_stored_once(store)
    reasons = sorted(letter.reason for letter in store.dead_letters(EPOCH, FOREVER))
    assert len(reasons) == 2
    assert sum(f"refuses msg_id {POISON_MSG_ID}" in reason for reason in reasons) == 1
    assert forwarder.stats.poisoned == 1


def test_when_the_store_fails_on_every_reading_nothing_is_dead_lettered(
    registry: Registry,
    store: SQLiteStore,
    spool: Spool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="ingest.forwarder")
    run_sql(store.path, REFUSE_THE_LEDGER)
    with running(forwarder_of(spool, store, registry)):
        wait_until(lambda: failed_batches(caplog) > 2 * (POISON_AFTER + 1), what="failed splits")
    assert spool.pending() == SALES + 1
    assert store.dead_letters(EPOCH, FOREVER) == []
    assert stored_msg_ids(store) == []

    run_sql(store.path, "DROP TRIGGER broken")
    forwarder = forwarder_of(spool, store, registry)
    with running(forwarder):
        wait_until(lambda: spool.pending() == 0, timeout=30, what="the spool drained")
    assert stored_msg_ids(store) == list(range(SALES))
    assert [letter.payload for letter in store.dead_letters(EPOCH, FOREVER)] == [NOT_JSON]
    assert forwarder.stats.poisoned == 0
