"""Shared fixtures: real Mosquitto and influxd servers on free ports in temporary directories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.registry import Market, Registry, load_market
from stallwatch.localservices import Influxd, Mosquitto, influxd, mosquitto

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_MARKET = REPO / "examples" / "markets" / "nanmen.toml"


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


@pytest.fixture(scope="session")
def example_market() -> Market:
    return load_market(EXAMPLE_MARKET)


@pytest.fixture(scope="session")
def registry(example_market: Market) -> Registry:
    return Registry([example_market])
