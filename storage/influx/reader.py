"""How the store's queries reach InfluxDB: a :class:`Reader`, and the conditions they share.

A reader is one database and one retention policy, read through a client; a
kind of data kept in a retention policy of its own (the msg_id ledger) gets a
reader of its own (``dataclasses.replace(reader, retention_policy=...)``).
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, TypeVar

from storage.influx.client import InfluxClient, Series
from storage.influx.influxql import (
    Condition,
    ParamValue,
    Query,
    Select,
    SelectColumns,
    equals,
    quote_ident,
    statements,
    time_before,
    time_from,
)
from storage.influx.lineprotocol import series_tags
from storage.influx.routing import Routing, market_of
from storage.records import require_aware, time_bound_ns, to_ns

#: Characters of URL-encoded statements and parameters per request: a query travels in
#: the URL (GET), and URL parts are limited (httpx: 65,536 characters).
_REQUEST_URL_CHARS: Final = 48_000
_UNRESERVED: Final = (string.ascii_letters + string.digits + "-._~").encode()


@dataclass(frozen=True)
class Reader:
    """Points in ``database``'s ``retention_policy`` (its default one if None), through ``client``.

    Named for what most of its users do; the write path writes through it too.
    """

    client: InfluxClient
    database: str
    retention_policy: str | None
    #: a retention policy per (market, kind) (``storage.influx.routing``); ``None``: one policy
    routing: Routing | None = None

    def policy_for(self, measurement: str, market: str | None) -> str | None:
        """The policy a market's measurement is in; the base one when not routed.

        A routed measurement read across markets has no one policy: see :meth:`routed`.
        """
        kind = None if self.routing is None else self.routing.kind_of(measurement)
        if kind is None or self.routing is None:
            return self.retention_policy
        if market is None:
            raise ValueError(f"{measurement} is kept per market: read it market by market")
        return self.routing.name(market, kind)

    def policies_of(self, measurement: str) -> list[str | None]:
        """Every policy holding the measurement's points: one, or one per market when routed."""
        kind = None if self.routing is None else self.routing.kind_of(measurement)
        if kind is None or self.routing is None:
            return [self.retention_policy]
        return list(self.routing.names_of(kind))

    def routed(self, select: _Routable) -> list[_Routable]:
        """``select`` in its market's policy; across markets, once in each policy of its kind."""
        kind = None if self.routing is None else self.routing.kind_of(select.measurement)
        if kind is None or self.routing is None:
            if self.retention_policy is None or select.retention_policy is not None:
                return [select]
            return [replace(select, retention_policy=self.retention_policy)]
        market = market_of(select.where)
        if market is not None:
            return [replace(select, retention_policy=self.routing.name(market, kind))]
        return [replace(select, retention_policy=name) for name in self.routing.names_of(kind)]

    def select(
        self,
        measurement: str,
        *where: Condition | None,
        group_by: tuple[str, ...] = (),
        newest_first: bool = False,
        limit: int | None = None,
        count_of: str | None = None,
        retention_policy: str | None = None,
    ) -> list[Series]:
        """One SELECT in the reader's retention policy (its market's), or in ``retention_policy``.

        Across markets of a routed measurement, one in each policy of its kind
        (the series of each market are in one policy only).
        """
        select = Select(
            measurement,
            where=tuple(condition for condition in where if condition is not None),
            retention_policy=retention_policy,
            count_of=count_of,
            group_by=group_by,
            newest_first=newest_first,
            limit=limit,
        )
        return self._run(self.routed(select))

    def select_columns(self, select: SelectColumns) -> list[Series]:
        return self._run(self.routed(select))

    def select_each(self, selects: Sequence[Select | SelectColumns]) -> list[Series]:
        """The series of all ``selects``, as few requests as their URLs allow.

        For many small reads whose answers are taken together (their rows carry
        their tags): one round trip per request instead of one per select.
        """
        routed: list[Select | SelectColumns] = []
        for select in selects:
            # Each kind on its own, so routed() keeps the type it is given.
            if isinstance(select, Select):
                routed += self.routed(select)
            else:
                routed += self.routed(select)
        return self._run(routed)

    def series_keys(self, measurement: str, where: tuple[Condition, ...]) -> list[dict[str, str]]:
        """The tags of each series of ``measurement`` matching ``where`` (tag conditions), from
        the index (``SHOW SERIES``): which series exist, without reading their points."""
        conditions = " AND ".join(condition.render() for condition in where)
        text = f"SHOW SERIES FROM {quote_ident(measurement)}"
        if conditions:
            text += f" WHERE {conditions}"
        query = Query(text, {condition.param: condition.value for condition in where})
        return [
            series_tags(str(row.get("key", "")))
            for one in self.client.query(self.database, query)
            for row in one.rows
        ]

    def _run(self, selects: Sequence[Select | SelectColumns]) -> list[Series]:
        if not selects:
            return []
        if len(selects) == 1:
            return self.client.query(self.database, selects[0].query())
        # One request: each statement's parameters get its number (they share a namespace).
        numbered = [
            replace(
                select,
                where=tuple(replace(c, param=f"{c.param}_{i}") for c in select.where),
            ).query()
            for i, select in enumerate(selects)
        ]
        return self.statements(numbered)

    def statements(self, selects: Sequence[Query]) -> list[Series]:
        """Run the statements, as many to a request as fit in its URL."""
        series: list[Series] = []
        for batch in _fitting_in_urls(selects):
            series += self.client.query(self.database, statements(batch))
        return series

    def write(self, lines: Sequence[str]) -> None:
        """Write ``lines`` in one request, in the reader's retention policy.

        Routed: a request per retention policy the lines' (market, kind) name.
        """
        if self.routing is None:
            self.client.write(self.database, lines, retention_policy=self.retention_policy)
            return
        for policy, group in self._by_policy(lines).items():
            self.client.write(self.database, group, retention_policy=policy)

    def _by_policy(self, lines: Sequence[str]) -> dict[str | None, list[str]]:
        groups: dict[str | None, list[str]] = {}
        for line in lines:
            measurement, market = measurement_and_market(line)
            policy = (
                self.retention_policy if market is None else self.policy_for(measurement, market)
            )
            groups.setdefault(policy, []).append(line)
        return groups


#: The statements a reader routes.
_Routable = TypeVar("_Routable", Select, SelectColumns)


def measurement_and_market(line: str) -> tuple[str, str | None]:
    """A line's measurement and ``market`` tag (``None`` if it has none).

    Our measurement names need no escapes, and market ids are identifiers (no
    escapes either); a ``,market=`` inside another tag's value has its comma
    escaped, so it is skipped.
    """
    head_end = line.find(" ")
    while head_end > 0 and line[head_end - 1] == "\\":  # an escaped space in a tag
        head_end = line.find(" ", head_end + 1)
    head = line if head_end < 0 else line[:head_end]
    measurement, _, _ = head.partition(",")
    start = 0
    while (found := head.find(",market=", start)) >= 0:
        if head[found - 1] != "\\":
            value_start = found + len(",market=")
            value_end = head.find(",", value_start)
            return measurement, head[value_start : None if value_end < 0 else value_end]
        start = found + 1
    return measurement, None


def chunks(count: int, size: int) -> list[tuple[int, int]]:
    """(start, end) of chunks of ``size`` lines; a small last one rides with the one before.

    A write of ``size`` readings carries a few more lines (index entries), which
    must not cost a request of their own: a last chunk under a tenth of
    ``size`` joins the previous one.
    """
    bounds = [(start, min(start + size, count)) for start in range(0, count, size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < size // 10:
        (start, _), (_, end) = bounds[-2], bounds.pop()
        bounds[-1] = (start, end)
    return bounds


def _url_length(text: str) -> int:
    """How long ``text`` is percent-encoded, at most: 3 characters per byte but the unreserved.

    (``urllib.parse.quote`` on every statement cost the write path more than its lookups.)
    """
    encoded = text.encode()
    return len(encoded) + 2 * len(encoded.translate(None, _UNRESERVED))


def _fitting_in_urls(selects: Sequence[Query]) -> Iterator[list[Query]]:
    """The statements in runs whose URL-encoded text and parameters fit in one request."""
    run: list[Query] = []
    size = 0
    for select in selects:
        length = _url_length(select.text) + _url_length(select.params_json() or "")
        if run and size + length > _REQUEST_URL_CHARS:
            yield run
            run, size = [], 0
        run.append(select)
        size += length
    if run:
        yield run


# -- conditions --------------------------------------------------------------------------


def aware_ns(moment: datetime) -> int:
    require_aware(moment)
    return to_ns(moment)


def bound_ns(moment: datetime) -> int:
    """Range bound on point times for device times (see ``time_bound_ns``)."""
    require_aware(moment)
    return time_bound_ns(moment)


def optional_equals(column: str, value: ParamValue | None) -> Condition | None:
    return None if value is None else equals(column, value)


def device_range(start: datetime, end: datetime) -> tuple[Condition, Condition]:
    return time_from(bound_ns(start)), time_before(bound_ns(end))
