"""Errors raised by stores: the whole tree, whichever backend raises it.

    StoreError
    ├── StoreUnavailable      retry later: connection refused/reset, timeout, 5xx, 429,
    │   │                     database locked. Carries ``retry_after`` when the server said.
    │   ├── StoreAuthError    credentials missing or wrong (401/403): a configuration
    │   │                     problem; retried like an outage, but logged as such.
    │   └── InfluxDatabaseNotFound   (``storage.influx.client``) the database, DBRP
    │                         mapping or bucket does not exist: configuration again.
    ├── StoreRejected         the store refused the data itself (HTTP 400, constraint);
    │                         retrying the same bytes cannot succeed. Carries ``detail``.
    ├── StoreQueryError       a query failed for a reason other than availability.
    ├── StoreClosed           the store was closed; using it afterwards is a bug.
    ├── SchemaError           a SQLite file whose schema this code cannot use.
    └── V2SetupError          (``storage.influx.v2setup``) InfluxDB 2.x refused the
                              provisioning, or its state conflicts with it.

The two InfluxDB-only errors live with the code that raises them; the rest live
here. Each backend translates its own third-party errors into this tree in one
place: ``storage.sqlite.connections.translate`` for sqlite3, and
``storage.influx.client`` (and ``v2setup`` for influxdb-client) for httpx.
Nothing above ``storage`` sees a sqlite3 or httpx exception.

Writers treat ``StoreUnavailable`` (with its subclasses) as "keep it and try
again" and ``StoreRejected`` as "isolate the bad line, dead-letter it, write the rest".
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class for every store failure."""


class StoreUnavailable(StoreError):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreRejected(StoreError):
    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class StoreAuthError(StoreUnavailable):
    """Authentication failed; retried like an outage because it is fixed by configuration."""


class StoreQueryError(StoreError):
    """A query could not be answered."""


class StoreClosed(StoreError):
    """The store was closed; using it afterwards is a programming error."""


class SchemaError(StoreError):
    """The database file has a schema this code cannot use."""
