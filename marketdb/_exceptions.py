"""The market database's errors; SQLAlchemy's are translated into these at its edge.

::

    MarketDatabaseError               a bad URL, or a request the data forbids
    ├── MarketDatabaseUnavailable     the database cannot be reached or migrated
    ├── NotFound                      no such market, vendor, stall, product or device
    ├── Conflict                      it exists already, or is still referenced
    └── ImportRefused                 a market file that cannot be imported (names the field)
"""

from __future__ import annotations


class MarketDatabaseError(Exception):
    """Something about the market database or a request to it; the message says what."""


class MarketDatabaseUnavailable(MarketDatabaseError):
    """The database cannot be reached or its schema migrated."""


class NotFound(MarketDatabaseError):
    """The market, vendor, stall, product or device does not exist."""


class Conflict(MarketDatabaseError):
    """It exists already, or something still refers to it."""


class ImportRefused(MarketDatabaseError):
    """A market file that cannot be imported; nothing was changed."""
