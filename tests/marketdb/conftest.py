"""The market database on both of its backends (``database_url`` in tests/conftest.py:
an SQLite file, or a database of its own in a real PostgreSQL cluster)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from marketdb.database import open_database, session_factory


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    opened = open_database(database_url)
    yield opened
    opened.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with session_factory(engine)() as opened:
        yield opened
