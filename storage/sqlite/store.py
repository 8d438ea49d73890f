"""The embedded SQLite store: the zero-setup default backend."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from schemas.messages import Sale
from schemas.retention import RetentionPolicy
from storage import msgids
from storage.base import Store
from storage.hours import HourSplit, whole_hour_offsets
from storage.interfaces.devices import (
    STATUS_LOOKBACK_NS,
    ScaleStatusRow,
    statuses_in_force,
)
from storage.interfaces.footfall import FootfallRow, GateCountRow
from storage.interfaces.prices import PriceRow
from storage.interfaces.retention import RetentionReport
from storage.interfaces.sales import SaleRow, SalesHourRow, SalesSummaryRow, ScaleSalesRow
from storage.interfaces.traceability import (
    BatchBalanceRow,
    BatchRow,
    RapidTestRow,
    UnverifiedSalesRow,
)
from storage.records import (
    DeadLetter,
    Reading,
    from_ns,
    reading_as_dead_letter,
    require_aware,
    time_bound_ns,
    to_ns,
)
from storage.sqlite import queries, retention, rollups, verification
from storage.sqlite.codec import BATCH, SALE, EncodedRow, SqlValue, Table, encode
from storage.sqlite.connections import Connections, sqlite_errors, transaction
from storage.sqlite.interning import (
    INTERN_TABLES,
    PRODUCT,
    SALE_SOURCE,
    TRACE_CODE,
    Interner,
    InternTable,
    Key,
)
from storage.traceability import LATE_BATCH_GRACE, LATE_BATCH_GRACE_NS

#: Ids remembered per intern table. Series and products are bounded by the
#: registry (a 300-vendor market has ~12k price series); trace codes grow by a
#: few thousand a day, and only the recent ones are still sold from.
_INTERN_CACHE = 100_000
_MAX_SQLITE_INT = 2**63 - 1

#: Errors that concern the data of one reading rather than the store: that
#: reading is dead-lettered and the rest of the batch written.
_REFUSALS = (sqlite3.IntegrityError, sqlite3.DataError, OverflowError)


@dataclass(slots=True)
class _ResolvedIds:
    """Ids of one write's references, and which of them are not cached yet."""

    ids: dict[InternTable, dict[Key, int]] = field(default_factory=dict)
    fresh: dict[InternTable, dict[Key, int]] = field(default_factory=dict)


class SQLiteStore(Store):
    """Readings in one SQLite file (WAL mode); see ``storage.sqlite.schema`` for the layout.

    Safe to share between threads: writes are serialised on one connection,
    reads use one connection per thread (see ``storage.sqlite.connections``).

    ``synchronous`` is SQLite's ``PRAGMA synchronous`` for the writer. ``NORMAL``
    is the default because ingest acknowledges a message only once its own spool
    has fsynced it, so the few commits a power cut may lose are replayed from
    there; use ``FULL`` when something else writes without such a spool.
    ``busy_timeout`` is how long (seconds) to wait for another process's lock.
    """

    def __init__(
        self, path: Path | str, *, synchronous: str = "NORMAL", busy_timeout: float = 5.0
    ) -> None:
        self.path = Path(path)
        self._connections = Connections(
            self.path, synchronous=synchronous, busy_timeout=busy_timeout
        )
        self._interners = {
            table: Interner(table, capacity=_INTERN_CACHE) for table in INTERN_TABLES
        }

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # -- writing -----------------------------------------------------------------

    def write(
        self, readings: Sequence[Reading], dead_letters: Sequence[DeadLetter] = ()
    ) -> list[DeadLetter]:
        if not readings and not dead_letters:
            return []
        with self._connections.writer() as conn, sqlite_errors(f"writing {len(readings)} readings"):
            with transaction(conn):
                claims = msgids.sort_claims(readings, _stored_msg_ids(conn, readings))
                rows, unencodable = _encode_all(claims.accepted)
                ids = self._resolve_ids(conn, rows)
                rows = verification.with_trace_status(conn, rows, ids.ids.get(TRACE_CODE, {}))
                sales = _sales_of(rows, ids)
                stored = rollups.stored_sales(conn, {key for _, key, _ in sales})
                refusals = _insert_rows(conn, rows, ids)
                _update_rollups(conn, sales, stored, refusals, ids)
                verification.verify_late_sales(conn, _batches_written(rows, refusals))
                not_stored = [*unencodable, *((row.reading, why) for row, why in refusals)]
                _record_msg_ids(conn, claims.new, [reading for reading, _ in not_stored])
                refused = [_refusal(reading, reason) for reading, reason in not_stored]
                refused += [
                    reading_as_dead_letter(reading, msgids.REUSED_MSG_ID)
                    for reading in claims.reused
                ]
                letters = queries.dead_letter_values([*dead_letters, *refused])
                conn.executemany(queries.INSERT_DEAD_LETTER, letters)
            self._remember(ids)
        return refused

    def settle_rollups(self) -> int:
        """Nothing to do: the rollups are kept in the transaction of each write."""
        return 0

    def forget_msg_ids(self, before: datetime) -> None:
        require_aware(before)
        with (
            self._connections.writer() as conn,
            sqlite_errors("forgetting old msg_ids"),
            transaction(conn),
        ):
            conn.execute(queries.FORGET_MSG_IDS, {"before": to_ns(before)})

    def apply_retention(
        self, now: datetime, policies: Mapping[str, RetentionPolicy], *, dry_run: bool = False
    ) -> RetentionReport:
        """See :meth:`Store.apply_retention` and ``storage.sqlite.retention``."""
        require_aware(now)
        return retention.apply_retention(self._connections, now, policies, dry_run=dry_run)

    def _resolve_ids(self, conn: sqlite3.Connection, rows: Sequence[EncodedRow]) -> _ResolvedIds:
        wanted: dict[InternTable, set[Key]] = defaultdict(set)
        for row in rows:
            for table, key in row.refs:
                wanted[table].add(key)
        resolved = _ResolvedIds()
        for table, keys in wanted.items():
            resolved.ids[table], resolved.fresh[table] = self._interners[table].resolve(conn, keys)
        return resolved

    def _remember(self, resolved: _ResolvedIds) -> None:
        """Cache ids only after their transaction committed (see ``interning``)."""
        for table, fresh in resolved.fresh.items():
            self._interners[table].remember(fresh)

    # -- prices ------------------------------------------------------------------

    def latest_prices(self, market: str) -> list[PriceRow]:
        rows = self._query(queries.LATEST_PRICES, {"market": market}, "reading latest prices")
        return [queries.price_row(row) for row in rows]

    def price_history(
        self,
        market: str,
        start: datetime,
        end: datetime,
        *,
        plu: str | None = None,
        vendor: str | None = None,
    ) -> list[PriceRow]:
        params = {"market": market, **_range(start, end), "plu": plu, "vendor": vendor}
        rows = self._query(queries.PRICE_HISTORY, params, "reading price history")
        return [queries.price_row(row) for row in rows]

    def prices_before(
        self, market: str, moment: datetime, *, plu: str | None = None
    ) -> list[PriceRow]:
        require_aware(moment)
        params = {"market": market, "moment": time_bound_ns(moment), "plu": plu}
        rows = self._query(queries.PRICES_BEFORE, params, "reading prices before a moment")
        return [queries.price_row(row) for row in rows]

    # -- sales -------------------------------------------------------------------

    def sales(
        self,
        market: str,
        start: datetime,
        end: datetime,
        *,
        vendor: str | None = None,
        scale: str | None = None,
        plu: str | None = None,
    ) -> list[SaleRow]:
        params = {
            "market": market,
            **_range(start, end),
            "vendor": vendor,
            "scale": scale,
            "plu": plu,
        }
        unfiltered = vendor is None and scale is None and plu is None
        sql = queries.SALES_IN_RANGE if unfiltered else queries.SALES_OF_SOURCES_IN_RANGE
        return [queries.sale_row(row) for row in self._query(sql, params, "reading sales")]

    def sales_of_batch(self, market: str, trace_code: str) -> list[SaleRow]:
        """See :meth:`Store.sales_of_batch`: one range seek on the sales naming the code."""
        params = {
            "market": market,
            "trace_code": trace_code,
            **_own_sales_of(self.batch(market, trace_code)),
        }
        rows = self._query(queries.SALES_OF_BATCH, params, "reading sales of a batch")
        return [queries.sale_row(row) for row in rows]

    def sale_by_receipt(self, market: str, scale: str, msg_id: int) -> SaleRow | None:
        if not 0 <= msg_id <= _MAX_SQLITE_INT:
            return None  # no message id outside the contract's range was ever stored
        params = {"market": market, "scale": scale, "msg_id": msg_id}
        rows = self._query(queries.SALE_BY_RECEIPT, params, "reading a sale by receipt")
        return queries.sale_row(rows[0]) if rows else None

    def unverified_sales(
        self, market: str, start: datetime, end: datetime
    ) -> list[UnverifiedSalesRow]:
        """See :meth:`Store.unverified_sales`: from the partial index of such sales."""
        params = {"market": market, **_range(start, end)}
        rows = self._query(queries.UNVERIFIED_SALES, params, "counting unverified sales")
        return [queries.unverified_sales_row(market, row) for row in rows]

    def sales_summary(self, market: str, start: datetime, end: datetime) -> list[SalesSummaryRow]:
        """See :meth:`Store.sales_summary`: whole hours from the hourly rollup."""
        params = {"market": market, **_hour_split(start, end)}
        rows = self._query(queries.SALES_SUMMARY_BY_HOURS, params, "summing sales")
        return [queries.sales_summary_row(row) for row in rows]

    def sales_by_scale(self, market: str, start: datetime, end: datetime) -> list[ScaleSalesRow]:
        """See :meth:`Store.sales_by_scale`: whole hours from the hourly rollup."""
        params = {"market": market, **_hour_split(start, end)}
        rows = self._query(queries.SALES_BY_SCALE, params, "summing sales per scale")
        return [ScaleSalesRow(*row) for row in rows]

    def sales_by_hour(self, market: str, start: datetime, end: datetime) -> list[SalesHourRow]:
        params = {"market": market, **_hour_split(start, end)}
        rows = self._query(queries.SALES_BY_HOUR, params, "summing sales per hour")
        return [queries.sales_hour_row(market, row) for row in rows]

    # -- batches -----------------------------------------------------------------

    def batch(self, market: str, trace_code: str) -> BatchRow | None:
        params = {"market": market, "trace_code": trace_code}
        rows = self._query(queries.BATCH_BY_TRACE_CODE, params, "reading a batch")
        return queries.batch_row(rows[0]) if rows else None

    def batches(
        self, market: str, start: datetime, end: datetime, *, vendor: str | None = None
    ) -> list[BatchRow]:
        params = {"market": market, **_range(start, end), "vendor": vendor}
        sql = queries.BATCHES_IN_RANGE if vendor is None else queries.BATCHES_OF_VENDOR_IN_RANGE
        return [queries.batch_row(row) for row in self._query(sql, params, "reading batches")]

    def rapid_tests(self, market: str, start: datetime, end: datetime) -> list[RapidTestRow]:
        params = {"market": market, **_range(start, end)}
        rows = self._query(queries.RAPID_TESTS_IN_RANGE, params, "reading rapid tests")
        return [queries.rapid_test_row(row) for row in rows]

    def rapid_tests_of_batch(self, market: str, trace_code: str) -> list[RapidTestRow]:
        batch = self.batch(market, trace_code)
        if batch is None:
            return []
        params = {
            "market": market,
            "trace_code": trace_code,
            "vendor": batch.vendor,
            "plu": batch.plu,
            "since": time_bound_ns(batch.ts - LATE_BATCH_GRACE),
        }
        rows = self._query(queries.RAPID_TESTS_OF_BATCH, params, "reading a batch's rapid tests")
        return [queries.rapid_test_row(row) for row in rows]

    def batch_balances(self, market: str, start: datetime, end: datetime) -> list[BatchBalanceRow]:
        """See :meth:`Store.batch_balances`: one query, sales so far from ``batch_sold``."""
        params = {"market": market, **_range(start, end), "grace_ns": LATE_BATCH_GRACE_NS}
        rows = self._query(queries.BATCH_BALANCES, params, "reading batch balances")
        return [queries.batch_balance_row(row) for row in rows]

    def batch_alerts(self, market: str, start: datetime, end: datetime) -> list[BatchBalanceRow]:
        """See :meth:`Store.batch_alerts`: :meth:`batch_balances` filtered in SQL."""
        params = {"market": market, **_range(start, end), "grace_ns": LATE_BATCH_GRACE_NS}
        rows = self._query(queries.BATCH_ALERTS, params, "reading batch alerts")
        return [queries.batch_balance_row(row) for row in rows]

    # -- footfall ----------------------------------------------------------------

    def gate_counts(self, market: str, start: datetime, end: datetime) -> list[GateCountRow]:
        params = {"market": market, **_range(start, end)}
        rows = self._query(queries.GATE_COUNTS_IN_RANGE, params, "reading gate counts")
        return [queries.gate_count_row(row) for row in rows]

    def gate_counts_before(self, market: str, moment: datetime) -> list[GateCountRow]:
        require_aware(moment)
        params = {"market": market, "moment": time_bound_ns(moment)}
        rows = self._query(queries.GATE_COUNTS_BEFORE, params, "reading gate count baselines")
        return [queries.gate_count_row(row) for row in rows]

    def footfall_hourly(self, market: str, start: datetime, end: datetime) -> list[FootfallRow]:
        """See :meth:`Store.footfall_hourly`: whole hours from the hourly rollup.

        ``footfall_hourly`` holds, per gate and UTC hour, the sum of each reading's
        increase over the gate's previous reading; within the range that previous
        reading is exactly the one the computation from raw counts uses (the
        baseline for the first), so whole hours can be taken from it as they are.
        The partial hours at the edges are computed from raw counts. That needs
        local hours to be UTC hours; for a time zone with offsets that are not
        whole hours (India, Nepal, …) everything is computed from raw counts.
        """
        tz = start.tzinfo
        split = _hour_split(start, end)
        hours_start, hours_end = split["hours_start"], split["hours_end"]
        if tz is None or hours_start >= hours_end or not whole_hour_offsets(tz, start, end):
            return super().footfall_hourly(market, start, end)
        head = self._footfall_from_counts(market, start, from_ns(hours_start).astimezone(tz))
        params = {"market": market, "start": hours_start, "end": hours_end}
        rows = self._query(queries.FOOTFALL_HOURS, params, "reading hourly footfall")
        whole = [
            FootfallRow(market, gate, from_ns(hour_ns).astimezone(tz), people_in, people_out)
            for gate, hour_ns, people_in, people_out in rows
        ]
        tail = self._footfall_from_counts(market, from_ns(hours_end).astimezone(tz), end)
        return sorted([*head, *whole, *tail], key=lambda row: (row.gate, row.hour))

    def _footfall_from_counts(
        self, market: str, start: datetime, end: datetime
    ) -> list[FootfallRow]:
        if start >= end:
            return []
        return super().footfall_hourly(market, start, end)

    # -- devices -----------------------------------------------------------------

    def scale_status(self, market: str) -> list[ScaleStatusRow]:
        params = {
            "market": market,
            "lookback_ns": STATUS_LOOKBACK_NS,
        }
        rows = self._query(queries.SCALE_STATUS_CANDIDATES, params, "reading scale status")
        return statuses_in_force(map(queries.scale_status_row, rows))

    def device_last_seen(self, market: str, since: datetime) -> dict[str, datetime]:
        require_aware(since)
        params = {"market": market, "since": time_bound_ns(since)}
        rows = self._query(queries.DEVICE_LAST_SEEN, params, "reading when devices were seen")
        newest: dict[str, int] = {}
        for device, received_ns in rows:
            if received_ns is not None and received_ns > newest.get(device, -1):
                newest[device] = received_ns
        return {device: from_ns(received_ns) for device, received_ns in sorted(newest.items())}

    # -- dead letters ------------------------------------------------------------

    def dead_letters(
        self, start: datetime, end: datetime, *, market: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        require_aware(start, end)
        params = {"start": to_ns(start), "end": to_ns(end), "market": market, "limit": limit}
        rows = self._query(queries.DEAD_LETTERS, params, "reading dead letters")
        return [queries.dead_letter_row(row) for row in rows]

    def message_counts(
        self, start: datetime, end: datetime, *, sales: bool = True
    ) -> dict[tuple[str, str], int]:
        params = _range(start, end)
        sql = queries.MESSAGE_COUNTS_OF_MARKET
        if not sales:
            sql = queries.MESSAGE_COUNTS_BUT_SALES_OF_MARKET
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for market in sorted(self._markets()):
            rows = self._query(sql, {"market": market, **params}, "counting readings")
            for device, count in rows:
                counts[(market, device)] += count
        return dict(counts)

    def _markets(self) -> set[str]:
        """Every market with at least one reading stored."""
        markets: set[str] = set()
        for sql in queries.NEXT_MARKET_QUERIES:
            market = ""  # sorts before every identifier
            while True:
                [(market,)] = self._query(sql, {"market": market}, "listing markets")
                if market is None:
                    break
                markets.add(market)
        return markets

    def reject_counts(self, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
        require_aware(start, end)
        params = {"start": to_ns(start), "end": to_ns(end)}
        rows = self._query(queries.REJECT_COUNTS, params, "counting rejects")
        return {(market, device): count for market, device, count in rows}

    # -- lifecycle ---------------------------------------------------------------

    def ping(self) -> None:
        self._query("SELECT COUNT(*) FROM sqlite_schema", {}, "pinging the store")

    def close(self) -> None:
        self._connections.close()

    def _query(self, sql: str, params: Mapping[str, object], action: str) -> list[queries.Row]:
        with sqlite_errors(action):
            rows: list[queries.Row] = self._connections.reader().execute(sql, params).fetchall()
        return rows


# -- helpers -----------------------------------------------------------------------


def _encode_all(readings: Sequence[Reading]) -> tuple[list[EncodedRow], list[tuple[Reading, str]]]:
    """Rows for the readings, and the readings that cannot be encoded with the reason."""
    rows: list[EncodedRow] = []
    refused: list[tuple[Reading, str]] = []
    for reading in readings:
        try:
            rows.append(encode(reading))
        except ValueError as exc:
            refused.append((reading, str(exc)))
    return rows, refused


def _stored_msg_ids(
    conn: sqlite3.Connection, readings: Sequence[Reading]
) -> dict[msgids.MsgIdKey, int]:
    """The ledger's digests of the keys these readings claim (one query)."""
    keys = msgids.ledger_keys(readings)
    if not keys:
        return {}
    rows = conn.execute(queries.STORED_MSG_IDS, {"keys": json.dumps(list(keys))})
    return {(market, device, msg_id): digest for market, device, msg_id, digest in rows}


def _record_msg_ids(
    conn: sqlite3.Connection, entries: Sequence[msgids.LedgerEntry], not_stored: Sequence[Reading]
) -> None:
    """Add the write's new ledger entries, except for readings the store refused."""
    refused = {(r.market, r.device, r.message.msg_id) for r in not_stored}
    conn.executemany(
        queries.INSERT_MSG_ID,
        [
            (e.market, e.device, e.msg_id, e.digest, e.received_ns)
            for e in entries
            if e.key not in refused
        ],
    )


#: A sale of a write: its row, its primary key and what the rollups count of it.
_WrittenSale = tuple[EncodedRow, rollups.SaleKey, rollups.SaleAmounts]
#: A row the store refused, and SQLite's reason.
_Refusal = tuple[EncodedRow, str]


def _sales_of(rows: Sequence[EncodedRow], resolved: _ResolvedIds) -> list[_WrittenSale]:
    if not any(row.table is SALE for row in rows):
        return []
    sources, products, traces = (
        resolved.ids[table] for table in (SALE_SOURCE, PRODUCT, TRACE_CODE)
    )
    sales = []
    for row in rows:
        message = row.reading.message
        if row.table is SALE and isinstance(message, Sale):
            # refs are (sale source, product, trace code), in encode()'s order
            (_, source), (_, product), (_, trace) = row.refs
            key = (row.time_ns, sources[source], products[product])
            sales.append((row, key, (traces[trace], message.total_fen, message.weight_g)))
    return sales


def _batches_written(rows: Sequence[EncodedRow], refusals: Sequence[_Refusal]) -> list[EncodedRow]:
    refused = {id(row) for row, _ in refusals}
    return [row for row in rows if row.table is BATCH and id(row) not in refused]


def _update_rollups(
    conn: sqlite3.Connection,
    sales: Sequence[_WrittenSale],
    stored: Mapping[rollups.SaleKey, rollups.SaleAmounts],
    refusals: Sequence[_Refusal],
    resolved: _ResolvedIds,
) -> None:
    """Count the sales just written (not the refused ones) in the sale rollups."""
    if not sales:
        return
    refused = {id(row) for row, _ in refusals}
    written = [(key, amounts) for row, key, amounts in sales if id(row) not in refused]
    market_of = {source: key[0] for key, source in resolved.ids[SALE_SOURCE].items()}
    rollups.apply(conn, rollups.rollup_changes(stored, written, market_of))


def _insert_rows(
    conn: sqlite3.Connection, rows: Sequence[EncodedRow], ids: _ResolvedIds
) -> list[_Refusal]:
    """Insert all rows, one ``executemany`` per table; returns the refused rows.

    Refusals are rare (no validated reading is refused), so when one occurs the
    batch is rolled back to the savepoint and retried row by row to isolate it.
    """
    by_table: dict[Table, list[tuple[EncodedRow, tuple[SqlValue, ...]]]] = defaultdict(list)
    for row in rows:
        by_table[row.table].append((row, _row_values(row, ids)))
    conn.execute("SAVEPOINT readings")
    try:
        for table, items in by_table.items():
            conn.executemany(table.insert_sql, [values for _, values in items])
        refused = []
    except _REFUSALS:
        conn.execute("ROLLBACK TO readings")
        refused = _insert_one_by_one(conn, by_table)
    conn.execute("RELEASE readings")
    return refused


def _insert_one_by_one(
    conn: sqlite3.Connection,
    by_table: Mapping[Table, list[tuple[EncodedRow, tuple[SqlValue, ...]]]],
) -> list[_Refusal]:
    refused: list[_Refusal] = []
    for table, items in by_table.items():
        for row, values in items:
            conn.execute("SAVEPOINT reading")
            try:
                conn.execute(table.insert_sql, values)
            except _REFUSALS as exc:
                conn.execute("ROLLBACK TO reading")
                refused.append((row, str(exc)))
            conn.execute("RELEASE reading")
    return refused


def _row_values(row: EncodedRow, resolved: _ResolvedIds) -> tuple[SqlValue, ...]:
    ids = resolved.ids
    return (*[ids[table][key] for table, key in row.refs], row.time_ns, *row.values)


def _refusal(reading: Reading, reason: str) -> DeadLetter:
    """A reading the store cannot hold, as a dead letter carrying the message as JSON."""
    return reading_as_dead_letter(reading, f"refused by the SQLite store: {reason}")


def _own_sales_of(batch: BatchRow | None) -> dict[str, SqlValue]:
    """The parameters of ``SALES_OF_BATCH`` for the batch's own sales (every sale without one)."""
    if batch is None:
        return {"vendor": None, "plu": None, "since": -_MAX_SQLITE_INT - 1}
    since = time_bound_ns(batch.ts - LATE_BATCH_GRACE)
    return {"vendor": batch.vendor, "plu": batch.plu, "since": since}


def _range(start: datetime, end: datetime) -> dict[str, int]:
    require_aware(start, end)
    return {"start": time_bound_ns(start), "end": time_bound_ns(end)}


def _hour_split(start: datetime, end: datetime) -> dict[str, int]:
    """The parameters of ``SALES_SUMMARY_BY_HOURS``/``SALES_BY_HOUR`` (see ``HourSplit``)."""
    return HourSplit.of(start, end).as_params()
