"""The store contract of the store's own methods (``storage.base.Store``).

Runs once per backend through the parametrized ``store`` fixture in conftest.
"""

from __future__ import annotations

from storage.base import Store


def test_ping(store: Store) -> None:
    store.ping()
