"""The market database's errors; SQLAlchemy's are translated into these at its edge.

::

    MarketDatabaseError               a bad URL, or a request the data forbids
    ├── MarketDatabaseUnavailable     the database cannot be reached or migrated
    ├── NotFound                      no such market, vendor, stall, product or device
    ├── Conflict                      it exists already, or is still referenced
    │   ├── StaleEdit                 an edit made on a version that has changed since
    │   └── NeedsConfirmation         allowed, but only when the caller confirms (names why)
    ├── InvalidChange                 a change the market's rules refuse (names the field)
    ├── ImportRefused                 a market file that cannot be imported (names the field)
    └── BrokerRefused                 the MQTT broker did not make a device's user change
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


class StaleEdit(Conflict):
    """Someone else changed it since the version this edit was made on (HTTP 412)."""


class NeedsConfirmation(Conflict):
    """A change with consequences the caller must confirm (a vendor with stock on hand)."""


class InvalidChange(MarketDatabaseError):
    """The change breaks a rule of the market (a stall another vendor holds, …).

    ``field`` names the field at fault when there is one, for a form to show the
    message next to it.
    """

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = field


class ImportRefused(MarketDatabaseError):
    """A market file that cannot be imported; nothing was changed."""


class BrokerRefused(MarketDatabaseError):
    """The MQTT broker refused or did not answer a device's user change; nothing changed."""
