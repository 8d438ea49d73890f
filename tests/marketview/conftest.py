"""Fixtures for the read core's tests: a real store (SQLite unless ``store_kind`` says)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.base import Store
from tests.conftest import open_store


@pytest.fixture
def store_kind() -> str:
    """Overridden with ``@pytest.mark.parametrize("store_kind", BOTH_STORES)``."""
    return "sqlite"


@pytest.fixture
def store(request: pytest.FixtureRequest, store_kind: str, tmp_path: Path) -> Iterator[Store]:
    with open_store(store_kind, request, tmp_path, "marketview") as backend:
        yield backend
