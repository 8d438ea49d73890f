"""The ``store`` fixture: every contract test runs against each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from stallwatch.localservices import Influxd
from storage.base import Store
from storage.sqlite import SQLiteStore
from tests.conftest import BOTH_STORES, CONTRACT_STORES, open_store


@pytest.fixture(params=CONTRACT_STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with open_store(request.param, request, tmp_path, "t") as backend:
        yield backend


@pytest.fixture(params=BOTH_STORES)
def store_pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two store objects on the same data, as two ingest instances (or a restart) have."""
    if request.param == "sqlite":
        first: Store = SQLiteStore(tmp_path / "store.db")
        second: Store = SQLiteStore(tmp_path / "store.db")
    else:
        from storage.influx.store import InfluxStore

        server = request.getfixturevalue("influx_server")
        assert isinstance(server, Influxd)
        database = f"t_{uuid4().hex[:12]}"
        first = InfluxStore(server.url, database, create_database=True)
        second = InfluxStore(server.url, database)
    with first, second:
        yield first, second
