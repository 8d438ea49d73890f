"""The ``store`` fixture: every contract test runs against each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from stallwatch.localservices import Influxd
from storage.base import Store
from storage.sqlite import SQLiteStore


@pytest.fixture(params=["sqlite", pytest.param("influx", marks=pytest.mark.influx)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    backend: Store
    if request.param == "sqlite":
        backend = SQLiteStore(tmp_path / "store.db")
    else:
        # Imported here so the SQLite tests neither need nor start influxd.
        from storage.influx.store import InfluxStore

        server = request.getfixturevalue("influx_server")
        assert isinstance(server, Influxd)
        backend = InfluxStore(server.url, f"t_{uuid4().hex[:12]}", create_database=True)
    with backend:
        yield backend
