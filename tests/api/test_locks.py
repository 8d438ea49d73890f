"""Batch locks over HTTP: listed with a viewer's token, lifted with a manager's and a
reason, and the lift reaches the vendor's scale through a real Mosquitto at once.
The market database on SQLite and a real PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from api.security import Role, create_token
from api.server import ServerThread
from marketdb.database import open_database, session_factory
from marketdb.follow import RegistryFollower
from marketdb.marketfile import import_market
from marketview import analytics
from marketview.live_mqtt import LiveView
from schemas.commands import command_topic
from schemas.messages import DeviceKind, RapidTest, RapidTestResult
from schemas.registry import load_market
from stallwatch.localservices import Mosquitto
from stallwatch.lockkeeper import LockKeeper
from stallwatch.options import api_options, live_mqtt_options
from stallwatch.settings import Settings
from storage.base import Store
from tests.api.conftest import bearer
from tests.api.test_batches import batch
from tests.ingest.helpers import wait_until, write_market
from tests.stallwatch.keepers import start_lock_keeper
from tests.stallwatch.mqttclient import Client
from tests.storage import factories

pytestmark = pytest.mark.mosquitto

LOCKS = "/api/v1/markets/tm/food-safety/locks"
CODE = "TM-20261127-A01-0001"
FAIL = RapidTest(result=RapidTestResult.FAIL, inhibition_pct=Decimal("58.0"))


@dataclass(frozen=True)
class Web:
    http: httpx.Client
    keeper: LockKeeper
    manager: str
    viewer: str


@pytest.fixture
def sessions(database_url: str, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = open_database(database_url)
    factory = session_factory(engine)
    with factory() as session, session.begin():
        import_market(session, load_market(write_market(tmp_path)).spec)
    yield factory
    engine.dispose()


@pytest.fixture
def web(
    sessions: sessionmaker[Session], store: Store, tmp_path: Path, mosquitto_server: Mosquitto
) -> Iterator[Web]:
    tokens = tmp_path / "tokens.json"
    manager, _ = create_token(tokens, Role.MANAGER, name="manager-1")
    viewer, _ = create_token(tokens, Role.VIEWER, name="viewer-1")
    settings = Settings(markets=(), mqtt_url=mosquitto_server.url, api_tokens_file=tokens)
    follower = RegistryFollower(sessions, poll_s=0.05)
    keeper, publisher = start_lock_keeper(sessions, follower, mosquitto_server.port)
    # V01's screen shows a price of cabbage (1001), so its stall screen has a line for it.
    price = factories.price(vendor="V01", plu="1001", ts=datetime.now(UTC))
    store.write([factories.reading(price, "P-A01", market="tm")])
    live = LiveView(follower, store, live_mqtt_options(settings))
    keeper.follow(live.set_suspensions)
    live.start()
    app = create_app(
        options=api_options(settings),
        registry=follower,
        store=store,
        live=live,
        lock_keeper=keeper,
    )
    try:
        with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            wait_until(lambda: live.synced, timeout=20, what="the live view loaded")
            yield Web(http, keeper, manager, viewer)
    finally:
        live.stop()
        publisher.close()


SCREEN = "/api/v1/markets/tm/stalls/A01/screen"


def _suspended(web: Web) -> dict[str, bool]:
    return {line["plu"]: line["suspended"] for line in web.http.get(SCREEN).json()["prices"]}


def test_the_stall_screen_shows_a_locked_product_as_suspended_until_unlocked(web: Web) -> None:
    before = web.http.get(SCREEN)
    assert before.status_code == 200, before.text
    assert _suspended(web) == {"1001": False}

    web.keeper.failed_test("tm", CODE, "V01", "1001", FAIL, datetime.now(UTC))

    locked = web.http.get(SCREEN, headers={"If-None-Match": before.headers["etag"]})
    assert locked.status_code == 200  # the screen changed: a polling screen reloads
    assert _suspended(web) == {"1001": True}
    web.http.post(
        f"{LOCKS}/{CODE}/1001/unlock",
        json={"reason": "re-test passed"},
        headers=bearer(web.manager),
    ).raise_for_status()
    assert _suspended(web) == {"1001": False}


def test_a_manager_lifts_a_lock_with_a_reason_and_the_scale_is_told(
    web: Web, mosquitto_server: Mosquitto
) -> None:
    web.keeper.failed_test("tm", CODE, "V01", "1001", FAIL, datetime.now(UTC))
    scale = Client(mosquitto_server.port, "S-A01", None, client_id="S-A01")
    assert scale.connect().value == 0
    scale.subscribe(command_topic("tm", DeviceKind.SCALE, "S-A01"))
    assert [s["trace_code"] for s in json.loads(scale.next_message()[1])["suspended"]] == [CODE]

    assert web.http.get(LOCKS).status_code == 401
    listed = web.http.get(LOCKS, headers=bearer(web.viewer))
    assert listed.status_code == 200, listed.text
    (lock,) = listed.json()
    assert (lock["trace_code"], lock["vendor"], lock["reason"]) == (
        CODE,
        "V01",
        "rapid_test_failed",
    )
    assert "58.0%" in lock["cause"]
    unlock = f"{LOCKS}/{CODE}/1001/unlock"
    reason = {"reason": "re-test at 14:00 passed (12.0%)"}
    assert web.http.post(unlock, json=reason, headers=bearer(web.viewer)).status_code == 403
    blank = web.http.post(unlock, json={"reason": "     "}, headers=bearer(web.manager))
    assert blank.status_code == 409, blank.text  # words are needed, not spaces
    assert len(web.http.get(LOCKS, headers=bearer(web.viewer)).json()) == 1  # nothing changed

    lifted = web.http.post(unlock, json=reason, headers=bearer(web.manager))

    assert lifted.status_code == 200, lifted.text
    assert (lifted.json()["unlocked_by"], lifted.json()["unlock_reason"]) == (
        "manager-1",
        reason["reason"],
    )
    assert json.loads(scale.next_message()[1])["suspended"] == []  # told at once
    assert web.http.get(LOCKS, headers=bearer(web.viewer)).json() == []
    history = web.http.get(LOCKS, params={"lifted": "true"}, headers=bearer(web.viewer)).json()
    assert [entry["unlock_reason"] for entry in history] == [reason["reason"]]
    again = web.http.post(unlock, json=reason, headers=bearer(web.manager))
    assert again.status_code == 404


def _sold(store: Store, msg_id: int, at: datetime, plu: str = "1001") -> None:
    sale = factories.sale(msg_id=msg_id, ts=at, vendor="V01", plu=plu, trace_code=CODE)
    store.write([factories.reading(sale, "S-A01", market="tm")])


def test_the_recall_lists_the_sales_before_the_lock_and_flags_those_after(
    web: Web, store: Store
) -> None:
    recall = f"{LOCKS}/{CODE}/1001/recall"
    assert web.http.get(recall, headers=bearer(web.viewer)).status_code == 404  # not locked
    now = datetime.now(UTC)
    intake = factories.batch(ts=now - timedelta(hours=3), trace_code=CODE, vendor="V01")
    spot_check = factories.rapid_test(
        msg_id=2,
        ts=now,
        trace_code=CODE,
        vendor="V01",
        passed=False,
        inhibition_pct=FAIL.inhibition_pct,
    )
    store.write([factories.reading(intake, "IN-1", market="tm")])
    _sold(store, 11, now - timedelta(hours=2))
    _sold(store, 12, now - timedelta(minutes=5))
    _sold(store, 13, now - timedelta(minutes=4), plu="1002")  # not the locked product
    store.write([factories.reading(spot_check, "IN-1", market="tm")])
    lock = web.keeper.failed_test("tm", CODE, "V01", "1001", FAIL, now)
    _sold(store, 14, lock.locked_at + timedelta(minutes=1))  # a scale that ignored it

    assert web.http.get(recall).status_code == 401
    found = web.http.get(recall, headers=bearer(web.viewer))

    assert found.status_code == 200, found.text
    body = found.json()
    assert [sale["receipt"] for sale in body["recall"]] == [11, 12]
    assert body["recalled_g"] == 1234 * 2
    assert [sale["receipt"] for sale in body["sold_while_locked"]] == [14]
    page = body["recall"][0]["receipt_page"]
    assert page.endswith("/trace/tm/receipt/S-A01/11")
    text = web.http.get(page).text
    assert 'id="latest-test-failed"' in text, text  # the buyer is told

    csv_reply = web.http.get(f"{recall}.csv", headers=bearer(web.viewer))
    assert csv_reply.status_code == 200, csv_reply.text
    assert csv_reply.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(csv_reply.text)))
    assert [(row["receipt"], row["sold_while_locked"]) for row in rows] == [
        ("11", "no"),
        ("12", "no"),
        ("14", "yes"),
    ]
    assert rows[0]["total_yuan"] == analytics.yuan(factories.sale().total_fen)
    assert rows[0]["receipt_page"] == page


def test_a_failed_batch_registered_over_http_is_locked_at_once(web: Web) -> None:
    body = batch(trace_code=CODE, rapid_test={"result": "fail", "inhibition_pct": "61.0"})
    registered = web.http.post("/api/v1/markets/tm/batches", json=body, headers=bearer(web.manager))
    assert registered.status_code == 201, registered.text

    (lock,) = web.http.get(LOCKS, headers=bearer(web.viewer)).json()
    assert (lock["trace_code"], lock["vendor"], lock["plu"]) == (CODE, "V01", "1001")
    assert "61.0%" in lock["cause"]
    assert _suspended(web) == {"1001": True}
    again = web.http.post("/api/v1/markets/tm/batches", json=body, headers=bearer(web.manager))
    assert again.status_code == 200  # a retry: nothing new, still one lock
    assert len(web.http.get(LOCKS, headers=bearer(web.viewer)).json()) == 1
