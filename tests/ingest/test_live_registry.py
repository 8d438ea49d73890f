"""Ingest follows the market database: a device added a moment ago is accepted, one
disabled is refused, without a restart (real Mosquitto, the SQLite store, the market
database on SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from ingest.service import IngestService
from marketdb.database import open_database, session_factory
from marketdb.devices import add_device, get_device, set_device_enabled
from marketdb.follow import RegistryFollower
from marketdb.marketfile import import_market
from marketdb.vendors import create_vendor
from schemas.messages import DeviceKind
from schemas.registry import Vendor, load_market
from stallwatch.localservices import Mosquitto
from storage.sqlite import SQLiteStore
from tests.ingest.helpers import Publisher, ingest_mqtt, sale_payload, wait_until, write_market

pytestmark = pytest.mark.mosquitto

TOPIC = "markets/tm/scales/S-NEW/sale"


@pytest.fixture
def sessions(database_url: str, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = open_database(database_url)
    factory = session_factory(engine)
    with factory() as session, session.begin():
        import_market(session, load_market(write_market(tmp_path)).spec)
    yield factory
    engine.dispose()


def test_a_device_added_is_accepted_and_one_disabled_refused_without_a_restart(
    mosquitto_server: Mosquitto, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    follower = RegistryFollower(sessions, poll_s=0.1)
    store = SQLiteStore(tmp_path / "store.db")
    service = IngestService.in_process(
        ingest_mqtt(mosquitto_server.port, "ingest-live"),
        follower,
        store,
        tmp_path / "ingest.spool.db",
        batch_size=10,
    )
    service.start()
    publisher = Publisher(mosquitto_server.port)
    try:
        assert service.receiver.subscribed.wait(10)
        publisher.publish_all([(TOPIC, sale_payload(1, vendor="V03"))])
        wait_until(lambda: service.status().rejected == 1, what="the unknown device refused")

        with sessions() as session, session.begin():
            vendor = Vendor(id="V03", name="新来的菜摊", stall="C01", products=("1001",))
            create_vendor(session, "tm", vendor, actor="manager:test")
            add_device(session, "tm", "S-NEW", DeviceKind.SCALE, vendor="V03", actor="admin:test")
        added = time.monotonic()
        wait_until(lambda: follower.current().device("tm", "S-NEW") is not None, what="reload")
        publisher.publish_all([(TOPIC, sale_payload(2, vendor="V03"))])
        wait_until(lambda: service.status().stored == 1, what="the new device's sale stored")
        assert time.monotonic() - added < 5

        with sessions() as session, session.begin():
            scale = get_device(session, "S-NEW")
            set_device_enabled(
                session, "S-NEW", False, if_version=scale.version, actor="admin:test"
            )
        wait_until(lambda: not follower.current().markets["tm"].devices["S-NEW"].enabled)
        publisher.publish_all([(TOPIC, sale_payload(3, vendor="V03"))])
        wait_until(lambda: service.status().rejected == 2, what="the disabled device refused")
    finally:
        publisher.close()
        service.stop()
        store.close()

    since, until = datetime(2020, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1)
    with SQLiteStore(tmp_path / "store.db") as reopened:
        letters = [
            letter.reason for letter in reopened.dead_letters(since, until, market="tm", limit=10)
        ]
    assert "device 'S-NEW' is disabled" in letters


def test_the_retention_passes_take_each_markets_policy_as_the_database_has_it_then(
    sessions: sessionmaker[Session],
) -> None:
    from ingest.forwarder import RetentionSchedule
    from tests.conftest import REPO

    schedule = RetentionSchedule(follow=RegistryFollower(sessions, poll_s=0))
    assert set(schedule.current()) == {"tm"}
    xiaohe = load_market(REPO / "examples" / "markets" / "xiaohe.toml")
    with sessions() as session, session.begin():
        import_market(session, xiaohe.spec)

    assert schedule.current()["xiaohe"] == xiaohe.retention, "a market added since start"
