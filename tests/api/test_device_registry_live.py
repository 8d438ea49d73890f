"""The live-effect path end to end: a device added over the HTTP API gets its broker user
at once and its first sale is stored within 5 s; disabled, the broker drops its session
and refuses it. A real Mosquitto with the dynamic-security plugin, ingest following the
market database, the API with the broker's admin connection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.main import ApiOptions, create_app
from api.security import Role, create_token
from api.server import ServerThread
from ingest.mqtt import MqttOptions, persistent_session
from ingest.service import IngestService
from marketdb.database import open_database, session_factory
from marketdb.follow import RegistryFollower
from marketdb.management import Management
from marketdb.marketfile import import_market
from marketview.live_mqtt import LiveView
from mqttedge import EdgeOptions
from stallwatch.brokerauth import ADMIN_USER, API_USER, INGEST_USER
from stallwatch.dynsec import DynsecControl
from storage.sqlite import SQLiteStore
from tests.api.conftest import bearer
from tests.ingest.helpers import sale_payload, wait_until
from tests.stallwatch.mqttclient import Client
from tests.stallwatch.test_dynsec import Broker, broker  # noqa: F401 - the fixture

pytestmark = pytest.mark.mosquitto

DEVICES = "/api/v1/markets/nanmen/registry/devices"
TOPIC = "markets/nanmen/scales/S-NEW/sale"


def as_user(server: Broker, user: str) -> EdgeOptions:
    return EdgeOptions(
        "127.0.0.1",
        server.server.port,
        f"{user}-{time.monotonic_ns()}",
        username=user,
        password=server.passwords[user],
    )


@pytest.fixture
def sessions(broker: Broker, tmp_path: Path) -> Iterator[sessionmaker[Session]]:  # noqa: F811
    engine = open_database(f"sqlite:///{tmp_path / 'market.db'}")
    factory = session_factory(engine)
    with factory() as session, session.begin():
        for market in broker.registry:
            import_market(session, market.spec)
    yield factory
    engine.dispose()


def test_a_device_added_over_http_sells_within_5_s_and_once_disabled_is_dropped(
    broker: Broker,  # noqa: F811
    sessions: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    token, _ = create_token(tmp_path / "tokens.json", Role.ADMINISTRATOR, name="admin")
    store = SQLiteStore(tmp_path / "store.db")
    ingest = IngestService.in_process(
        MqttOptions(persistent_session(as_user(broker, INGEST_USER))),
        RegistryFollower(sessions, poll_s=0.1),
        store,
        tmp_path / "ingest.spool.db",
        batch_size=10,
    )
    web_registry = RegistryFollower(sessions, poll_s=0.1)
    live = LiveView(web_registry, store, as_user(broker, API_USER))
    ingest.start()
    scale: Client | None = None
    try:
        with (
            DynsecControl(as_user(broker, ADMIN_USER)) as control,
            ServerThread(
                create_app(
                    options=ApiOptions(spool_dir=tmp_path, tokens_file=tmp_path / "tokens.json"),
                    registry=web_registry,
                    store=store,
                    live=live,
                    management=Management(sessions, broker=control),
                )
            ) as server,
            httpx.Client(base_url=server.url, headers=bearer(token), timeout=30) as http,
        ):
            assert ingest.receiver.subscribed.wait(10)
            new_scale = {"id": "S-NEW", "kind": "scales", "vendor": "v-chen"}
            added = http.post(DEVICES, json=new_scale)
            asked = time.monotonic()
            assert added.status_code == 201, added.text
            password = added.json()["password"]
            assert password, "the broker user's password is shown once"

            scale = Client(broker.server.port, "S-NEW", password, client_id="S-NEW")
            assert scale.connect().value == 0
            assert scale.publish(TOPIC, sale_payload(1, vendor="v-chen")).value == 0
            wait_until(lambda: ingest.status().stored == 1, timeout=5, what="its first sale")
            assert time.monotonic() - asked < 5

            version = http.get(f"{DEVICES}/S-NEW").headers["ETag"]
            disabled = http.post(f"{DEVICES}/S-NEW/disable", headers={"If-Match": version})
            assert disabled.status_code == 200, disabled.text
            assert scale.wait_disconnected() is not None, "the broker dropped its session"
            again = Client(broker.server.port, "S-NEW", password, client_id="S-NEW")
            assert again.connect().value != 0, "and refuses it from now on"
    finally:
        if scale is not None:
            scale.close()
        ingest.stop()
        store.close()

    since = datetime.now(UTC) - timedelta(hours=1)
    with SQLiteStore(tmp_path / "store.db") as reopened:
        stored = reopened.sales("nanmen", since, datetime.now(UTC) + timedelta(hours=1))
    assert [(sale.scale, sale.vendor) for sale in stored] == [("S-NEW", "v-chen")]
