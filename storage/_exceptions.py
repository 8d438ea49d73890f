"""Errors raised by stores. Third-party errors (httpx, sqlite3) are translated here.

    StoreError
    ├── StoreUnavailable      retry later: connection refused/reset, timeout, 5xx, 429,
    │   │                     database locked. Carries ``retry_after`` when the server said.
    │   └── StoreAuthError    credentials missing or wrong (401/403): a configuration
    │                         problem; retried like an outage, but logged as such.
    ├── StoreRejected         the store refused the data itself (HTTP 400, constraint);
    │                         retrying the same bytes cannot succeed. Carries ``detail``.
    └── StoreQueryError       a query failed for a reason other than availability.

Writers treat ``StoreUnavailable`` and ``StoreAuthError`` as "keep it and try
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
