"""stallwatch's own commands to devices, as a broker without stallwatch's access rules
hands them to ingest (it subscribes to every topic under ``markets/``): passed over, not
stored and not dead letters, while the devices' messages around them are stored."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.forwarder import Forwarder
from ingest.spool import Spool
from ingest.validate import Validator
from schemas.commands import command_topic
from schemas.messages import DeviceKind
from schemas.registry import Registry, load_market
from storage.sqlite import SQLiteStore
from tests.ingest.helpers import SALE_TOPIC, running, sale_payload, wait_until, write_market

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
FOREVER = datetime(2100, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "store.db") as store:
        yield store


def test_commands_are_passed_over_and_the_sales_around_them_stored(
    tmp_path: Path, store: SQLiteStore
) -> None:
    registry = Registry([load_market(write_market(tmp_path))])
    now = time.time_ns()
    command = command_topic("tm", DeviceKind.SCALE, "S-A01")
    receiver = Spool(tmp_path / "spool.db", "receiver")
    receiver.append(
        [
            (SALE_TOPIC, sale_payload(1), now, False),
            (
                command,
                b'{"v":1,"msg_id":5,"ts":"2026-11-27T10:00:00+08:00","suspended":[]}',
                now + 1,
                False,
            ),
            (SALE_TOPIC, sale_payload(2), now + 2, False),
        ]
    )
    receiver.close()
    spool = Spool(tmp_path / "spool.db", "forwarder")
    forwarder = Forwarder(spool, store, Validator(registry), batch_size=50)
    try:
        with running(forwarder):
            wait_until(lambda: spool.pending() == 0, timeout=30, what="the spool drained")
    finally:
        spool.close()

    stored = store.sales("tm", EPOCH, FOREVER, scale="S-A01")
    assert sorted(row.msg_id for row in stored) == [1, 2]
    assert store.dead_letters(EPOCH, FOREVER) == []
    assert (forwarder.stats.stored, forwarder.stats.rejected) == (2, 0)
    assert forwarder.stats.commands_skipped == 1
