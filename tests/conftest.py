"""Shared fixtures: real Mosquitto, influxd and PostgreSQL servers on free ports in temporary
directories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from schemas.registry import Market, Registry, load_market
from schemas.retention import MAX_DAYS, RetentionPolicy
from stallwatch.localservices import Influxd, Mosquitto, Postgres, influxd, mosquitto, postgres
from storage import spec
from storage.base import Store
from storage.records import UNREGISTERED
from tests.storage.factories import MARKET, OTHER_MARKET

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_MARKET = REPO / "examples" / "markets" / "nanmen.toml"
#: The market database's backends (``database_url``).
MARKET_DATABASES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """One PostgreSQL cluster for the session (initdb in a temporary directory, a free port)."""
    with postgres(tmp_path_factory.mktemp("postgres")) as server:
        assert isinstance(server, Postgres)
        yield server


@pytest.fixture(params=MARKET_DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh market database: an SQLite file, or a database of its own in the cluster."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'market.db'}"
        return
    from sqlalchemy import create_engine, text

    server: Postgres = request.getfixturevalue("postgres_server")
    name = f"market_{uuid4().hex[:12]}"
    admin = create_engine(server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield server.database_url(name)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def influx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    """One influxd for the session; tests isolate themselves by database name."""
    with influxd(tmp_path_factory.mktemp("influxd")) as server:
        assert isinstance(server, Influxd)
        yield server


@pytest.fixture
def mosquitto_server(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh broker per test: persistent sessions must not leak between tests."""
    with mosquitto(tmp_path / "mosquitto") as broker:
        assert isinstance(broker, Mosquitto)
        yield broker


#: Parametrize a ``store_kind`` with these to run a test on both backends.
BOTH_STORES = ["sqlite", pytest.param("influx", marks=pytest.mark.influx)]
#: The store contract's backends: also InfluxDB with a retention policy per (market, kind).
CONTRACT_STORES = [*BOTH_STORES, pytest.param("influx-routed", marks=pytest.mark.influx)]
#: Kept for a century: the tests' data (2025) is never beyond a routed store's policies.
KEEP_ALL = RetentionPolicy(
    trace=MAX_DAYS,
    prices=MAX_DAYS,
    heartbeats=MAX_DAYS,
    gate_counts=MAX_DAYS,
    dead_letters=MAX_DAYS,
    rollups=MAX_DAYS,
)
#: The markets the contract tests write (others would go to the shared ``sw_<kind>``).
ROUTED_MARKETS = (MARKET, OTHER_MARKET, "xiaohe", UNREGISTERED)


def open_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> Store:
    """A fresh store of ``kind``: a SQLite file in ``tmp_path``, or a new influxd database."""
    if kind == "sqlite":
        return spec.open_store(spec.SQLiteSpec(tmp_path / "store.db"))
    # Looked up here so the SQLite tests neither need nor start influxd.
    server = request.getfixturevalue("influx_server")
    assert isinstance(server, Influxd)
    database = f"{prefix}_{uuid4().hex[:12]}"
    retention = None
    if kind == "influx-routed":
        retention = tuple((market, KEEP_ALL) for market in ROUTED_MARKETS)
    return spec.open_store(
        spec.InfluxSpec(server.url, database, create_database=True, retention=retention)
    )


@pytest.fixture(scope="session")
def example_market() -> Market:
    return load_market(EXAMPLE_MARKET)


@pytest.fixture(scope="session")
def registry(example_market: Market) -> Registry:
    return Registry([example_market])


def assert_page_security_headers(response: httpx.Response) -> None:
    """An HTML page: its policy forbids framing, and the browser may not sniff or leak URLs."""
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy
    assert "default-src" in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
