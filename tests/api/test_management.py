"""Managing the registry over HTTP: vendors, stalls, products, devices and the audit log.

A real uvicorn server around ``create_app`` with the market database (SQLite and a
real PostgreSQL) followed as the registry, and a real store. Every edit names the
version it was made on (If-Match); a stale one is refused with 412, and what the
rules refuse changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from api.security import Role, create_token
from api.server import ServerThread
from marketdb.database import open_database, session_factory
from marketdb.follow import RegistryFollower
from marketdb.management import Management
from marketdb.marketfile import import_market
from marketview.live_mqtt import LiveView
from marketview.stock import batches_on_hand
from schemas.registry import load_market
from stallwatch.localservices import Mosquitto
from stallwatch.options import api_options, live_mqtt_options
from stallwatch.settings import Settings
from storage.base import Store
from tests.api.conftest import bearer
from tests.ingest.helpers import wait_until, write_market
from tests.storage import factories

MARKET = "tm"
V = f"/api/v1/markets/{MARKET}"


@dataclass(frozen=True)
class Client:
    http: httpx.Client
    admin: str
    manager: str
    viewer: str
    follower: RegistryFollower

    def call(
        self,
        method: str,
        path: str,
        token: str,
        *,
        version: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = bearer(token) | ({"If-Match": version} if version else {})
        return self.http.request(method, path, headers=headers, **kwargs)


@pytest.fixture
def sessions(database_url: str, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = open_database(database_url)
    factory = session_factory(engine)
    with factory() as session, session.begin():
        import_market(session, load_market(write_market(tmp_path)).spec)
    yield factory
    engine.dispose()


@pytest.fixture
def client(
    sessions: sessionmaker[Session], store: Store, tmp_path: Path, mosquitto_server: Mosquitto
) -> Iterator[Client]:
    tokens = tmp_path / "tokens.json"
    issued = {
        role: create_token(tokens, role, name=f"{role.value}-1")[0]
        for role in (Role.ADMINISTRATOR, Role.MANAGER, Role.VIEWER)
    }
    settings = Settings(
        markets=(),
        mqtt_url=mosquitto_server.url,
        spool_dir=tmp_path / "spool",
        api_tokens_file=tokens,
    )
    follower = RegistryFollower(sessions, poll_s=0.05)

    def open_batches(market: str, vendor: str) -> list[str]:
        return batches_on_hand(store.batch_balances, market, vendor, datetime.now(UTC))

    management = Management(sessions, open_batches=open_batches)
    live = LiveView(follower, store, live_mqtt_options(settings))
    app = create_app(
        options=api_options(settings),
        registry=follower,
        store=store,
        live=live,
        management=management,
    )
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield Client(
            http,
            issued[Role.ADMINISTRATOR],
            issued[Role.MANAGER],
            issued[Role.VIEWER],
            follower,
        )


def a_vendor(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "id": "V03",
        "name": "张记水果",
        "stall": "C01",
        "contact": "张三 138-0000-0000",
        "food_licence_no": "JY13201000000001",
        "food_licence_expires": "2027-06-30",
        "health_certificates": [
            {"holder": "张三", "number": "JK-2026-0001", "expires": "2027-03-31"}
        ],
        "products": ["1001"],
    }
    body.update(changes)
    return body


# -- vendors -----------------------------------------------------------------------------


def test_a_manager_adds_and_edits_a_vendor_and_a_stale_edit_is_refused(client: Client) -> None:
    created = client.call("POST", f"{V}/vendors", client.manager, json=a_vendor())
    assert created.status_code == 201, created.text
    assert created.headers["ETag"] == '"1"'
    assert created.headers["Location"] == f"{V}/vendors/V03"

    read = client.call("GET", f"{V}/vendors/V03", client.viewer)
    assert read.status_code == 200
    assert read.json()["vendor"]["name"] == "张记水果"
    etag = read.headers["ETag"]

    renamed = client.call(
        "PUT", f"{V}/vendors/V03", client.manager, version=etag, json=a_vendor(name="张记鲜果")
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.headers["ETag"] == '"2"'

    # a second manager still holding version 1 does not overwrite the rename
    stale = client.call(
        "PUT", f"{V}/vendors/V03", client.manager, version=etag, json=a_vendor(name="张记")
    )
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "stale_edit"
    assert "version 1" in stale.json()["error"]["message"]
    blind = client.call("PUT", f"{V}/vendors/V03", client.manager, json=a_vendor(name="张记"))
    assert blind.status_code == 428
    assert client.call("GET", f"{V}/vendors/V03", client.viewer).json()["vendor"]["name"] == (
        "张记鲜果"
    )
    wait_until(
        lambda: "V03" in client.follower.current().markets[MARKET].vendors,
        timeout=5,
        what="the new vendor in the followed registry",
    )


def test_a_vendor_the_market_rules_refuse_is_answered_with_the_field_and_changes_nothing(
    client: Client,
) -> None:
    before = client.call("GET", f"{V}/vendors", client.viewer).json()

    taken_stall = client.call("POST", f"{V}/vendors", client.manager, json=a_vendor(stall="A01"))
    unknown_product = client.call(
        "POST", f"{V}/vendors", client.manager, json=a_vendor(products=["9999"])
    )
    bad_licence = client.call(
        "POST", f"{V}/vendors", client.manager, json=a_vendor(food_licence_no="JY 1; DROP")
    )

    assert taken_stall.status_code == 409
    assert taken_stall.json()["error"]["code"] == "invalid_change"
    assert taken_stall.json()["error"]["details"][0]["loc"] == ["body", "stall"]
    assert "stall of an active vendor 'A01'" in taken_stall.json()["error"]["message"]
    assert unknown_product.status_code == 409
    assert unknown_product.json()["error"]["details"][0]["loc"] == ["body", "products"]
    assert bad_licence.status_code == 422
    assert bad_licence.json()["error"]["code"] == "invalid_request"
    assert client.call("GET", f"{V}/vendors", client.viewer).json() == before


def test_roles_a_viewer_reads_a_manager_edits_vendors_only_an_administrator_adds_devices(
    client: Client,
) -> None:
    assert client.call("POST", f"{V}/vendors", client.viewer, json=a_vendor()).status_code == 403
    device = {"id": "S-C01", "kind": "scales", "vendor": "V01"}
    refused = client.call("POST", f"{V}/registry/devices", client.manager, json=device)
    assert refused.status_code == 403
    added = client.call("POST", f"{V}/registry/devices", client.admin, json=device)
    assert added.status_code == 201, added.text
    assert added.json()["password"] is None  # no broker managed here: broker-auth's file
    assert added.headers["Cache-Control"] == "no-store"
    assert client.call("GET", f"{V}/registry/devices/S-C01", client.viewer).status_code == 200


def test_deactivating_a_vendor_with_stock_on_hand_needs_confirmation(
    client: Client, store: Store
) -> None:
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    intake = factories.batch(ts=an_hour_ago, trace_code="TM-OPEN-0001", vendor="V01")
    assert store.write([factories.reading(intake, "IN-1", market=MARKET)]) == []
    read = client.call("GET", f"{V}/vendors/V01", client.viewer)
    leaving = {**read.json()["vendor"], "active": False}
    for field in ("scales", "screens"):
        leaving.pop(field)

    refused = client.call(
        "PUT", f"{V}/vendors/V01", client.manager, version=read.headers["ETag"], json=leaving
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "needs_confirmation"
    assert "TM-OPEN-0001" in refused.json()["error"]["message"]
    confirmed = client.call(
        "PUT",
        f"{V}/vendors/V01?confirm=true",
        client.manager,
        version=read.headers["ETag"],
        json=leaving,
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["vendor"]["scales"] == ["S-A01"], "devices stay assigned"
    wait_until(
        lambda: not client.follower.current().markets[MARKET].devices["S-A01"].enabled,
        timeout=5,
        what="the leaver's scale refused by the followed registry",
    )


# -- stalls and products -----------------------------------------------------------------


def test_stalls_are_placed_on_the_floor_plan_and_one_in_use_is_not_removed(
    client: Client,
) -> None:
    placed = client.call(
        "POST",
        f"{V}/stalls",
        client.manager,
        json={"id": "C01", "zone": "水果区", "row": 3, "col": 1},
    )
    assert placed.status_code == 201, placed.text
    clash = client.call(
        "POST", f"{V}/stalls", client.manager, json={"id": "C02", "row": 3, "col": 1}
    )
    assert clash.status_code == 409
    assert "stall place (row, col) '3,1'" in clash.json()["error"]["message"]
    half = client.call("POST", f"{V}/stalls", client.manager, json={"id": "C02", "row": 3})
    assert half.status_code == 422

    stalls = {s["stall"]["id"]: s for s in client.call("GET", f"{V}/stalls", client.viewer).json()}
    assert stalls["A01"]["vendor"] == "V01"
    held = client.call("DELETE", f"{V}/stalls/A01", client.manager, version='"1"')
    assert held.status_code == 409
    assert "V01" in held.json()["error"]["message"]
    removed = client.call("DELETE", f"{V}/stalls/C01", client.manager, version='"1"')
    assert removed.status_code == 204
    assert client.call("GET", f"{V}/stalls/C01", client.viewer).status_code == 404


def test_products_are_added_edited_and_one_a_vendor_lists_is_not_removed(
    client: Client,
) -> None:
    apple = {"plu": "3001", "name_zh": "苹果", "name_en": "Apple", "category": "fruit"}
    assert client.call("POST", f"{V}/products", client.manager, json=apple).status_code == 201
    again = client.call("POST", f"{V}/products", client.manager, json=apple)
    assert again.status_code == 409

    per_kg = client.call(
        "PUT", f"{V}/products/3001", client.manager, version='"1"', json=apple | {"unit": "kg"}
    )
    assert per_kg.status_code == 200
    assert per_kg.json()["product"]["unit"] == "kg"

    listed = client.call("DELETE", f"{V}/products/1001", client.manager, version='"1"')
    assert listed.status_code == 409
    assert "V01" in listed.json()["error"]["message"]
    gone = client.call("DELETE", f"{V}/products/3001", client.manager, version='"2"')
    assert gone.status_code == 204


# -- devices and the audit log -----------------------------------------------------------


def test_a_disabled_device_is_refused_by_the_registry_and_the_audit_log_says_who(
    client: Client,
) -> None:
    read = client.call("GET", f"{V}/registry/devices/S-B01", client.viewer)
    disabled = client.call(
        "POST",
        f"{V}/registry/devices/S-B01/disable",
        client.admin,
        version=read.headers["ETag"],
    )
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["enabled"] is False
    wait_until(
        lambda: not client.follower.current().markets[MARKET].devices["S-B01"].enabled,
        timeout=5,
        what="the disabled scale refused by the followed registry",
    )

    log = client.call("GET", f"/api/v1/audit?market={MARKET}", client.viewer)
    assert log.status_code == 200
    newest = log.json()[0]
    assert (newest["actor"], newest["action"], newest["entity_id"]) == (
        "administrator-1",
        "disable",
        "S-B01",
    )
    assert (newest["before"], newest["after"]) == ({"enabled": True}, {"enabled": False})


def test_a_replaced_scale_is_disabled_and_its_successor_takes_its_vendor(client: Client) -> None:
    read = client.call("GET", f"{V}/registry/devices/S-A01", client.viewer)
    replaced = client.call(
        "POST",
        f"{V}/registry/devices/S-A01/replacement",
        client.admin,
        version=read.headers["ETag"],
        json={"id": "S-A01-2"},
    )
    assert replaced.status_code == 201, replaced.text
    assert (replaced.json()["device"]["vendor"], replaced.json()["device"]["kind"]) == (
        "V01",
        "scales",
    )
    assert replaced.headers["Location"] == f"{V}/registry/devices/S-A01-2"
    old = client.call("GET", f"{V}/registry/devices/S-A01", client.viewer).json()
    assert old["enabled"] is False
    again = client.call(
        "POST",
        f"{V}/registry/devices/S-A01/replacement",
        client.admin,
        version=read.headers["ETag"],
        json={"id": "S-A01-3"},
    )
    assert again.status_code == 412, "a replacement made on a stale version is refused"
