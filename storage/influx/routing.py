"""Retention by kind on InfluxDB: a retention policy per (market, kind), and where points go.

With a mapping of market ids to :class:`RetentionPolicy` (the market files'
``[retention]`` tables), each (market, kind) gets a retention policy of its
own, named ``sw_<market>_<kind>`` (``sw_nanmen_heartbeats``). Markets not in
the mapping (the ``_unregistered`` dead letters, a market dropped from the
registry) share the policies ``sw_<kind>``, with :class:`RetentionPolicy`'s
defaults: no market id is empty, so those names are never a market's.

A policy's ``DURATION`` is the kind's days plus :data:`MARGIN_DAYS`: InfluxDB
drops whole shards (:data:`SHARD_DURATION`) by the server's clock, so its
expiry is only a backstop behind the store's exact pass
(``storage.influx.retention``), which deletes to the hour and keeps each
series' state at the cut-off. The margin also keeps a settle's raw points
(seconds old) far from any expiry.

Measurements outside ``KIND_OF_MEASUREMENT`` (the msg_id ledger, rollup marks,
watermarks, backfill progress) and the ``receipt_index`` (timed by msg_id, so
near 1970: it lives with the ledger) stay in the store's base policies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from schemas.retention import DataKind, RetentionPolicy
from storage.influx.influxql import Condition, Query, quote_ident
from storage.interfaces.retention import KIND_OF_MEASUREMENT

#: Days a retention policy keeps data past its kind's days.
MARGIN_DAYS: Final = 30
SHARD_DURATION: Final = "7d"
#: Timed by msg_id with the ledger, in the store's ledger policy.
_UNROUTED: Final = frozenset({"receipt_index"})


@dataclass(frozen=True)
class Routing:
    """Which retention policy each (market, kind) is written to and read from."""

    policies: Mapping[str, RetentionPolicy] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "policies", MappingProxyType(dict(self.policies)))

    def policy_of(self, market: str) -> RetentionPolicy:
        """The market's policy; :class:`RetentionPolicy`'s defaults for markets not mapped."""
        return self.policies.get(market) or RetentionPolicy()

    def name(self, market: str, kind: DataKind) -> str:
        """``sw_<market>_<kind>``, or ``sw_<kind>`` for a market not mapped."""
        if market in self.policies:
            return f"sw_{market}_{kind.value}"
        return f"sw_{kind.value}"

    def kind_of(self, measurement: str) -> DataKind | None:
        """The kind a measurement is routed by; ``None``: it stays in the base policy."""
        if measurement in _UNROUTED:
            return None
        return KIND_OF_MEASUREMENT.get(measurement)

    def names_of(self, kind: DataKind) -> list[str]:
        """Every policy holding ``kind`` (each mapped market's, then the shared one)."""
        return [*(self.name(market, kind) for market in sorted(self.policies)), self.name("", kind)]

    def durations(self) -> dict[str, int]:
        """Each policy's name and ``DURATION`` in days (the kind's days and the margin)."""
        markets: list[tuple[str, RetentionPolicy]] = [
            *sorted(self.policies.items()),
            ("", RetentionPolicy()),
        ]
        return {
            self.name(market, kind): policy.days(kind) + MARGIN_DAYS
            for market, policy in markets
            for kind in DataKind
        }


def market_of(where: Iterable[Condition]) -> str | None:
    """The market a query's conditions pin (``"market" = $…``), if one."""
    for condition in where:
        if condition.column == "market" and condition.operator == "=":
            value = condition.value
            return value if isinstance(value, str) else None
    return None


def policy_statements(
    database: str, durations: Mapping[str, int], existing: Sequence[str]
) -> list[Query]:
    """``CREATE`` the policies missing, ``ALTER`` the others to their duration (1.x)."""
    statements = []
    for name, days in sorted(durations.items()):
        verb = "ALTER" if name in existing else "CREATE"
        replication = "" if verb == "ALTER" else " REPLICATION 1"
        statements.append(
            Query(
                f"{verb} RETENTION POLICY {quote_ident(name)} ON {quote_ident(database)} "
                f"DURATION {days}d{replication} SHARD DURATION {SHARD_DURATION}"
            )
        )
    return statements
