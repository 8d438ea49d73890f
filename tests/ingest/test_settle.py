"""The forwarder settles the store's rollups (``Store.settle_rollups``): when a backlog has
drained and every few seconds while messages keep coming.

On a real InfluxDB, whose reads of whole hours come from the rollups only: a
sale is in ``sales_summary`` over a day only once a settle ran after its write.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from ingest.forwarder import Forwarder
from ingest.spool import ArrivedMessage, Spool
from ingest.validate import Validator
from schemas.registry import Registry, load_market
from stallwatch.localservices import Influxd
from storage.backoff import Backoff
from storage.influx.store import InfluxStore
from tests.ingest.helpers import SALE_TOPIC, running, sale_payload, wait_until, write_market

pytestmark = pytest.mark.influx

NO_PAUSE = Backoff(first=0.001, cap=0.001)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry([load_market(write_market(tmp_path))])


@pytest.fixture
def store(influx_server: Influxd) -> Iterator[InfluxStore]:
    database = f"settle_{uuid4().hex[:12]}"
    with InfluxStore(influx_server.url, database, create_database=True) as opened:
        yield opened


def spooled(tmp_path: Path, msg_ids: range) -> None:
    now = time.time_ns()
    arrived: list[ArrivedMessage] = [(SALE_TOPIC, sale_payload(i), now + i, False) for i in msg_ids]
    receiver = Spool(tmp_path / "spool.db", "receiver")
    receiver.append(arrived)
    receiver.close()


def sold_today(store: InfluxStore) -> int:
    now = datetime.now(UTC)
    rows = store.sales_summary("tm", now - timedelta(days=1), now + timedelta(days=1))
    return sum(row.sales for row in rows)


def test_a_drained_backlog_is_settled_at_once(
    tmp_path: Path, registry: Registry, store: InfluxStore
) -> None:
    spooled(tmp_path, range(25))
    spool = Spool(tmp_path / "spool.db", "forwarder")
    forwarder = Forwarder(
        spool, store, Validator(registry), batch_size=10, backoff=NO_PAUSE, settle_every_s=3600
    )
    with running(forwarder):
        wait_until(lambda: sold_today(store) == 25, timeout=30, what="the backlog settled")
    spool.close()


def test_messages_that_keep_coming_are_settled_every_few_seconds(
    tmp_path: Path, registry: Registry, store: InfluxStore
) -> None:
    spool = Spool(tmp_path / "spool.db", "forwarder")
    forwarder = Forwarder(spool, store, Validator(registry), backoff=NO_PAUSE, settle_every_s=0.05)
    with running(forwarder):
        spooled(tmp_path, range(3))
        wait_until(lambda: sold_today(store) == 3, timeout=30, what="the first sales settled")
        spooled(tmp_path, range(3, 5))
        wait_until(lambda: sold_today(store) == 5, timeout=30, what="the next sales settled")
    spool.close()


def test_drain_settles(tmp_path: Path, registry: Registry, store: InfluxStore) -> None:
    spooled(tmp_path, range(4))
    spool = Spool(tmp_path / "spool.db", "forwarder")
    forwarder = Forwarder(spool, store, Validator(registry), settle_every_s=3600)

    assert forwarder.drain() == 4
    assert sold_today(store) == 4
    spool.close()
