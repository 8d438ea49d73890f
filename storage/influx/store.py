"""``InfluxStore``: the :class:`~storage.base.Store` on InfluxDB's v1 ``/write`` and ``/query``.

The store only wires its parts together:

* :mod:`storage.influx.rows`: the points' schema (measurements, tags, fields)
  and how rows decode into the store's row types;
* :mod:`storage.influx.reader`: the :class:`~storage.influx.reader.Reader` every
  query takes (client, database, retention policy);
* :mod:`storage.influx.writer`, :mod:`~storage.influx.ledger`,
  :mod:`~storage.influx.verification`: the write path (chunked writes that isolate
  refused lines, the msg_id ledger, sales' trace statuses);
* :mod:`storage.influx.indexes`: where a trace code's and a receipt's points are;
* :mod:`storage.influx.rollups`: the hourly rollups (marks written with the raw
  points, settled from raw by ``settle_rollups``);
* :mod:`storage.influx.queries`: the reads, a module per interface.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime

import httpx

from schemas.retention import RetentionPolicy
from storage._exceptions import StoreError, StoreUnavailable
from storage.base import Store
from storage.hours import HourSplit, whole_hour_offsets
from storage.influx.client import InfluxClient, RetryPolicy
from storage.influx.indexes import RECEIPT_INDEX, IndexedDay, index_day
from storage.influx.influxql import Query, quote_ident
from storage.influx.ledger import MsgIdLedger
from storage.influx.queries import dead_letters, devices, footfall, prices, sales, traceability
from storage.influx.reader import Reader
from storage.influx.retention import InfluxRetention
from storage.influx.rollups import Rollups
from storage.influx.routedcopy import RoutedCopy
from storage.influx.routing import Routing, policy_statements
from storage.influx.verification import SaleVerification
from storage.influx.writer import Writer
from storage.interfaces.devices import ScaleStatusRow
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
from storage.records import DeadLetter, Reading, from_ns

log = logging.getLogger(__name__)


class InfluxStore(Store):
    """Readings in InfluxDB, through the v1 API that 1.x, 2.x and 3.x all serve.

    ``write`` sends lines in chunks of ``batch_lines`` and isolates the lines
    InfluxDB refuses (:class:`~storage.influx.writer.Writer`).
    """

    def __init__(
        self,
        url: str,
        database: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        retention_policy: str | None = None,
        msg_id_retention_policy: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        create_database: bool = False,
        batch_lines: int = 5000,
        retry: RetryPolicy | None = None,
        clock: Callable[[], int] = time.time_ns,
        retention: Mapping[str, RetentionPolicy] | None = None,
        create_retention_policies: bool = False,
    ) -> None:
        if batch_lines < 1:
            raise ValueError("batch_lines must be at least 1")
        self._client = InfluxClient(
            url,
            token=token,
            username=username,
            password=password,
            timeout=timeout,
            transport=transport,
            retry=retry,
        )
        # With ``retention``, each (market, kind) has a retention policy of its own
        # (storage.influx.routing); without, everything is in ``retention_policy``.
        self._routing = None if retention is None else Routing(retention)
        self._reader = Reader(self._client, database, retention_policy, self._routing)
        # The ledger's points are timed by msg_id (near 1970): a policy that drops old
        # points refuses them, so the ledger may live in a policy of its own that keeps
        # data forever (docs/influxdb-compatibility.md).
        ledger_rp = msg_id_retention_policy or retention_policy
        # The receipt index is timed by msg_id too: it lives with the ledger.
        self._receipts = replace(self._reader, retention_policy=ledger_rp)
        self._ledger = MsgIdLedger(self._receipts, batch_lines)
        self._batch_lines = batch_lines
        # The clock (ns) times the rollup marks and the settle's watermark, and says
        # when a code found without a batch is looked up again.
        verification = SaleVerification(self._reader, batch_lines, clock=clock)
        self._rollups = Rollups(self._reader, batch_lines, clock)
        self._writer = Writer(self._reader, self._ledger, verification, batch_lines, self._rollups)
        self._clock = clock
        self._format_looked_at = False
        self._retention = InfluxRetention(self._reader_for, self._rollups)
        try:
            if create_database:
                self._client.create_database(database)
                if msg_id_retention_policy is not None:
                    self._client.create_forever_retention_policy(database, msg_id_retention_policy)
            if create_database or create_retention_policies:
                self.ensure_retention_policies()
        except BaseException:
            self._client.close()
            raise

    # -- writing -----------------------------------------------------------------------
    def write(
        self, readings: Sequence[Reading], dead_letters: Sequence[DeadLetter] = ()
    ) -> list[DeadLetter]:
        if not self._format_looked_at:
            # Before a new database's first points: it will hold this version's rollups only.
            self._rollups.mark_format_if_new()
            self._format_looked_at = True
        return self._writer.write(readings, dead_letters)

    def settle_rollups(self) -> int:
        """See :meth:`Store.settle_rollups`: recomputes the marked buckets from raw points
        (``storage.influx.rollups``); returns how many."""
        return self._rollups.settle()

    def _reader_for(self, measurement: str, market: str) -> Reader:
        """The reader of a market's measurement: its retention policy."""
        if measurement == RECEIPT_INDEX:
            return self._receipts
        return self._reader

    def routed_copy(self) -> RoutedCopy | None:
        """Copying the base policy's points into the routed ones (``storage.influx.routedcopy``),
        or ``None`` when the store does not route."""
        if self._routing is None:
            return None
        return RoutedCopy(self._reader, self._routing, self._clock())

    @property
    def rollups(self) -> Rollups:
        """The rollups' marks and settle pass, for the backfill command."""
        return self._rollups

    def forget_msg_ids(self, before: datetime) -> None:
        self._ledger.forget(before)

    def apply_retention(
        self, now: datetime, policies: Mapping[str, RetentionPolicy], *, dry_run: bool = False
    ) -> RetentionReport:
        """See :meth:`Store.apply_retention` and ``storage.influx.retention``: the rollups
        are settled first, then each (market, kind)'s points before its cut-off deleted.

        A routed store also brings its markets' retention policies to ``policies``'
        days (and the margin) first.
        """
        if not dry_run and self._routing is not None:
            self.ensure_retention_policies(policies)
        return self._retention.apply(now, policies, dry_run=dry_run)

    def ensure_retention_policies(self, policies: Mapping[str, RetentionPolicy] = {}) -> None:
        """Create the routed retention policies missing and ALTER the others (1.x).

        ``policies`` overrides the days of the store's markets. Without routing,
        nothing to do. 2.x/3.x do not serve these statements over the v1 API: there,
        one bucket per (market, kind) with a DBRP mapping of its name is made
        beforehand (docs/influxdb-compatibility.md); this logs and goes on.
        """
        if self._routing is None:
            return
        known = {**self._routing.policies}
        known.update(
            (market, policy) for market, policy in (policies or {}).items() if market in known
        )
        durations = Routing(known).durations()
        database = self._reader.database
        try:
            existing = self._client.query(
                database, Query(f"SHOW RETENTION POLICIES ON {quote_ident(database)}")
            )
            names = [str(row.get("name")) for one in existing for row in one.rows]
            for statement in policy_statements(database, durations, names):
                self._client.execute(statement, database=database)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            log.warning(
                "cannot create or alter the retention policies per market and kind (%s): on "
                "InfluxDB 2.x/3.x make a bucket per policy with a DBRP mapping of its name",
                exc,
            )

    def dead_letters(
        self, start: datetime, end: datetime, *, market: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        return dead_letters.dead_letters(self._reader, start, end, market=market, limit=limit)

    def reject_counts(self, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
        return dead_letters.reject_counts(self._reader, start, end)

    def index_day(self, market: str, day: date) -> IndexedDay:
        """Build the trace and receipt indexes of one UTC day from its raw points.

        For databases written before the indexes (``storage.influx.indexes``);
        idempotent, so a backfill may redo a day.
        """
        return index_day(
            self._reader, market, day, receipts=self._receipts, batch_lines=self._batch_lines
        )

    # -- prices ------------------------------------------------------------------------
    def latest_prices(self, market: str) -> list[PriceRow]:
        return prices.latest_prices(self._reader, market, self._clock())

    def price_history(
        self,
        market: str,
        start: datetime,
        end: datetime,
        *,
        plu: str | None = None,
        vendor: str | None = None,
    ) -> list[PriceRow]:
        return prices.price_history(self._reader, market, start, end, plu=plu, vendor=vendor)

    def prices_before(
        self, market: str, moment: datetime, *, plu: str | None = None
    ) -> list[PriceRow]:
        return prices.prices_before(self._reader, market, moment, plu=plu)

    # -- sales -------------------------------------------------------------------------
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
        return sales.sales(self._reader, market, start, end, vendor=vendor, scale=scale, plu=plu)

    def sale_by_receipt(self, market: str, scale: str, msg_id: int) -> SaleRow | None:
        return sales.sale_by_receipt(self._reader, self._receipts, market, scale, msg_id)

    def sales_summary(self, market: str, start: datetime, end: datetime) -> list[SalesSummaryRow]:
        return sales.sales_summary(self._reader, market, start, end)

    def sales_by_scale(self, market: str, start: datetime, end: datetime) -> list[ScaleSalesRow]:
        census = not self._rollups.all_of_format()
        return sales.sales_by_scale(self._reader, market, start, end, census=census)

    def sales_by_hour(self, market: str, start: datetime, end: datetime) -> list[SalesHourRow]:
        return sales.sales_by_hour(self._reader, market, start, end)

    # -- traceability ------------------------------------------------------------------
    def batch(self, market: str, trace_code: str) -> BatchRow | None:
        return traceability.batch(self._reader, market, trace_code)

    def batches(
        self, market: str, start: datetime, end: datetime, *, vendor: str | None = None
    ) -> list[BatchRow]:
        return traceability.batches(self._reader, market, start, end, vendor=vendor)

    def sales_of_batch(self, market: str, trace_code: str) -> list[SaleRow]:
        return traceability.sales_of_batch(self._reader, market, trace_code)

    def rapid_tests(self, market: str, start: datetime, end: datetime) -> list[RapidTestRow]:
        return traceability.rapid_tests(self._reader, market, start, end)

    def rapid_tests_of_batch(self, market: str, trace_code: str) -> list[RapidTestRow]:
        return traceability.rapid_tests_of_batch(self._reader, market, trace_code)

    def unverified_sales(
        self, market: str, start: datetime, end: datetime
    ) -> list[UnverifiedSalesRow]:
        return traceability.unverified_sales(self._reader, market, start, end)

    def batch_balances(self, market: str, start: datetime, end: datetime) -> list[BatchBalanceRow]:
        return traceability.batch_balances(self._reader, market, start, end)

    def batch_alerts(self, market: str, start: datetime, end: datetime) -> list[BatchBalanceRow]:
        census = not self._rollups.all_of_format()
        return traceability.batch_alerts(self._reader, market, start, end, census=census)

    # -- footfall ----------------------------------------------------------------------
    def gate_counts(self, market: str, start: datetime, end: datetime) -> list[GateCountRow]:
        return footfall.gate_counts(self._reader, market, start, end)

    def gate_counts_before(self, market: str, moment: datetime) -> list[GateCountRow]:
        return footfall.gate_counts_before(self._reader, market, moment)

    def footfall_hourly(self, market: str, start: datetime, end: datetime) -> list[FootfallRow]:
        """See :meth:`Store.footfall_hourly`: whole hours from the ``footfall_hourly`` rollup.

        The partial hours at the edges are computed from raw counts. That needs
        local hours to be UTC hours; for a time zone with offsets that are not
        whole hours (India, Nepal, …) everything is computed from raw counts.
        """
        tz = start.tzinfo
        split = HourSplit.of(start, end)
        if (
            tz is None
            or split.hours_start >= split.hours_end
            or not whole_hour_offsets(tz, start, end)
        ):
            return super().footfall_hourly(market, start, end)
        head = self._footfall_from_counts(market, start, from_ns(split.hours_start).astimezone(tz))
        whole = footfall.footfall_hours(self._reader, market, split, tz)
        tail = self._footfall_from_counts(market, from_ns(split.hours_end).astimezone(tz), end)
        return sorted([*head, *whole, *tail], key=lambda row: (row.gate, row.hour))

    def _footfall_from_counts(
        self, market: str, start: datetime, end: datetime
    ) -> list[FootfallRow]:
        if start >= end:
            return []
        return super().footfall_hourly(market, start, end)

    # -- devices -----------------------------------------------------------------------
    def scale_status(self, market: str) -> list[ScaleStatusRow]:
        return devices.scale_status(self._reader, market)

    def device_last_seen(self, market: str, since: datetime) -> dict[str, datetime]:
        return devices.device_last_seen(self._reader, market, since)

    def message_counts(
        self, start: datetime, end: datetime, *, sales: bool = True
    ) -> dict[tuple[str, str], int]:
        census = sales and not self._rollups.all_of_format()
        return devices.message_counts(self._reader, start, end, sales=sales, census=census)

    # -- lifecycle ---------------------------------------------------------------------
    def ping(self) -> None:
        self._client.ping()

    def close(self) -> None:
        self._client.close()
