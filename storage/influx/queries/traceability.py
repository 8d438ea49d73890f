"""Batches and the sales that name them (``storage.interfaces.traceability``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from storage._exceptions import StoreQueryError
from storage.influx.client import Row
from storage.influx.indexes import (
    TRACE_INDEX,
    TraceEntry,
    day_start_ns,
    trace_entries,
    trace_select,
)
from storage.influx.influxql import (
    Column,
    Condition,
    Query,
    Select,
    SelectColumns,
    equals,
    not_equals,
    time_before,
    time_from,
)
from storage.influx.reader import Reader, bound_ns, device_range, optional_equals
from storage.influx.rollups import BATCH_ALERT, BATCH_SOLD
from storage.influx.rows import (
    NEWEST_WITH_FALLBACK,
    batch_row,
    int_column,
    optional_bool_column,
    rapid_test_row,
    sorted_sales,
    str_column,
    tagged_rows,
    trace_status_column,
    whole_rows,
)
from storage.interfaces.sales import SaleRow
from storage.interfaces.traceability import (
    BatchBalanceRow,
    BatchRow,
    RapidTestRow,
    UnverifiedSalesRow,
)
from storage.records import device_time
from storage.traceability import LATE_BATCH_GRACE, LATE_BATCH_GRACE_NS, BatchKey, TraceStatus

#: How far before a batch's intake time :func:`sales_of_batch` looks, because scale
#: clocks drift and an intake station may report late: the grace window of sale
#: verification.
SALES_BEFORE_INTAKE: Final = LATE_BATCH_GRACE
_NS_PER_MS: Final = 1_000_000
_NS_PER_DAY: Final = 86_400 * 1_000_000_000


def batch(reader: Reader, market: str, trace_code: str) -> BatchRow | None:
    """The batch's newest record: its newest ``trace_index`` entries, then those points.

    Two requests, each a read of a few points: the code's index bucket (one
    small series) and the batch points it names, by exact time. The two newest
    entries are read so that a newest record still being written leaves the
    one before it to show.
    """
    entries = trace_entries(
        reader.statements(
            [trace_select(reader, market, trace_code, kind="batch", newest=NEWEST_WITH_FALLBACK)]
        )
    )
    if not entries:
        return None
    points = [_batch_point(reader, entry, number) for number, entry in enumerate(entries)]
    rows = [batch_row(row) for row in whole_rows("batch", reader.statements(points))]
    return max(rows, key=lambda r: r.ts) if rows else None


def _batch_point(reader: Reader, entry: TraceEntry, number: int) -> Query:
    """The batch point an index entry names (any station: its time and code are enough)."""
    return Select(
        "batch",
        where=(
            Condition("market", "=", f"market{number}", entry.market),
            Condition("vendor", "=", f"vendor{number}", entry.vendor),
            Condition("plu", "=", f"plu{number}", entry.plu),
            Condition("time", "=", f"time{number}", entry.at_ns),
            Condition("trace_code", "=", f"code{number}", entry.trace_code),
        ),
        retention_policy=reader.policy_for("batch", entry.market),
    ).query()


def batches(
    reader: Reader, market: str, start: datetime, end: datetime, *, vendor: str | None = None
) -> list[BatchRow]:
    series = reader.select(
        "batch",
        equals("market", market),
        optional_equals("vendor", vendor),
        *device_range(start, end),
    )
    rows = map(batch_row, whole_rows("batch", series))
    return sorted(rows, key=lambda r: (r.ts, r.station, r.msg_id))


def rapid_tests(reader: Reader, market: str, start: datetime, end: datetime) -> list[RapidTestRow]:
    series = reader.select("rapid_test", equals("market", market), *device_range(start, end))
    return _in_test_order(map(rapid_test_row, whole_rows("rapid_test", series)))


def rapid_tests_of_batch(reader: Reader, market: str, trace_code: str) -> list[RapidTestRow]:
    """See :meth:`Store.rapid_tests_of_batch`: the batch first (through its index entry),
    then its vendor's series of its product from the grace window before its intake."""
    found = batch(reader, market, trace_code)
    if found is None:
        return []
    series = reader.select(
        "rapid_test",
        equals("market", market),
        equals("vendor", found.vendor),
        equals("plu", found.plu),
        Condition("trace_code", "=", "trace_code", trace_code),
        Condition("time", ">=", "since", bound_ns(found.ts - LATE_BATCH_GRACE)),
    )
    return _in_test_order(map(rapid_test_row, whole_rows("rapid_test", series)))


def _in_test_order(rows: Iterable[RapidTestRow]) -> list[RapidTestRow]:
    return sorted(rows, key=lambda r: (r.ts, r.station, r.msg_id))


@dataclass(frozen=True, slots=True)
class SaleSpan:
    """Point times between which a batch's own sales lie (inclusive)."""

    first_ns: int
    #: None: up to the newest sale of the batch vendor's series of its product
    last_ns: int | None


def sale_span(reader: Reader, market: str, trace_code: str, batch: BatchKey) -> SaleSpan:
    """Where to look for the sales of the batch whose newest record is ``batch``.

    From :data:`SALES_BEFORE_INTAKE` before its intake, as the contract says,
    to its newest sale. Nothing stored says yet when that was, so the range is
    open: the batch vendor's series of its product since then.
    """
    first_ns = batch.time_ns - batch.time_ns % _NS_PER_MS - LATE_BATCH_GRACE_NS
    return SaleSpan(first_ns, None)


def sales_of_batch(reader: Reader, market: str, trace_code: str) -> list[SaleRow]:
    """See :meth:`Store.sales_of_batch`: found through the code's ``trace_index`` entries.

    One read of the code's index bucket gives its batch records and the days
    of its unverified sales per scale and product. A registered batch's sales
    are its vendor's series of its product in :func:`sale_span`, filtered by
    code, and the unverified ones of them the index names (so they are found
    even outside the span); without a batch they are the sales the index names,
    since none can be verified: each entry is a day of one scale's series of a
    product, filtered by code.
    """
    entries = trace_entries(reader.statements([trace_select(reader, market, trace_code)]))
    days = [entry for entry in entries if entry.kind == "sale"]
    newest = _newest_batch(entries)
    first_ns: int | None = None
    reads: list[Query] = []
    if newest is not None:
        span = sale_span(reader, market, trace_code, newest)
        first_ns = span.first_ns
        reads.append(_own_sales(reader, market, trace_code, newest, span))
        days = [
            entry
            for entry in days
            if (entry.vendor, entry.plu) == (newest.vendor, newest.plu)
            and entry.at_ns + _NS_PER_DAY > span.first_ns
        ]
    reads += [_sales_of_day(reader, entry, n, first_ns) for n, entry in enumerate(days, start=1)]
    if not reads:
        return []
    rows = {(row.scale, row.ts, row.msg_id): row for row in sorted_sales(reader.statements(reads))}
    return sorted(rows.values(), key=lambda r: (r.ts, r.scale, r.msg_id))


def _newest_batch(entries: Sequence[TraceEntry]) -> BatchKey | None:
    batches = [entry for entry in entries if entry.kind == "batch"]
    if not batches:
        return None
    newest = max(batches, key=lambda entry: entry.at_ns)
    return BatchKey(newest.vendor, newest.plu, newest.at_ns)


def _own_sales(
    reader: Reader, market: str, trace_code: str, batch: BatchKey, span: SaleSpan
) -> Query:
    """The batch vendor's sales of its product naming the code, in ``span``."""
    where = [
        Condition("market", "=", "market0", market),
        Condition("vendor", "=", "vendor0", batch.vendor),
        Condition("plu", "=", "plu0", batch.plu),
        Condition("trace_code", "=", "code0", trace_code),
        Condition("time", ">=", "first0", span.first_ns),
    ]
    if span.last_ns is not None:
        where.append(Condition("time", "<=", "last0", span.last_ns))
    return Select(
        "sale", where=tuple(where), retention_policy=reader.policy_for("sale", market)
    ).query()


def _sales_of_day(reader: Reader, entry: TraceEntry, number: int, first_ns: int | None) -> Query:
    """The sales an index entry names: a day of its scale's series of the product, by code.

    ``first_ns`` (the batch's window) cuts the day's start.
    """
    if entry.scale is None:
        raise StoreQueryError(f"trace_index sales entry of {entry.at_ns} has no scale")
    start = entry.at_ns if first_ns is None else max(entry.at_ns, first_ns)
    return Select(
        "sale",
        where=(
            Condition("market", "=", f"market{number}", entry.market),
            Condition("scale", "=", f"scale{number}", entry.scale),
            Condition("vendor", "=", f"vendor{number}", entry.vendor),
            Condition("plu", "=", f"plu{number}", entry.plu),
            Condition("trace_code", "=", f"code{number}", entry.trace_code),
            Condition("time", ">=", f"start{number}", start),
            Condition("time", "<", f"end{number}", entry.at_ns + _NS_PER_DAY),
        ),
        retention_policy=reader.policy_for("sale", entry.market),
    ).query()


def unverified_sales(
    reader: Reader, market: str, start: datetime, end: datetime
) -> list[UnverifiedSalesRow]:
    """See :meth:`Store.unverified_sales`: found through the trace index.

    Every sale that did not check out has a ``trace_index`` entry for its scale,
    vendor, product and UTC day (``storage.influx.indexes``), so the entries of the
    range's days say which sale series to look at; the statuses of those series'
    sales in the range are listed, one statement each, in one request. A scan of
    ``trace_status`` over the range instead opens every sale series of the market
    (65 ms for a day of a 300-vendor market, where the index read takes a few),
    and is what runs when more than :data:`_SERIES_ONE_BY_ONE` series are named.
    """
    low, high = (bound_ns(start), bound_ns(end))
    if low >= high:
        return []
    entries = reader.select(
        TRACE_INDEX,
        equals("market", market),
        equals("kind", "sale"),
        # a sale entry is timed within its UTC day (indexes.TraceEntry.line)
        time_from(day_start_ns(low)),
        time_before(day_start_ns(high - 1) + _NS_PER_DAY),
    )
    named = sorted({(e.scale or "", e.vendor, e.plu) for e in trace_entries(entries)})
    if len(named) > _SERIES_ONE_BY_ONE:
        return _unverified_by_scan(reader, market, start, end)
    queries = [
        _unverified_of_series(reader, market, series, number, low, high)
        for number, series in enumerate(named)
    ]
    counts: dict[tuple[str, str, TraceStatus], int] = defaultdict(int)
    for one in reader.statements(queries) if queries else []:
        scale, vendor, _ = named[one.statement_id]
        for row in one.rows:
            if row.get("trace_status") is not None:
                counts[(vendor, scale, trace_status_column(row))] += 1
    return _unverified_rows(market, counts)


#: More (scale, vendor, product) series with unverified sales than this in a range,
#: and one scan of the range is cheaper than a statement per series.
_SERIES_ONE_BY_ONE: Final = 200


def _unverified_of_series(
    reader: Reader, market: str, series: tuple[str, str, str], number: int, low: int, high: int
) -> Query:
    """The statuses of one scale's sales of a product by a vendor in [low, high) that
    did not check out."""
    scale, vendor, plu = series
    return SelectColumns(
        "sale",
        columns=(Column("trace_status"),),
        where=(
            Condition("market", "=", f"market{number}", market),
            Condition("vendor", "=", f"vendor{number}", vendor),
            Condition("plu", "=", f"plu{number}", plu),
            Condition("scale", "=", f"scale{number}", scale),
            Condition("trace_status", "!=", f"verified{number}", TraceStatus.VERIFIED.value),
            Condition("time", ">=", f"start{number}", low),
            Condition("time", "<", f"end{number}", high),
        ),
        retention_policy=reader.policy_for("sale", market),
    ).query()


def _unverified_by_scan(
    reader: Reader, market: str, start: datetime, end: datetime
) -> list[UnverifiedSalesRow]:
    """Lists the status of the range's sales that did not check out, per vendor and scale:
    a scan of the ``trace_status`` field of every sale series in the range."""
    series = reader.select_columns(
        SelectColumns(
            "sale",
            columns=(Column("trace_status"),),
            where=(
                equals("market", market),
                not_equals("trace_status", TraceStatus.VERIFIED.value),
                *device_range(start, end),
            ),
            group_by=("vendor", "scale"),
        )
    )
    counts: dict[tuple[str, str, TraceStatus], int] = defaultdict(int)
    for row in tagged_rows(series):
        counts[(str_column(row, "vendor"), str_column(row, "scale"), trace_status_column(row))] += 1
    return _unverified_rows(market, counts)


def _unverified_rows(
    market: str, counts: Mapping[tuple[str, str, TraceStatus], int]
) -> list[UnverifiedSalesRow]:
    order = list(TraceStatus)
    return [
        UnverifiedSalesRow(market, vendor, scale, status, sales)
        for (vendor, scale, status), sales in sorted(
            counts.items(), key=lambda item: (*item[0][:2], order.index(item[0][2]))
        )
    ]


def batch_balances(
    reader: Reader, market: str, start: datetime, end: datetime
) -> list[BatchBalanceRow]:
    """See :meth:`Store.batch_balances`: the batches and their ``batch_sold`` rollup points.

    Each batch record's ``batch_sold`` point (same series tags, same time) holds
    its own vendor's sales of its product naming the code, from
    :data:`SALES_BEFORE_INTAKE` before its intake (``storage.influx.rollups``):
    one request of two range reads, however many sales there were. Both list
    only the columns a balance shows, without ``GROUP BY``: a week of a
    300-vendor market is 11,700 batches, and their whole records were 2.5 MB.
    """
    window = _Window(market, start, end)
    selects = [
        window.select(0, "batch", _named(*_BALANCE_BATCH_FIELDS, *_RECORD_TAGS), reader),
        window.select(1, BATCH_SOLD, _named(*_BALANCE_SOLD_FIELDS, *_RECORD_TAGS), reader),
    ]
    series = reader.statements([select.query() for select in selects])
    sold = {
        _record_key(row): row
        for one in series
        if one.statement_id == 1
        for row in tagged_rows([one])
        if type(row.get("sales")) is int and type(row.get("sold_g")) is int
    }
    records = [
        row
        for one in series
        if one.statement_id == 0
        for row in tagged_rows([one])
        if all(row.get(name) is not None for name in (*_BALANCE_BATCH_REQUIRED, *_RECORD_TAGS))
    ]
    records.sort(key=_record_order)
    return [_batch_balance(market, row, sold.get(_record_key(row))) for row in records]


def batch_alerts(
    reader: Reader, market: str, start: datetime, end: datetime, *, census: bool = True
) -> list[BatchBalanceRow]:
    """See :meth:`Store.batch_alerts`: only the ``batch_sold`` points flagged ``alert``.

    A ``batch_sold`` point carries its record's quantity and test result and the
    flag (``storage.influx.rollups``), so a week's handful of alerts travel and not
    its 12,000 balances. The first request finds the flagged points' series and
    times (:func:`_flagged`: in ``batch_alert`` when the database is all of the
    current format, ``census=False``). The second reads those few points whole,
    by series and exact time.
    """
    window = _Window(market, start, end)
    flagged = _flagged(reader, window, census=census)
    if flagged is None:
        return [row for row in batch_balances(reader, market, start, end) if row.needs_alert]
    if not flagged:
        return []
    shown = _named("alert", *_BALANCE_SOLD_FIELDS, *_ALERT_RECORD_FIELDS, *_RECORD_TAGS)
    points = [
        SelectColumns(
            BATCH_SOLD,
            columns=shown,
            where=(
                Condition("market", "=", f"market{n}", market),
                *(Condition(tag, "=", f"{tag}{n}", str_column(row, tag)) for tag in _RECORD_TAGS),
                Condition("time", "=", f"time{n}", int_column(row, "time")),
            ),
            retention_policy=reader.policy_for(BATCH_SOLD, market),
        ).query()
        for n, row in enumerate(flagged)
        if all(isinstance(row.get(tag), str) for tag in _RECORD_TAGS)
    ]
    rows = [
        row
        for row in tagged_rows(reader.statements(points))
        if row.get("alert") is True and all(row.get(f) is not None for f in _ALERT_ROW_FIELDS)
    ]
    rows.sort(
        key=lambda row: (
            int_column(row, "time"),
            str_column(row, "station"),
            str_column(row, "trace_code"),
        )
    )
    return [_batch_balance(market, row, row) for row in rows]


def _flagged(reader: Reader, window: _Window, *, census: bool) -> list[Row] | None:
    """The record tags and times of the range's balances flagged ``alert``; None when
    the range holds points of a format without the flag (read the balances instead).

    A database all of the current format (``census=False``) keeps the flags in
    ``batch_alert``, a few series per market. Otherwise ``batch_sold`` is filtered on
    its flag, with a count of its points with and without one beside it.
    """
    by_flag = _named("alert", *_RECORD_TAGS)
    if not census:
        alerts = window.select(0, BATCH_ALERT, by_flag, reader, equals("alert", True))
        return list(tagged_rows(reader.statements([alerts.query()])))
    both = Column("sales", "COUNT", alias="points"), Column("alert", "COUNT", alias="flagged")
    queries = [
        window.select(0, BATCH_SOLD, by_flag, reader, equals("alert", True)).query(),
        window.select(1, BATCH_SOLD, both, reader).query(),
    ]
    series = reader.statements(queries)
    counts = [row for one in series if one.statement_id == 1 for row in tagged_rows([one])]
    if any(row.get("points") != row.get("flagged") for row in counts):
        return None
    return [row for one in series if one.statement_id == 0 for row in tagged_rows([one])]


#: What an alert's row needs of its ``batch_sold`` point (a point being rewritten may
#: lack some for a moment: it shows on the next read).
#: (``rapid_test_passed`` is not among them: a batch not tested at intake has none.)
_ALERT_ROW_FIELDS: Final = ("sales", "trace_code", "quantity_g")


@dataclass(frozen=True, slots=True)
class _Window:
    """A market's device-time range, read by selects that may share one request."""

    market: str
    start: datetime
    end: datetime

    def select(
        self,
        number: int,
        measurement: str,
        columns: tuple[Column, ...],
        reader: Reader,
        *where: Condition,
    ) -> SelectColumns:
        """``columns`` of ``measurement`` in the window, without ``GROUP BY``; parameters are
        suffixed with ``number``, so selects numbered apart can share a request."""
        low, high = device_range(self.start, self.end)
        return SelectColumns(
            measurement,
            columns=columns,
            where=(
                equals("market", self.market, param=f"market{number}"),
                Condition("time", ">=", f"start{number}", low.value),
                Condition("time", "<", f"end{number}", high.value),
                *(replace(one, param=f"{one.param}{number}") for one in where),
            ),
            retention_policy=reader.policy_for(measurement, self.market),
        )


def _named(*names: str) -> tuple[Column, ...]:
    return tuple(Column(name) for name in names)


#: What a balance shows of a batch record and of its ``batch_sold`` point; a record
#: without one of its fields yet is a write in flight, left out as everywhere, but for
#: the test result: a batch not tested at intake has none.
_BALANCE_BATCH_FIELDS: Final = ("trace_code", "quantity_g", "rapid_test_passed", "msg_id")
_BALANCE_BATCH_REQUIRED: Final = tuple(f for f in _BALANCE_BATCH_FIELDS if f != "rapid_test_passed")
_BALANCE_SOLD_FIELDS: Final = ("sales", "sold_g", "last_sale_ns")
#: What a ``batch_sold`` point repeats of its record, for :func:`batch_alerts`.
_ALERT_RECORD_FIELDS: Final = ("trace_code", "quantity_g", "rapid_test_passed")
_RECORD_TAGS: Final = ("station", "vendor", "plu")


def _record_key(row: Row) -> tuple[str, str, str, int]:
    """A batch record's identity: its series tags and point time."""
    return (
        str_column(row, "station"),
        str_column(row, "vendor"),
        str_column(row, "plu"),
        int_column(row, "time"),
    )


def _record_order(row: Row) -> tuple[int, str, int]:
    return int_column(row, "time"), str_column(row, "station"), int_column(row, "msg_id")


def _batch_balance(market: str, record: Row, sold: Row | None) -> BatchBalanceRow:
    """A listed batch ``record`` with its ``batch_sold`` point (nothing sold without one)."""
    passed = optional_bool_column(record, "rapid_test_passed")
    sales = 0 if sold is None else int_column(sold, "sales")
    return BatchBalanceRow(
        market=market,
        trace_code=str_column(record, "trace_code"),
        vendor=str_column(record, "vendor"),
        plu=str_column(record, "plu"),
        intake=device_time(int_column(record, "time")),
        quantity_g=int_column(record, "quantity_g"),
        rapid_test_passed=passed,
        sales=sales,
        sold_g=int_column(sold, "sold_g") if sold is not None and sales else 0,
        last_sale=(
            device_time(int_column(sold, "last_sale_ns")) if sold is not None and sales else None
        ),
    )
