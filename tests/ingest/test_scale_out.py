"""Two ingest instances share one subscription ($share/…) and together store everything once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ingest.service import IngestService
from schemas.registry import Registry, load_market
from stallwatch.localservices import Mosquitto
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


def test_shared_subscription_splits_the_stream_and_loses_nothing(
    mosquitto_server: Mosquitto, tmp_path: Path
) -> None:
    registry = Registry([load_market(write_market(tmp_path))])
    stores = [SQLiteStore(tmp_path / "store.db") for _ in range(2)]  # like two processes, one file
    services = [
        IngestService.in_process(
            ingest_mqtt(mosquitto_server.port, f"ingest-{i}", share_group="stallwatch"),
            registry,
            store,
            tmp_path / f"ingest-{i}.spool.db",
            batch_size=500,
        )
        for i, store in enumerate(stores)
    ]
    for service in services:
        service.start()
    publisher = Publisher(mosquitto_server.port)
    total = 4_000
    try:
        for service in services:
            assert service.receiver.subscribed.wait(10)
        publisher.publish_all((SALE_TOPIC, sale_payload(i)) for i in range(total))
        wait_until(
            lambda: sum(s.status().stored for s in services) == total, what="every sale stored"
        )
        shares = [service.status().received for service in services]
    finally:
        publisher.close()
        for service in services:
            service.stop()
    assert all(share > 0 for share in shares), f"the broker did not split the stream: {shares}"
    assert sum(shares) == total, "a shared subscription delivers each message to one instance"
    ids = sorted(r.msg_id for r in stores[0].sales("tm", EPOCH, FOREVER, scale="S-A01"))
    assert ids == list(range(total))
    for store in stores:
        store.close()
