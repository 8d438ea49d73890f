"""The store interface: writes of readings and dead letters, and domain-level queries.

Every backend (``storage.sqlite.SQLiteStore``, ``storage.influx.InfluxStore``)
implements :class:`Store` and passes the shared contract tests in
``tests/storage/test_store_contract.py``.

Conventions for every query:

* ``start``/``end`` are timezone-aware datetimes; ranges are half-open
  ``[start, end)`` on the *device* time of the reading;
* results are ordered by time, oldest first, unless stated otherwise;
* money is integer fen and weights integer grams, exactly as received.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from storage.footfall import hourly_footfall
from storage.records import DeadLetter, Reading
from storage.traceability import TraceStatus


@dataclass(frozen=True, slots=True)
class PromotionRow:
    price_fen_per_kg: int
    text: str
    until: datetime


@dataclass(frozen=True, slots=True)
class PriceRow:
    """The latest price a vendor set for a product."""

    market: str
    vendor: str
    plu: str
    screen: str
    price_fen_per_kg: int
    promo: PromotionRow | None
    ts: datetime
    msg_id: int


@dataclass(frozen=True, slots=True)
class SaleRow:
    market: str
    scale: str
    vendor: str
    plu: str
    ts: datetime
    msg_id: int
    weight_g: int
    tare_g: int | None
    unit_price_fen_per_kg: int
    total_fen: int
    trace_code: str
    received_ns: int
    #: Whether ``trace_code`` names a registered batch of this vendor and product
    #: (``storage.traceability``); show the batch only when it is VERIFIED.
    trace_status: TraceStatus

    @property
    def origin_verified(self) -> bool:
        return self.trace_status is TraceStatus.VERIFIED


@dataclass(frozen=True, slots=True)
class UnverifiedSalesRow:
    """How many sales of one vendor at one scale had a trace code that did not check out."""

    market: str
    vendor: str
    scale: str
    trace_status: TraceStatus
    sales: int


@dataclass(frozen=True, slots=True)
class SalesSummaryRow:
    """Sales of one vendor's product over a range: how many, how much money, how much weight."""

    market: str
    vendor: str
    plu: str
    sales: int
    total_fen: int
    weight_g: int


@dataclass(frozen=True, slots=True)
class BatchBalanceRow:
    """A batch and what has been sold of it so far: its sales (see :meth:`Store.sales_of_batch`)."""

    market: str
    trace_code: str
    vendor: str
    plu: str
    intake: datetime
    quantity_g: int
    rapid_test_passed: bool
    sales: int
    sold_g: int
    last_sale: datetime | None

    @property
    def oversold(self) -> bool:
        return self.sold_g > self.quantity_g

    @classmethod
    def of(
        cls, batch: BatchRow, *, sales: int, sold_g: int, last_sale: datetime | None
    ) -> BatchBalanceRow:
        return cls(
            market=batch.market,
            trace_code=batch.trace_code,
            vendor=batch.vendor,
            plu=batch.plu,
            intake=batch.ts,
            quantity_g=batch.quantity_g,
            rapid_test_passed=batch.rapid_test_passed,
            sales=sales,
            sold_g=sold_g,
            last_sale=last_sale,
        )


@dataclass(frozen=True, slots=True)
class SalesHourRow:
    """Sales of a whole market during one UTC hour starting at ``hour``."""

    market: str
    hour: datetime
    transactions: int
    turnover_fen: int
    weight_g: int


@dataclass(frozen=True, slots=True)
class BatchRow:
    market: str
    station: str
    vendor: str
    plu: str
    trace_code: str
    origin: str
    supplier: str
    quantity_g: int
    certificate_no: str
    rapid_test_passed: bool
    inhibition_pct: Decimal
    ts: datetime
    msg_id: int
    received_ns: int


@dataclass(frozen=True, slots=True)
class GateCountRow:
    """One cumulative counter reading of a gate."""

    market: str
    gate: str
    ts: datetime
    in_total: int
    out_total: int


@dataclass(frozen=True, slots=True)
class FootfallRow:
    """People through one gate during one local hour starting at ``hour``."""

    market: str
    gate: str
    hour: datetime
    people_in: int
    people_out: int


@dataclass(frozen=True, slots=True)
class ScaleStatusRow:
    """The latest status a scale (or its Last Will) reported."""

    market: str
    scale: str
    ts: datetime
    online: bool
    will: bool
    zero_ok: bool | None
    seal_intact: bool | None
    calibration_due: date | None


class Store(abc.ABC):
    """A place readings are kept and asked about."""

    # -- writing ---------------------------------------------------------------
    @abc.abstractmethod
    def write(
        self, readings: Sequence[Reading], dead_letters: Sequence[DeadLetter] = ()
    ) -> list[DeadLetter]:
        """Store readings and dead letters; idempotent per reading.

        Each sale is stored with its trace status (``storage.traceability``): its
        trace code checked against the stored batches and those in ``readings``.
        A batch turns its vendor's earlier ``unknown_batch`` sales of its product
        that name it, made within the grace window before its intake, verified.

        Returns the readings the store itself refused (for example a line InfluxDB
        answers 400 to), converted to dead letters *and already stored as such*; the
        rest of the batch is written. Raises :class:`StoreUnavailable` when nothing
        could be written and the whole call should be retried.

        One message per (market, device, msg_id), the first (``storage.msgids``):
        a reading whose key the store already holds with other content, from an
        earlier write, another ingest instance or earlier in this one, is refused
        with the reason :data:`storage.msgids.REUSED_MSG_ID`; the same content
        again is written as before (a redelivery).
        """

    @abc.abstractmethod
    def forget_msg_ids(self, before: datetime) -> None:
        """Forget the msg_id ledger's entries of messages that arrived before ``before``.

        Ingest calls it hourly with its device-clock window's start
        (``STALLWATCH_MAX_AGE_S`` ago): messages older than that are rejected
        before they reach the store, so the ledger guards that window, and a
        msg_id reused longer than that after its first use is no longer caught.
        """

    # -- prices ----------------------------------------------------------------
    @abc.abstractmethod
    def latest_prices(self, market: str) -> list[PriceRow]:
        """The latest price per (vendor, product), ordered by vendor then PLU."""

    @abc.abstractmethod
    def price_history(
        self,
        market: str,
        start: datetime,
        end: datetime,
        *,
        plu: str | None = None,
        vendor: str | None = None,
    ) -> list[PriceRow]:
        """Every price set in the range."""

    @abc.abstractmethod
    def prices_before(
        self, market: str, moment: datetime, *, plu: str | None = None
    ) -> list[PriceRow]:
        """The last price of each (vendor, product) set strictly before ``moment``.

        The baseline of a price history: what was in force when the range began.
        Ordered by vendor then PLU.
        """

    # -- sales -----------------------------------------------------------------
    @abc.abstractmethod
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
        """Every sale in the range, optionally for one vendor, scale or product."""

    @abc.abstractmethod
    def sales_of_batch(self, market: str, trace_code: str) -> list[SaleRow]:
        """The batch's sales: those naming its code, of its vendor and product, since its window.

        That is, made no earlier than ``LATE_BATCH_GRACE`` before the intake of the
        batch's newest record (``storage.traceability``), whatever their trace
        status: its vendor's sales of its product outside the stall's categories
        still came from it. Another vendor's or product's sales that name the code
        are false claims, not the batch's (``unverified_sales`` counts them).
        Without a registered batch, every sale naming the code.
        """

    @abc.abstractmethod
    def sale_by_receipt(self, market: str, scale: str, msg_id: int) -> SaleRow | None:
        """The sale a receipt (scale + message id) was printed for."""

    @abc.abstractmethod
    def unverified_sales(
        self, market: str, start: datetime, end: datetime
    ) -> list[UnverifiedSalesRow]:
        """Sales in the range whose trace code was not verified, per (vendor, scale, status).

        Every status but VERIFIED counts (UNCHECKED sales, stored before sales
        were checked, are left out). Ordered by vendor, scale, then status; cheap
        because such sales are rare (SQLite reads a partial index of them only).
        """

    @abc.abstractmethod
    def sales_summary(self, market: str, start: datetime, end: datetime) -> list[SalesSummaryRow]:
        """Number of sales, total fen and total grams per (vendor, product) in the range.

        Aggregated by the store (SQL ``GROUP BY``, InfluxQL ``SUM``/``COUNT``), not by
        fetching every sale; sums are exact integers. Ordered by vendor then PLU;
        products without sales in the range are absent.
        """

    @abc.abstractmethod
    def sales_by_hour(self, market: str, start: datetime, end: datetime) -> list[SalesHourRow]:
        """Number of sales, total fen and total grams of the whole market per UTC hour.

        ``hour`` is the start of the UTC hour (an aware UTC datetime); the hours at
        the edges count only the sales inside ``[start, end)``. Aggregated by the
        store like :meth:`sales_summary`; ordered by hour, hours without sales absent.
        """

    # -- batches ---------------------------------------------------------------
    @abc.abstractmethod
    def batch(self, market: str, trace_code: str) -> BatchRow | None:
        """The batch with this trace code (the latest record if it was re-sent)."""

    @abc.abstractmethod
    def batches(
        self, market: str, start: datetime, end: datetime, *, vendor: str | None = None
    ) -> list[BatchRow]:
        """Batches taken in during the range."""

    def batch_balances(self, market: str, start: datetime, end: datetime) -> list[BatchBalanceRow]:
        """Batches taken in during the range, each with its sales so far, in intake order.

        A batch's sales are those :meth:`sales_of_batch` lists (its own vendor's of
        its own product), so a false claim never makes a batch look oversold.
        What the dashboard's alerts need (a failed batch on sale, an oversold one).
        This generic version asks for each batch's sales; stores override it with
        one aggregate query.
        """
        balances = []
        for batch in self.batches(market, start, end):
            sales = self.sales_of_batch(market, batch.trace_code)
            balances.append(
                BatchBalanceRow.of(
                    batch,
                    sales=len(sales),
                    sold_g=sum(sale.weight_g for sale in sales),
                    last_sale=max((sale.ts for sale in sales), default=None),
                )
            )
        return balances

    # -- footfall --------------------------------------------------------------
    @abc.abstractmethod
    def gate_counts(self, market: str, start: datetime, end: datetime) -> list[GateCountRow]:
        """Raw counter readings in the range, per gate and time."""

    @abc.abstractmethod
    def gate_counts_before(self, market: str, moment: datetime) -> list[GateCountRow]:
        """The last counter reading of each gate strictly before ``moment`` (the baseline)."""

    def footfall_hourly(self, market: str, start: datetime, end: datetime) -> list[FootfallRow]:
        """People in/out per gate and hour; hours are in ``start``'s time zone.

        Built from cumulative counters, so lost or repeated messages do not skew it
        and a counter reset counts its new value as growth: each reading in the
        range adds its increase over the gate's previous reading (also one before
        ``start``) to its own hour. A gate's hour is present when it has a reading
        in the range, even with no increase.
        """
        baseline = self.gate_counts_before(market, start)
        readings = self.gate_counts(market, start, end)
        return hourly_footfall(market, baseline, readings, start, end)

    # -- devices ---------------------------------------------------------------
    @abc.abstractmethod
    def scale_status(self, market: str) -> list[ScaleStatusRow]:
        """The latest status of every scale that has reported one, ordered by scale."""

    @abc.abstractmethod
    def device_last_seen(self, market: str, since: datetime) -> dict[str, datetime]:
        """The point time of each device's newest reading at or after ``since``, by device id.

        Scales from their sales and statuses, gates from their counts, screens from
        the prices they showed, intake stations from their batches. A Last Will does
        not count: the broker sent it, not the device (its status is in
        :meth:`scale_status`). Times are aware UTC datetimes; devices without a
        reading since ``since`` are absent. Costs an index seek per series, plus the
        prices set since ``since`` (a screen is not part of a price's series).
        """

    # -- dead letters ----------------------------------------------------------
    @abc.abstractmethod
    def dead_letters(
        self, start: datetime, end: datetime, *, market: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        """Rejected messages received in the range, newest first."""

    @abc.abstractmethod
    def message_counts(self, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
        """Number of stored readings per (market, device) in the range.

        Counted by each reading's point time (see ``storage.records.point_time_ns``):
        its device time, or for a Last Will its arrival. Validation keeps device time
        within minutes of arrival for live traffic; a backlog a device replays late
        counts in the range it was measured in. Counting by arrival instead would
        mean scanning every table beyond the range, because only the point time is
        indexed. Devices without readings in the range are absent.
        """

    @abc.abstractmethod
    def reject_counts(self, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
        """Number of rejected messages per (market, device) received in the range."""

    # -- lifecycle -------------------------------------------------------------
    @abc.abstractmethod
    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the store answers."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and files."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
