"""The store: every concern's interface in one object, plus its lifecycle.

Each concern has its own interface and row types in ``storage.interfaces``
(writing; prices; sales; traceability; footfall; devices; retention) and its own contract
tests in ``tests/storage/contract/``. Every backend (``storage.sqlite.SQLiteStore``,
``storage.influx.InfluxStore``) implements :class:`Store`, so all of them, and
passes every contract test. The conventions every query follows are in
``storage.interfaces``.
"""

from __future__ import annotations

import abc

from storage.interfaces.devices import DeviceStore
from storage.interfaces.footfall import FootfallStore
from storage.interfaces.prices import PriceStore
from storage.interfaces.retention import RetentionStore
from storage.interfaces.sales import SalesStore
from storage.interfaces.traceability import TraceabilityStore
from storage.interfaces.writing import WritingStore


class Store(
    WritingStore,
    PriceStore,
    SalesStore,
    TraceabilityStore,
    FootfallStore,
    DeviceStore,
    RetentionStore,
):
    """A place readings are kept and asked about."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the store answers."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and files."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
