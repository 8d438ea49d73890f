"""One message per device and msg_id, across ingest restarts and instances (``storage.msgids``).

Real Mosquitto, two ingest instances on one shared subscription writing to one
store, then both restarted: a reused msg_id with other content is dead-lettered
wherever it lands, and a byte-identical redelivery stays a silent no-op.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from ingest.forwarder import Forwarder, Memory, RetentionSchedule
from ingest.service import IngestService
from ingest.spool import Spool
from ingest.validate import Validator
from schemas.messages import Sale
from schemas.registry import Registry, load_market
from stallwatch.localservices import Influxd, Mosquitto
from storage.base import Store
from storage.influx.store import InfluxStore
from storage.msgids import REUSED_MSG_ID
from storage.records import Reading, to_ns
from storage.sqlite import SQLiteStore
from tests.ingest.helpers import (
    SALE_TOPIC,
    Publisher,
    ingest_mqtt,
    sale_payload,
    wait_until,
    write_market,
)

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
FOREVER = datetime(2100, 1, 1, tzinfo=UTC)
ORIGINALS = 300


@pytest.fixture(params=["sqlite", "influx"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Opens a store object on the test's one store, as each ingest process does its own."""
    if request.param == "sqlite":

        def sqlite() -> Store:
            return SQLiteStore(tmp_path / "store.db")

        yield sqlite
    else:
        server: Influxd = request.getfixturevalue("influx_server")
        database = f"ids_{uuid4().hex[:10]}"
        InfluxStore(server.url, database, create_database=True).close()

        def influx() -> Store:
            return InfluxStore(server.url, database)

        yield influx


def start_instances(
    broker: Mosquitto, registry: Registry, stores: list[Store], spool_dir: Path
) -> list[IngestService]:
    services = [
        IngestService.in_process(
            ingest_mqtt(broker.port, f"ingest-{i}", share_group="stallwatch"),
            registry,
            store,
            spool_dir / f"ingest-{i}.spool.db",
            batch_size=50,
        )
        for i, store in enumerate(stores)
    ]
    for service in services:
        service.start()
    for service in services:
        assert service.receiver.subscribed.wait(10)
    return services


def publish_and_drain(
    broker: Mosquitto, services: list[IngestService], messages: list[tuple[str, bytes]]
) -> None:
    before = sum(s.status().received for s in services)
    publisher = Publisher(broker.port)
    try:
        publisher.publish_all(messages)
    finally:
        publisher.close()
    wait_until(
        lambda: sum(s.status().received for s in services) == before + len(messages),
        what="every message received",
    )
    wait_until(lambda: all(s.status().pending == 0 for s in services), what="spools drained")


def test_a_reused_msg_id_is_dead_lettered_by_any_instance_and_after_restarts(
    mosquitto_server: Mosquitto, open_store: Callable[[], Store], tmp_path: Path
) -> None:
    registry = Registry([load_market(write_market(tmp_path))])
    originals = [(SALE_TOPIC, sale_payload(i)) for i in range(ORIGINALS)]
    # The reviewer's case: the same msg_id, other content (a later ts, or another weight).
    reuses = [
        (SALE_TOPIC, sale_payload(i, weight_g=1_499, total_fen=597)) for i in range(ORIGINALS)
    ]
    stores: list[Store] = [open_store(), open_store()]
    services = start_instances(mosquitto_server, registry, stores, tmp_path)
    try:
        publish_and_drain(mosquitto_server, services, originals)
        publish_and_drain(mosquitto_server, services, [*reuses[::2], *originals])
        shares = [s.status().received for s in services]
    finally:
        for service in services:
            service.stop()
        for store in stores:
            store.close()

    # Both instances restart, with new store objects: the memory is in the store.
    stores = [open_store(), open_store()]
    services = start_instances(mosquitto_server, registry, stores, tmp_path)
    try:
        publish_and_drain(mosquitto_server, services, [*reuses[1::2], *originals])
    finally:
        for service in services:
            service.stop()

    store = stores[0]
    assert all(share > ORIGINALS // 4 for share in shares), f"one instance got all: {shares}"
    sales = store.sales("tm", EPOCH, FOREVER, scale="S-A01")
    assert [(row.msg_id, row.weight_g) for row in sales] == [
        (i, 1000 + i % 500) for i in range(ORIGINALS)
    ]
    letters = store.dead_letters(EPOCH, FOREVER, limit=10 * ORIGINALS)
    assert sorted(letter.reason for letter in letters) == [REUSED_MSG_ID] * ORIGINALS
    assert store.reject_counts(EPOCH, FOREVER) == {("tm", "S-A01"): ORIGINALS}
    for each in stores:
        each.close()


def test_the_forwarder_makes_the_store_forget_msg_ids_beyond_the_clock_window(
    tmp_path: Path,
) -> None:
    registry = Registry([load_market(write_market(tmp_path))])
    store = SQLiteStore(tmp_path / "store.db")
    now = datetime.now(UTC)
    old, recent = (
        Reading(
            "tm", "S-A01", to_ns(ts), Sale.model_validate_json(sale_payload(i, ts=ts.isoformat()))
        )
        for i, ts in ((1, now - timedelta(hours=3)), (2, now - timedelta(minutes=30)))
    )
    assert store.write([old, recent]) == []
    spool = Spool(tmp_path / "spool.db", "forwarder")
    forwarder = Forwarder(
        spool, store, Validator(registry), memory=Memory(msg_ids=timedelta(hours=1))
    )
    stop = threading.Event()
    thread = threading.Thread(target=forwarder.run, args=(stop, threading.Event()))
    thread.start()
    try:
        wait_until(lambda: ledger_ids(tmp_path / "store.db") == [2], what="msg_id 1 forgotten")
    finally:
        stop.set()
        thread.join(10)
        spool.close()
        store.close()


def ledger_ids(path: Path) -> list[int]:
    with closing(sqlite3.connect(path)) as conn:
        return [msg_id for (msg_id,) in conn.execute("SELECT msg_id FROM msg_id_ledger")]


def test_the_forwarder_has_the_store_apply_each_markets_retention(tmp_path: Path) -> None:
    registry = Registry([load_market(write_market(tmp_path))])
    store = SQLiteStore(tmp_path / "store.db")
    now = datetime.now(UTC)
    # written straight to the store: ingest would refuse readings this old
    old, recent = (
        Reading(
            "tm", "S-A01", to_ns(ts), Sale.model_validate_json(sale_payload(i, ts=ts.isoformat()))
        )
        for i, ts in ((1, now - timedelta(days=1200)), (2, now - timedelta(days=2)))
    )
    assert store.write([old, recent]) == []
    spool = Spool(tmp_path / "spool.db", "forwarder")
    forwarder = Forwarder(
        spool,
        store,
        Validator(registry),
        retention=RetentionSchedule(policies=registry.retention()),
    )
    stop = threading.Event()
    thread = threading.Thread(target=forwarder.run, args=(stop, threading.Event()))
    thread.start()
    try:
        wait_until(
            lambda: [s.msg_id for s in store.sales("tm", EPOCH, FOREVER)] == [2],
            what="the sale older than three years expired",
        )
        assert store.sales_summary("tm", EPOCH, FOREVER)[0].sales == 2  # still in the rollups
    finally:
        stop.set()
        thread.join(10)
        spool.close()
        store.close()
