"""Fixtures for the API tests: a real uvicorn server around ``create_app`` on a free port.

The server runs over a real store (SQLite by default; tests that matter for both
backends parametrize ``store_kind`` with :data:`BOTH_STORES`), a real
:class:`~marketview.live_mqtt.LiveView` subscribed to a private Mosquitto, and a tokens file
made by :func:`api.security.create_token`. Requests go over HTTP with httpx.

Data reaches the store through the ingest path minus MQTT (:class:`Feeder`):
the spool, then the forwarder with the ingest validator, exactly as ``stallwatch
ingest`` runs them, drained deterministically instead of in a thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.main import create_app
from api.security import Role, create_token
from api.server import ServerThread
from ingest.forwarder import Forwarder
from ingest.spool import Spool
from ingest.validate import Validator
from marketdb.management import Management
from marketview.live_mqtt import LiveView
from schemas.registry import Registry, RegistrySource
from stallwatch.localservices import Mosquitto
from stallwatch.lockkeeper import LockKeeper
from stallwatch.options import api_options, live_mqtt_options
from stallwatch.settings import Settings
from storage.base import Store
from tests.conftest import open_store
from tests.ingest.helpers import wait_until, write_market

MARKET = "tm"


@dataclass(frozen=True)
class Tokens:
    path: Path
    administrator: str
    manager: str
    screen: str
    monitor: str
    #: a screen token limited to vendor V01 of market tm
    stall_screen: str
    #: a manager token limited to a market this deployment does not have
    other_market_manager: str


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def market_file(tmp_path: Path) -> Path:
    return write_market(tmp_path)


@pytest.fixture
def api_registry(market_file: Path) -> Registry:
    return Registry.load([market_file])


@pytest.fixture
def tokens(tmp_path: Path) -> Tokens:
    path = tmp_path / "secrets" / "api-tokens.json"

    def issue(role: Role, name: str, market: str | None = None, vendor: str | None = None) -> str:
        token, _record = create_token(path, role, name=name, market=market, vendor=vendor)
        return token

    return Tokens(
        path=path,
        administrator=issue(Role.ADMINISTRATOR, "admin"),
        manager=issue(Role.MANAGER, "office"),
        screen=issue(Role.SCREEN, "hall-screen", market=MARKET),
        monitor=issue(Role.MONITOR, "prometheus"),
        stall_screen=issue(Role.SCREEN, "stall-a01", market=MARKET, vendor="V01"),
        other_market_manager=issue(Role.MANAGER, "elsewhere", market="elsewhere"),
    )


@pytest.fixture
def store_kind() -> str:
    """Overridden with ``@pytest.mark.parametrize("store_kind", BOTH_STORES)``."""
    return "sqlite"


@pytest.fixture
def store(request: pytest.FixtureRequest, store_kind: str, tmp_path: Path) -> Iterator[Store]:
    with open_store(store_kind, request, tmp_path, "api") as backend:
        yield backend


@pytest.fixture
def settings(
    tmp_path: Path, market_file: Path, tokens: Tokens, mosquitto_server: Mosquitto
) -> Settings:
    return Settings(
        markets=(market_file,),
        mqtt_url=mosquitto_server.url,
        spool_dir=tmp_path / "spool",
        sqlite_path=tmp_path / "store.db",
        api_tokens_file=tokens.path,
    )


@pytest.fixture
def live(settings: Settings, api_registry: Registry, store: Store) -> Iterator[LiveView]:
    view = LiveView(api_registry, store, live_mqtt_options(settings))
    view.start()
    wait_until(lambda: view.connected and view.synced, timeout=20, what="live view ready")
    yield view
    view.stop()


class Feeder:
    """The ingest path minus MQTT: spool (fsynced), then forwarder (validate, store)."""

    def __init__(self, spool_dir: Path, registry: Registry, store: Store) -> None:
        self.spool = Spool(spool_dir / "test-ingest.spool.db")
        self.forwarder = Forwarder(self.spool, store, Validator(registry))

    def spool_only(self, messages: Iterable[tuple[str, bytes]]) -> None:
        self.spool.append([(topic, payload, time.time_ns(), False) for topic, payload in messages])

    def ingest(self, messages: Iterable[tuple[str, bytes]]) -> None:
        self.spool_only(messages)
        self.forwarder.drain()

    def close(self) -> None:
        self.spool.close()


@pytest.fixture
def feeder(settings: Settings, api_registry: Registry, store: Store) -> Iterator[Feeder]:
    fed = Feeder(settings.spool_dir, api_registry, store)
    yield fed
    fed.close()


@dataclass
class Api:
    """A running API and what it runs on."""

    url: str
    client: httpx.Client
    app: FastAPI
    settings: Settings
    store: Store
    live: LiveView
    tokens: Tokens

    def request(
        self,
        method: str,
        path: str,
        token: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        sent = {**(headers or {}), **(bearer(token) if token else {})}
        return self.client.request(method, path, headers=sent, **kwargs)

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, token, **kwargs)

    def post(self, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, token, **kwargs)


def serve(
    settings: Settings,
    registry: Registry | RegistrySource,
    store: Store,
    live: LiveView,
    tokens: Tokens,
    management: Management | None = None,
    lock_keeper: LockKeeper | None = None,
) -> Iterator[Api]:
    app = create_app(
        options=api_options(settings),
        registry=registry,
        store=store,
        live=live,
        management=management,
        lock_keeper=lock_keeper,
    )
    with (
        ServerThread(app) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield Api(server.url, client, app, settings, store, live, tokens)


@pytest.fixture
def api(
    settings: Settings, api_registry: Registry, store: Store, live: LiveView, tokens: Tokens
) -> Iterator[Api]:
    yield from serve(settings, api_registry, store, live, tokens)
