"""The public price endpoints over real HTTP (uvicorn on a free port), fed by real ingest."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from api.main import create_app
from api.routers.prices import etag_matches
from api.server import ServerThread
from marketview.live_mqtt import LiveView
from mqttedge import EdgeOptions
from schemas.registry import Registry
from stallwatch.localservices import Mosquitto, free_port
from stallwatch.options import api_options
from stallwatch.settings import Settings
from storage.base import Store
from tests.conftest import EXAMPLE_MARKET
from tests.ingest.helpers import wait_until
from tests.marketview.test_live import MARKET, Rig, price, running_rig

PREFIX = f"/api/v1/markets/{MARKET}"
pytestmark = pytest.mark.mosquitto


@dataclass
class Api:
    rig: Rig
    live: LiveView
    http: httpx.Client

    def get(self, path: str, **headers: str) -> httpx.Response:
        return self.http.get(PREFIX + path, headers=headers)


def settings_for(broker: Mosquitto, tmp_path: Path) -> Settings:
    return Settings(
        markets=(EXAMPLE_MARKET,),
        mqtt_url=broker.url,
        spool_dir=tmp_path / "spool",
        sqlite_path=tmp_path / "store.db",
    )


@contextmanager
def serving(registry: Registry, store: Store, live: LiveView, settings: Settings) -> Iterator[str]:
    app = create_app(options=api_options(settings), registry=registry, store=store, live=live)
    with ServerThread(app) as server:
        yield server.url


@pytest.fixture
def prices_api(rig: Rig, tmp_path: Path) -> Iterator[Api]:
    with (
        rig.view() as live,
        serving(rig.registry, rig.store, live, settings_for(rig.broker, tmp_path)) as url,
        httpx.Client(base_url=url, timeout=10) as http,
    ):
        yield Api(rig, live, http)


@pytest.fixture
def rig(
    registry: Registry, store: Store, mosquitto_server: Mosquitto, tmp_path: Path
) -> Iterator[Rig]:
    with running_rig(registry, store, mosquitto_server, tmp_path) as running:
        yield running


def publish_and_wait(served: Api, *messages: tuple[str, bytes]) -> None:
    """Publish, then wait until the view has moved on (each message here changes it)."""
    version = served.live.version(MARKET)
    served.rig.publish(*messages)
    wait_until(lambda: served.live.version(MARKET) >= version + len(messages), 30, "the view")


def assert_no_floats(value: Any) -> None:
    if isinstance(value, dict):
        for item in value.values():
            assert_no_floats(item)
    elif isinstance(value, list):
        for item in value:
            assert_no_floats(item)
    else:
        assert not isinstance(value, float), value


# -- the board -------------------------------------------------------------------------


def test_board_has_exact_spreads_and_display_prices(prices_api: Api) -> None:
    publish_and_wait(
        prices_api,
        price("A01", "1001", 398, 1),
        price("A04", "1001", 399, 1),
        price("A01", "1002", 596, 2),
        price("A03", "1002", 700, 1),
        price("B01", "1002", 796, 1),
    )
    response = prices_api.get("/prices")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert_no_floats(body)
    assert (body["market"], body["name"]) == (MARKET, "南门农贸市场")
    cabbage, tomato = body["products"]
    assert cabbage == {
        "plu": "1001",
        "name_zh": "大白菜",
        "name_en": "Napa cabbage",
        "category": "vegetables",
        "unit": "jin",
        "vendors": 2,
        "min": {"fen_per_kg": 398, "yuan_per_kg": "3.98", "yuan_per_jin": "1.99"},
        "median": {"fen_per_kg": "398.5", "yuan_per_kg": "3.99", "yuan_per_jin": "1.99"},
        "max": {"fen_per_kg": 399, "yuan_per_kg": "3.99", "yuan_per_jin": "2.00"},
        "promotions_active": 0,
    }
    assert (tomato["plu"], tomato["vendors"], tomato["median"]["fen_per_kg"]) == ("1002", 3, "700")


def test_an_empty_market_has_an_empty_board(prices_api: Api) -> None:
    response = prices_api.get("/prices")
    assert response.status_code == 200
    assert response.json()["products"] == []


# -- a vendor and a stall screen ---------------------------------------------------------


def test_stall_screen_shows_the_vendor_prices_and_running_promotions(prices_api: Api) -> None:
    until = datetime(2099, 1, 1, 4, 0, tzinfo=UTC)  # noon in Shanghai
    publish_and_wait(
        prices_api,
        price("A01", "1001", 398, 1),
        price("A01", "1002", 600, 2, promo=(500, until)),
        price("A03", "1002", 700, 1),
    )
    screen = prices_api.get("/stalls/A01/screen")
    assert screen.status_code == 200
    body = screen.json()
    assert_no_floats(body)
    assert (body["vendor"], body["name"], body["stall"]) == ("V-A01", "王记蔬菜", "A01")
    cabbage, tomato = body["prices"]
    assert cabbage["price"] == {"fen_per_kg": 398, "yuan_per_kg": "3.98", "yuan_per_jin": "1.99"}
    assert cabbage["promotion"] is None
    assert tomato["promotion"] == {
        "price": {"fen_per_kg": 500, "yuan_per_kg": "5.00", "yuan_per_jin": "2.50"},
        "text": "限时特价",
        "until": "2099-01-01T12:00:00+08:00",
    }
    assert tomato["set_at"].endswith("+08:00")
    vendor = prices_api.get("/vendors/V-A01/prices")
    assert vendor.status_code == 200
    assert vendor.json() == body


# -- ETags --------------------------------------------------------------------------------


def test_etag_round_trip_and_change_after_a_price_change(prices_api: Api) -> None:
    publish_and_wait(prices_api, price("A01", "1001", 398, 1))
    first = prices_api.get("/stalls/A01/screen")
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    assert first.headers["cache-control"] == "no-cache"

    unchanged = prices_api.get("/stalls/A01/screen", **{"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    assert unchanged.headers["cache-control"] == "no-cache"
    listed = prices_api.get("/stalls/A01/screen", **{"If-None-Match": f'W/"other", {etag}'})
    assert listed.status_code == 304

    publish_and_wait(prices_api, price("A01", "1001", 420, 2))
    changed = prices_api.get("/stalls/A01/screen", **{"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()["prices"][0]["price"]["fen_per_kg"] == 420
    again = prices_api.get("/stalls/A01/screen", **{"If-None-Match": changed.headers["etag"]})
    assert again.status_code == 304


def test_etag_changes_when_a_promotion_ends_without_any_message(prices_api: Api) -> None:
    until = prices_api.rig.clock.now + timedelta(minutes=30)
    publish_and_wait(prices_api, price("A01", "1001", 398, 1, promo=(298, until)))
    running = prices_api.get("/stalls/A01/screen")
    board = prices_api.get("/prices")
    assert running.json()["prices"][0]["promotion"]["price"]["fen_per_kg"] == 298
    assert board.json()["products"][0]["min"]["fen_per_kg"] == 298

    prices_api.rig.clock.now = until
    ended = prices_api.get("/stalls/A01/screen", **{"If-None-Match": running.headers["etag"]})
    assert ended.status_code == 200
    assert ended.json()["prices"][0]["promotion"] is None
    board_after = prices_api.get("/prices", **{"If-None-Match": board.headers["etag"]})
    assert board_after.status_code == 200
    assert board_after.json()["products"][0]["min"]["fen_per_kg"] == 398
    assert board_after.json()["products"][0]["promotions_active"] == 0


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        ('W/"e-1-0"', True),
        ('"e-1-0"', True),  # weak comparison: the strong form names the same content
        ('W/"x", W/"e-1-0"', True),
        ("*", True),
        ('W/"e-1-1"', False),
        ("", False),
        (None, False),
    ],
)
def test_if_none_match_uses_weak_comparison(header: str | None, matches: bool) -> None:
    assert etag_matches(header, 'W/"e-1-0"') is matches


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/stalls/Z99/screen", "unknown_stall"),
        ("/vendors/V-Z99/prices", "unknown_vendor"),
    ],
)
def test_unknown_names_are_404_json(prices_api: Api, path: str, code: str) -> None:
    response = prices_api.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == code
    assert "Z99" in response.json()["error"]["message"]


def test_unknown_market_is_404_json(prices_api: Api) -> None:
    response = prices_api.http.get("/api/v1/markets/nowhere/prices")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_market"


def test_malformed_ids_are_rejected_with_json(prices_api: Api) -> None:
    response = prices_api.get("/stalls/" + "A" * 40 + "/screen")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


def test_prices_are_503_until_the_store_has_been_read(
    registry: Registry, mosquitto_server: Mosquitto, tmp_path: Path
) -> None:
    from storage.influx.store import InfluxStore

    # Nothing listens on this port: the view cannot load, and must not serve an empty board.
    with InfluxStore(f"http://127.0.0.1:{free_port()}", "nowhere", timeout=2) as down:
        options = EdgeOptions("127.0.0.1", mosquitto_server.port, f"api-{uuid4().hex[:8]}")
        live = LiveView(registry, down, options)
        live.start()
        try:
            settings = settings_for(mosquitto_server, tmp_path)
            with serving(registry, down, live, settings) as url:
                response = httpx.get(f"{url}{PREFIX}/stalls/A01/screen", timeout=10)
        finally:
            live.stop()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "prices_not_ready"
    assert response.headers["retry-after"] == "5"
