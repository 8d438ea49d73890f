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
from typing import Final

from storage.influx.client import InfluxClient, Series
from storage.influx.influxql import (
    Condition,
    ParamValue,
    Query,
    Select,
    SelectColumns,
    equals,
    statements,
    time_before,
    time_from,
)
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
        """One SELECT in the reader's retention policy, or in ``retention_policy``."""
        select = Select(
            measurement,
            where=tuple(condition for condition in where if condition is not None),
            retention_policy=retention_policy or self.retention_policy,
            count_of=count_of,
            group_by=group_by,
            newest_first=newest_first,
            limit=limit,
        )
        return self.client.query(self.database, select.query())

    def select_columns(self, select: SelectColumns) -> list[Series]:
        if self.retention_policy is not None:
            select = replace(select, retention_policy=self.retention_policy)
        return self.client.query(self.database, select.query())

    def statements(self, selects: Sequence[Query]) -> list[Series]:
        """Run the statements, as many to a request as fit in its URL."""
        series: list[Series] = []
        for batch in _fitting_in_urls(selects):
            series += self.client.query(self.database, statements(batch))
        return series

    def write(self, lines: Sequence[str]) -> None:
        """Write ``lines`` in one request, in the reader's retention policy."""
        self.client.write(self.database, lines, retention_policy=self.retention_policy)


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
