"""The ``store`` fixture: every contract test runs against each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.base import Store
from tests.conftest import BOTH_STORES, open_store


@pytest.fixture(params=BOTH_STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with open_store(request.param, request, tmp_path, "t") as backend:
        yield backend
