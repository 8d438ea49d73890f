"""The read queries and how their rows become the store's row dataclasses.

Every query is a constant with named parameters. ``CROSS JOIN`` fixes the join
order (SQLite never reorders it), so plans do not depend on table statistics:
a small intern table (series, sale source, trace code) drives lookups into the
large data table's indexes. Optional filters are written
``(:p IS NULL OR column = :p)`` on those small tables, which hold tens of
thousands of rows at most; the data table is always reached through an index
(``tests/storage/test_sqlite_query_plans.py`` checks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from storage.interfaces.devices import ScaleStatusRow
from storage.interfaces.footfall import GateCountRow
from storage.interfaces.prices import PriceRow, PromotionRow
from storage.interfaces.sales import SaleRow, SalesHourRow, SalesSummaryRow
from storage.interfaces.traceability import (
    BatchBalanceRow,
    BatchRow,
    RapidTestRow,
    UnverifiedSalesRow,
)
from storage.records import (
    DeadLetter,
    dead_letter_ordinals,
    device_time,
    from_ns,
    permille_to_pct,
)
from storage.sqlite.codec import TRACE_STATUS_OF_CODE, int_to_date, optional_bool
from storage.sqlite.schema import hour_of

Row = tuple[Any, ...]

# -- sales -----------------------------------------------------------------------

#: Every sale of a market in a range: one scan of the time-clustered table.
SALES_IN_RANGE = """
SELECT
    src.market, src.scale, src.vendor, p.plu, sale.time_ns, sale.msg_id, sale.weight_g,
    sale.tare_g, sale.unit_price_fen_per_kg, sale.total_fen, t.code, sale.received_ns,
    sale.trace_status
FROM sale
    CROSS JOIN sale_source AS src CROSS JOIN product AS p CROSS JOIN trace_code AS t
WHERE sale.time_ns >= :start AND sale.time_ns < :end
  AND src.id = sale.source AND src.market = :market
  AND p.id = sale.product
  AND t.id = sale.trace
ORDER BY sale.time_ns, sale.source, sale.product
"""

#: Sales of the sources (scale + vendor) matching the filters: a range seek per
#: source. A PLU filter alone reads the whole market's sales in the range and
#: keeps the product's; dashboards over long ranges are meant for rollups.
SALES_OF_SOURCES_IN_RANGE = """
SELECT
    src.market, src.scale, src.vendor, p.plu, sale.time_ns, sale.msg_id, sale.weight_g,
    sale.tare_g, sale.unit_price_fen_per_kg, sale.total_fen, t.code, sale.received_ns,
    sale.trace_status
FROM sale_source AS src
    CROSS JOIN sale CROSS JOIN product AS p CROSS JOIN trace_code AS t
WHERE src.market = :market
  AND (:vendor IS NULL OR src.vendor = :vendor)
  AND (:scale IS NULL OR src.scale = :scale)
  AND sale.source = src.id AND sale.time_ns >= :start AND sale.time_ns < :end
  AND p.id = sale.product AND (:plu IS NULL OR p.plu = :plu)
  AND t.id = sale.trace
ORDER BY sale.time_ns, sale.source, sale.product
"""

#: The sales naming a trace code since ``:since`` (a ``time_ns`` bound), of
#: vendor ``:vendor`` and product ``:plu`` when they are not NULL: one range
#: seek on ``sale_by_trace``, which yields them in time order.
SALES_OF_BATCH = """
SELECT
    src.market, src.scale, src.vendor, p.plu, sale.time_ns, sale.msg_id, sale.weight_g,
    sale.tare_g, sale.unit_price_fen_per_kg, sale.total_fen, t.code, sale.received_ns,
    sale.trace_status
FROM trace_code AS t
    CROSS JOIN sale CROSS JOIN sale_source AS src CROSS JOIN product AS p
WHERE t.market = :market AND t.code = :trace_code
  AND sale.trace = t.id AND sale.time_ns >= :since
  AND src.id = sale.source AND (:vendor IS NULL OR src.vendor = :vendor)
  AND p.id = sale.product AND (:plu IS NULL OR p.plu = :plu)
ORDER BY sale.time_ns, sale.source, sale.product
"""

SALE_BY_RECEIPT = """
SELECT
    src.market, src.scale, src.vendor, p.plu, sale.time_ns, sale.msg_id, sale.weight_g,
    sale.tare_g, sale.unit_price_fen_per_kg, sale.total_fen, t.code, sale.received_ns,
    sale.trace_status
FROM sale_source AS src
    CROSS JOIN sale CROSS JOIN product AS p CROSS JOIN trace_code AS t
WHERE src.market = :market AND src.scale = :scale
  AND sale.source = src.id AND sale.msg_id = :msg_id
  AND p.id = sale.product
  AND t.id = sale.trace
ORDER BY sale.time_ns DESC
LIMIT 1
"""


#: Sales whose trace code did not check out, per vendor, scale and status: a
#: range seek per sale source into the partial index of such sales (schema v4),
#: which holds only them; verified sales are never read.
UNVERIFIED_SALES = """
SELECT src.vendor, src.scale, sale.trace_status, COUNT(*)
FROM sale_source AS src CROSS JOIN sale INDEXED BY sale_unverified
WHERE src.market = :market
  AND sale.source = src.id AND sale.trace_status <> 0
  AND sale.time_ns >= :start AND sale.time_ns < :end
GROUP BY src.vendor, src.scale, sale.trace_status
ORDER BY src.vendor, src.scale, sale.trace_status
"""


def unverified_sales_row(market: str, row: Row) -> UnverifiedSalesRow:
    vendor, scale, trace_status, sales = row
    return UnverifiedSalesRow(
        market=market,
        vendor=vendor,
        scale=scale,
        trace_status=TRACE_STATUS_OF_CODE[trace_status],
        sales=sales,
    )


#: Sales per vendor and product: one scan of the range on the time-clustered table,
#: like SALES_IN_RANGE, but only the aggregates leave SQLite.
SALES_SUMMARY = """
SELECT src.market, src.vendor, p.plu, COUNT(*), SUM(sale.total_fen), SUM(sale.weight_g)
FROM sale CROSS JOIN sale_source AS src CROSS JOIN product AS p
WHERE sale.time_ns >= :start AND sale.time_ns < :end
  AND src.id = sale.source AND src.market = :market
  AND p.id = sale.product
GROUP BY src.vendor, p.plu
ORDER BY src.vendor, p.plu
"""


#: Sales per vendor and scale, from the same three parts as ``SALES_SUMMARY_BY_HOURS``.
SALES_BY_SCALE = """
WITH parts (source, sales, total_fen, weight_g) AS (
    SELECT source, 1, total_fen, weight_g
    FROM sale WHERE time_ns >= :start AND time_ns < :head_end
    UNION ALL
    SELECT source, transactions, total_fen, weight_g
    FROM sale_hourly WHERE hour_ns >= :hours_start AND hour_ns < :hours_end
    UNION ALL
    SELECT source, 1, total_fen, weight_g
    FROM sale WHERE time_ns >= :tail_start AND time_ns < :end
)
SELECT src.market, src.vendor, src.scale, SUM(parts.sales), SUM(parts.total_fen),
       SUM(parts.weight_g)
FROM parts CROSS JOIN sale_source AS src
WHERE src.id = parts.source AND src.market = :market
GROUP BY src.vendor, src.scale
HAVING SUM(parts.sales) > 0
ORDER BY src.vendor, src.scale
"""


#: Sales per vendor and product from three disjoint parts of the range: the
#: partial hour at its head and the one at its tail from raw sales (a short scan
#: of the time-clustered table each), the whole hours in between from
#: ``sale_hourly``. The caller splits the range on hour boundaries; a part that
#: does not apply is given an empty range.
SALES_SUMMARY_BY_HOURS = """
WITH parts (source, product, sales, total_fen, weight_g) AS (
    SELECT source, product, 1, total_fen, weight_g
    FROM sale WHERE time_ns >= :start AND time_ns < :head_end
    UNION ALL
    SELECT source, product, transactions, total_fen, weight_g
    FROM sale_hourly WHERE hour_ns >= :hours_start AND hour_ns < :hours_end
    UNION ALL
    SELECT source, product, 1, total_fen, weight_g
    FROM sale WHERE time_ns >= :tail_start AND time_ns < :end
)
SELECT src.market, src.vendor, p.plu, SUM(parts.sales), SUM(parts.total_fen), SUM(parts.weight_g)
FROM parts CROSS JOIN sale_source AS src CROSS JOIN product AS p
WHERE src.id = parts.source AND src.market = :market
  AND p.id = parts.product
GROUP BY src.vendor, p.plu
ORDER BY src.vendor, p.plu
"""

#: Market-wide sales per UTC hour, split like SALES_SUMMARY_BY_HOURS; the whole
#: hours come from ``market_sale_hourly`` (one row per hour).
SALES_BY_HOUR = f"""
WITH parts (hour_ns, transactions, total_fen, weight_g) AS (
    SELECT {hour_of("sale.time_ns")}, 1, sale.total_fen, sale.weight_g
    FROM sale CROSS JOIN sale_source AS src
    WHERE sale.time_ns >= :start AND sale.time_ns < :head_end
      AND src.id = sale.source AND src.market = :market
    UNION ALL
    SELECT hour_ns, transactions, total_fen, weight_g
    FROM market_sale_hourly
    WHERE market = :market AND hour_ns >= :hours_start AND hour_ns < :hours_end
    UNION ALL
    SELECT {hour_of("sale.time_ns")}, 1, sale.total_fen, sale.weight_g
    FROM sale CROSS JOIN sale_source AS src
    WHERE sale.time_ns >= :tail_start AND sale.time_ns < :end
      AND src.id = sale.source AND src.market = :market
)
SELECT hour_ns, SUM(transactions), SUM(total_fen), SUM(weight_g)
FROM parts
GROUP BY hour_ns
ORDER BY hour_ns
"""  # noqa: S608 - only SQL fragments of this module, no values


def sales_hour_row(market: str, row: Row) -> SalesHourRow:
    hour_ns, transactions, total_fen, weight_g = row
    return SalesHourRow(
        market=market,
        hour=from_ns(hour_ns),
        transactions=transactions,
        turnover_fen=total_fen,
        weight_g=weight_g,
    )


def sales_summary_row(row: Row) -> SalesSummaryRow:
    market, vendor, plu, sales, total_fen, weight_g = row
    return SalesSummaryRow(
        market=market, vendor=vendor, plu=plu, sales=sales, total_fen=total_fen, weight_g=weight_g
    )


def sale_row(row: Row) -> SaleRow:
    (
        market,
        scale,
        vendor,
        plu,
        time_ns,
        msg_id,
        weight_g,
        tare_g,
        unit_price,
        total,
        code,
        received,
        trace_status,
    ) = row
    return SaleRow(
        market=market,
        scale=scale,
        vendor=vendor,
        plu=plu,
        ts=device_time(time_ns),
        msg_id=msg_id,
        weight_g=weight_g,
        tare_g=tare_g,
        unit_price_fen_per_kg=unit_price,
        total_fen=total,
        trace_code=code,
        received_ns=received,
        trace_status=TRACE_STATUS_OF_CODE[trace_status],
    )


# -- prices ----------------------------------------------------------------------

#: The newest row per series is one seek on the (series, time_ns) key each; this
#: stays ~30 ms for 12k series however long the history (GROUP BY with MAX()
#: took 130 ms at 50 updates per series and 480 ms at 200, a window function 1.2 s).
LATEST_PRICES = """
SELECT
    s.market, s.vendor, s.plu, p.screen, p.price_fen_per_kg, p.promo_price_fen_per_kg,
    p.promo_text, p.promo_until_ns, p.time_ns, p.msg_id
FROM price_series AS s CROSS JOIN price AS p
WHERE s.market = :market
  AND p.series = s.id
  AND p.time_ns = (SELECT MAX(time_ns) FROM price WHERE series = s.id)
ORDER BY s.vendor, s.plu
"""

PRICE_HISTORY = """
SELECT
    s.market, s.vendor, s.plu, p.screen, p.price_fen_per_kg, p.promo_price_fen_per_kg,
    p.promo_text, p.promo_until_ns, p.time_ns, p.msg_id
FROM price_series AS s CROSS JOIN price AS p
WHERE s.market = :market
  AND (:vendor IS NULL OR s.vendor = :vendor)
  AND (:plu IS NULL OR s.plu = :plu)
  AND p.series = s.id AND p.time_ns >= :start AND p.time_ns < :end
ORDER BY p.time_ns, p.series
"""


#: The baseline of a price history: one seek per series, like LATEST_PRICES.
PRICES_BEFORE = """
SELECT
    s.market, s.vendor, s.plu, p.screen, p.price_fen_per_kg, p.promo_price_fen_per_kg,
    p.promo_text, p.promo_until_ns, p.time_ns, p.msg_id
FROM price_series AS s CROSS JOIN price AS p
WHERE s.market = :market
  AND (:plu IS NULL OR s.plu = :plu)
  AND p.series = s.id
  AND p.time_ns = (SELECT MAX(time_ns) FROM price WHERE series = s.id AND time_ns < :moment)
ORDER BY s.vendor, s.plu
"""


def price_row(row: Row) -> PriceRow:
    market, vendor, plu, screen, price, promo_price, promo_text, promo_until_ns, time_ns, msg_id = (
        row
    )
    promo = None
    if promo_price is not None:
        promo = PromotionRow(
            price_fen_per_kg=promo_price, text=promo_text, until=from_ns(promo_until_ns)
        )
    return PriceRow(
        market=market,
        vendor=vendor,
        plu=plu,
        screen=screen,
        price_fen_per_kg=price,
        promo=promo,
        ts=device_time(time_ns),
        msg_id=msg_id,
    )


# -- batches ---------------------------------------------------------------------

BATCH_BY_TRACE_CODE = """
SELECT
    s.market, s.station, s.vendor, s.plu, t.code, b.origin, b.supplier, b.quantity_g,
    b.certificate_no, b.rapid_test_passed, b.inhibition_permille, b.time_ns, b.msg_id, b.received_ns
FROM trace_code AS t CROSS JOIN batch AS b CROSS JOIN batch_series AS s
WHERE t.market = :market AND t.code = :trace_code
  AND b.trace = t.id
  AND s.id = b.series
ORDER BY b.time_ns DESC
LIMIT 1
"""

_RAPID_TEST_COLUMNS = """
    s.market, s.station, s.vendor, s.plu, t.code, r.passed, r.inhibition_permille, r.time_ns,
    r.msg_id, r.received_ns"""

RAPID_TESTS_IN_RANGE = f"""
SELECT {_RAPID_TEST_COLUMNS}
FROM rapid_test AS r CROSS JOIN batch_series AS s CROSS JOIN trace_code AS t
WHERE r.time_ns >= :start AND r.time_ns < :end
  AND s.id = r.series AND s.market = :market
  AND t.id = r.trace
ORDER BY r.time_ns, s.station, r.msg_id
"""  # noqa: S608 - only SQL fragments of this module, values are bound

RAPID_TESTS_OF_BATCH = f"""
SELECT {_RAPID_TEST_COLUMNS}
FROM trace_code AS t CROSS JOIN rapid_test AS r CROSS JOIN batch_series AS s
WHERE t.market = :market AND t.code = :trace_code
  AND r.trace = t.id AND r.time_ns >= :since
  AND s.id = r.series AND s.vendor = :vendor AND s.plu = :plu
ORDER BY r.time_ns, s.station, r.msg_id
"""  # noqa: S608 - only SQL fragments of this module, values are bound


def rapid_test_row(row: Row) -> RapidTestRow:
    market, station, vendor, plu, code, passed, permille, time_ns, msg_id, received_ns = row
    return RapidTestRow(
        market=market,
        station=station,
        vendor=vendor,
        plu=plu,
        trace_code=code,
        passed=bool(passed),
        inhibition_pct=permille_to_pct(permille),
        ts=device_time(time_ns),
        msg_id=msg_id,
        received_ns=received_ns,
    )


BATCHES_IN_RANGE = """
SELECT
    s.market, s.station, s.vendor, s.plu, t.code, b.origin, b.supplier, b.quantity_g,
    b.certificate_no, b.rapid_test_passed, b.inhibition_permille, b.time_ns, b.msg_id, b.received_ns
FROM batch AS b CROSS JOIN batch_series AS s CROSS JOIN trace_code AS t
WHERE b.time_ns >= :start AND b.time_ns < :end
  AND s.id = b.series AND s.market = :market
  AND t.id = b.trace
ORDER BY b.time_ns, b.series
"""

BATCHES_OF_VENDOR_IN_RANGE = """
SELECT
    s.market, s.station, s.vendor, s.plu, t.code, b.origin, b.supplier, b.quantity_g,
    b.certificate_no, b.rapid_test_passed, b.inhibition_permille, b.time_ns, b.msg_id, b.received_ns
FROM batch_series AS s CROSS JOIN batch AS b CROSS JOIN trace_code AS t
WHERE s.market = :market AND s.vendor = :vendor
  AND b.series = s.id AND b.time_ns >= :start AND b.time_ns < :end
  AND t.id = b.trace
ORDER BY b.time_ns, b.series
"""


# What a batch has sold: its own vendor's sales of its own product naming its
# code, made no earlier than the grace window before its intake (device times,
# whole milliseconds): the sales ``Store.sales_of_batch`` lists.

#: The first ``time_ns`` of a batch record's sales: its device time (``time_ns``
#: floored to the millisecond, also before 1970) minus ``:grace_ns``.
_BATCH_SALES_SINCE = "(b.time_ns - (b.time_ns % 1000000 + 1000000) % 1000000 - :grace_ns)"


def _sold_since_intake(aggregate: str) -> str:
    """``aggregate`` of the raw sales of one ``batch_sold`` row made since the grace window."""
    return f"""(
        SELECT {aggregate} FROM sale
        WHERE sale.trace = sold.trace AND sale.time_ns >= {_BATCH_SALES_SINCE}
          AND sale.source = sold.source AND sale.product = sold.product)"""  # noqa: S608 - only SQL fragments of this module, no values


def _sold(aggregate: str, column: str) -> str:
    """A ``batch_sold`` row's ``column``, or when some of its sales precede the
    grace window (rare: a code named long before its batch came in), ``aggregate``
    of its raw sales since then."""
    return (
        f"CASE WHEN sold.first_sale_ns < {_BATCH_SALES_SINCE}"
        f" THEN {_sold_since_intake(aggregate)} ELSE sold.{column} END"
    )


#: Batches taken in during a range with what has been sold of each so far: the
#: range of the time-clustered batch table, and per batch one seek into
#: ``batch_sold`` (kept per write, see ``storage.sqlite.rollups``) for the rows
#: of its vendor's sale sources and its product; other vendors' and products'
#: sales that name the code are not the batch's.
_BATCH_BALANCES_GROUPED = f"""
SELECT
    s.market, t.code, s.vendor, s.plu, b.time_ns, b.quantity_g, b.rapid_test_passed,
    SUM({_sold("COUNT(*)", "sales")}) AS sales,
    SUM({_sold("SUM(sale.weight_g)", "sold_g")}) AS sold_g,
    MAX({_sold("MAX(sale.time_ns)", "last_sale_ns")})
FROM batch AS b CROSS JOIN batch_series AS s CROSS JOIN trace_code AS t
    LEFT JOIN batch_sold AS sold ON sold.trace = b.trace
        AND sold.product = (SELECT id FROM product WHERE market = s.market AND plu = s.plu)
        AND (SELECT vendor FROM sale_source WHERE id = sold.source) = s.vendor
WHERE b.time_ns >= :start AND b.time_ns < :end
  AND s.id = b.series AND s.market = :market
  AND t.id = b.trace
GROUP BY b.time_ns, b.series
"""  # noqa: S608 - only SQL fragments of this module, values are bound
BATCH_BALANCES = _BATCH_BALANCES_GROUPED + "ORDER BY b.time_ns, b.series"
#: Only the balances that need an alert (``BatchBalanceRow.needs_alert``): failed and
#: sold, or sold beyond the quantity. A week's 12,000 balances stay in SQLite rather
#: than becoming rows in Python to be dropped (70 ms of the overview's alerts).
BATCH_ALERTS = (
    _BATCH_BALANCES_GROUPED
    # ``= 0``: a batch not tested at intake (NULL) has not failed
    + "HAVING (b.rapid_test_passed = 0 AND sales > 0) OR sold_g > b.quantity_g\n"
    + "ORDER BY b.time_ns, b.series"
)


def batch_balance_row(row: Row) -> BatchBalanceRow:
    market, code, vendor, plu, time_ns, quantity_g, passed, sales, sold_g, last_sale_ns = row
    return BatchBalanceRow(
        market=market,
        trace_code=code,
        vendor=vendor,
        plu=plu,
        intake=device_time(time_ns),
        quantity_g=quantity_g,
        rapid_test_passed=optional_bool(passed),
        sales=sales or 0,
        sold_g=sold_g or 0,
        last_sale=None if last_sale_ns is None else device_time(last_sale_ns),
    )


def batch_row(row: Row) -> BatchRow:
    market, station, vendor, plu, code, origin, supplier, quantity_g, certificate_no = row[:9]
    passed, permille, time_ns, msg_id, received_ns = row[9:]
    return BatchRow(
        market=market,
        station=station,
        vendor=vendor,
        plu=plu,
        trace_code=code,
        origin=origin,
        supplier=supplier,
        quantity_g=quantity_g,
        certificate_no=certificate_no,
        rapid_test_passed=optional_bool(passed),
        inhibition_pct=None if permille is None else permille_to_pct(permille),
        ts=device_time(time_ns),
        msg_id=msg_id,
        received_ns=received_ns,
    )


# -- footfall --------------------------------------------------------------------

GATE_COUNTS_IN_RANGE = """
SELECT s.market, s.gate, f.time_ns, f.in_total, f.out_total
FROM footfall_series AS s CROSS JOIN footfall AS f
WHERE s.market = :market
  AND f.series = s.id AND f.time_ns >= :start AND f.time_ns < :end
ORDER BY s.gate, f.time_ns
"""

GATE_COUNTS_BEFORE = """
SELECT s.market, s.gate, f.time_ns, f.in_total, f.out_total
FROM footfall_series AS s CROSS JOIN footfall AS f
WHERE s.market = :market
  AND f.series = s.id
  AND f.time_ns = (SELECT MAX(time_ns) FROM footfall WHERE series = s.id AND time_ns < :moment)
ORDER BY s.gate
"""


#: Footfall of each gate per whole UTC hour in the range (``footfall_hourly``).
FOOTFALL_HOURS = """
SELECT s.gate, h.hour_ns, h.people_in, h.people_out
FROM footfall_series AS s CROSS JOIN footfall_hourly AS h
WHERE s.market = :market
  AND h.series = s.id AND h.hour_ns >= :start AND h.hour_ns < :end
ORDER BY s.gate, h.hour_ns
"""


def gate_count_row(row: Row) -> GateCountRow:
    market, gate, time_ns, in_total, out_total = row
    return GateCountRow(
        market=market, gate=gate, ts=device_time(time_ns), in_total=in_total, out_total=out_total
    )


# -- scale status ----------------------------------------------------------------

#: Per scale of a market, the statuses a store weighs for the one in force (see
#: ``storage.interfaces.devices.status_in_force``): its newest own status, and its
#: newest Last Will from :lookback_ns before that status on (any, for a scale with
#: no status of its own; a will's point time is its arrival). Seeks on the
#: (series, time_ns) key; at most two rows a scale reach Python.
SCALE_STATUS_CANDIDATES = """
WITH bounds AS (
    SELECT s.id, s.market, s.scale, (
        SELECT MAX(time_ns) FROM scale_status WHERE series = s.id AND will = 0
    ) - :lookback_ns AS since
    FROM scale_status_series AS s
    WHERE s.market = :market
)
SELECT
    b.market, b.scale, st.time_ns, st.online, st.will, st.zero_ok, st.seal_intact,
    st.calibration_due, st.received_ns
FROM bounds AS b CROSS JOIN scale_status AS st
WHERE st.series = b.id
  AND st.time_ns IN (
      (SELECT time_ns FROM scale_status
       WHERE series = b.id AND will = 0
       ORDER BY time_ns DESC LIMIT 1),
      (SELECT time_ns FROM scale_status
       WHERE series = b.id AND will = 1 AND time_ns >= COALESCE(b.since, -9223372036854775808)
       ORDER BY time_ns DESC LIMIT 1)
  )
ORDER BY b.scale, st.time_ns
"""


def scale_status_row(row: Row) -> ScaleStatusRow:
    market, scale, time_ns, online, will, zero_ok, seal_intact, calibration_due, received_ns = row
    return ScaleStatusRow(
        market=market,
        scale=scale,
        # A Last Will's point time is its arrival time, to the nanosecond; see point_time_ns.
        ts=from_ns(time_ns) if will else device_time(time_ns),
        online=bool(online),
        will=bool(will),
        zero_ok=optional_bool(zero_ok),
        seal_intact=optional_bool(seal_intact),
        calibration_due=None if calibration_due is None else int_to_date(calibration_due),
        received=from_ns(received_ns),
    )


# -- device last seen ------------------------------------------------------------

#: The arrival time of the newest point at or after :since of every device of a
#: market: one backwards seek per series or sale source on its
#: (series|source, time_ns) key. A price's screen is a column, not part of the
#: series, so screens take the price with the newest point time per screen among
#: the rows since :since (a range seek per series; with MAX the only aggregate,
#: SQLite takes the bare received_ns from the row holding the maximum). Per
#: device the caller keeps the latest of the arrivals. A Last Will is the
#: broker's message, not the device's, and does not count.
DEVICE_LAST_SEEN = """
SELECT src.scale, (
    SELECT sale.received_ns FROM sale
    WHERE sale.source = src.id AND sale.time_ns >= :since
    ORDER BY sale.time_ns DESC LIMIT 1
)
FROM sale_source AS src
WHERE src.market = :market
UNION ALL
SELECT s.scale, (
    SELECT st.received_ns FROM scale_status AS st
    WHERE st.series = s.id AND st.time_ns >= :since AND st.will = 0
    ORDER BY st.time_ns DESC LIMIT 1
)
FROM scale_status_series AS s
WHERE s.market = :market
UNION ALL
SELECT s.gate, (
    SELECT f.received_ns FROM footfall AS f
    WHERE f.series = s.id AND f.time_ns >= :since
    ORDER BY f.time_ns DESC LIMIT 1
)
FROM footfall_series AS s
WHERE s.market = :market
UNION ALL
SELECT s.station, (
    SELECT b.received_ns FROM batch AS b
    WHERE b.series = s.id AND b.time_ns >= :since
    ORDER BY b.time_ns DESC LIMIT 1
)
FROM batch_series AS s
WHERE s.market = :market
UNION ALL
SELECT s.station, (
    SELECT r.received_ns FROM rapid_test AS r
    WHERE r.series = s.id AND r.time_ns >= :since
    ORDER BY r.time_ns DESC LIMIT 1
)
FROM batch_series AS s
WHERE s.market = :market
UNION ALL
SELECT p.screen, p.received_ns
FROM price_series AS s CROSS JOIN price AS p
WHERE s.market = :market
  AND p.series = s.id AND p.time_ns >= :since
GROUP BY p.screen
HAVING MAX(p.time_ns) IS NOT NULL
"""

# -- message counts --------------------------------------------------------------

#: Readings per device of one market, one part per table; a scale appears twice
#: (sales and status), so the caller adds the parts up. Every part is driven by
#: the market's rows of a small series table and counts through the data
#: table's (series|source, time_ns) key: the sale part reads only the
#: sale_by_source index, never the sale rows themselves.
MESSAGE_COUNTS_BUT_SALES_OF_MARKET = """
SELECT s.scale, COUNT(*)
FROM scale_status_series AS s CROSS JOIN scale_status AS st
WHERE s.market = :market
  AND st.series = s.id AND st.time_ns >= :start AND st.time_ns < :end
GROUP BY s.scale
UNION ALL
SELECT s.gate, COUNT(*)
FROM footfall_series AS s CROSS JOIN footfall AS f
WHERE s.market = :market
  AND f.series = s.id AND f.time_ns >= :start AND f.time_ns < :end
GROUP BY s.gate
UNION ALL
SELECT p.screen, COUNT(*)
FROM price_series AS s CROSS JOIN price AS p
WHERE s.market = :market
  AND p.series = s.id AND p.time_ns >= :start AND p.time_ns < :end
GROUP BY p.screen
UNION ALL
SELECT s.station, COUNT(*)
FROM batch_series AS s CROSS JOIN batch AS b
WHERE s.market = :market
  AND b.series = s.id AND b.time_ns >= :start AND b.time_ns < :end
GROUP BY s.station
UNION ALL
SELECT s.station, COUNT(*)
FROM batch_series AS s CROSS JOIN rapid_test AS r
WHERE s.market = :market
  AND r.series = s.id AND r.time_ns >= :start AND r.time_ns < :end
GROUP BY s.station
"""
MESSAGE_COUNTS_OF_MARKET = (
    """
SELECT src.scale, COUNT(*)
FROM sale_source AS src CROSS JOIN sale
WHERE src.market = :market
  AND sale.source = src.id AND sale.time_ns >= :start AND sale.time_ns < :end
GROUP BY src.scale
UNION ALL"""
    + MESSAGE_COUNTS_BUT_SALES_OF_MARKET
)

# The markets that have readings, found one index seek at a time ("loose index
# scan"): each asks for the first market after :market in one series table's
# (market, ...) unique index. A market has rows in at least one of them.
NEXT_MARKET_WITH_SALES = "SELECT MIN(market) FROM sale_source WHERE market > :market"
NEXT_MARKET_WITH_STATUS = "SELECT MIN(market) FROM scale_status_series WHERE market > :market"
NEXT_MARKET_WITH_FOOTFALL = "SELECT MIN(market) FROM footfall_series WHERE market > :market"
NEXT_MARKET_WITH_PRICES = "SELECT MIN(market) FROM price_series WHERE market > :market"
NEXT_MARKET_WITH_BATCHES = "SELECT MIN(market) FROM batch_series WHERE market > :market"
NEXT_MARKET_QUERIES = (
    NEXT_MARKET_WITH_SALES,
    NEXT_MARKET_WITH_STATUS,
    NEXT_MARKET_WITH_FOOTFALL,
    NEXT_MARKET_WITH_PRICES,
    NEXT_MARKET_WITH_BATCHES,
)

# -- dead letters ----------------------------------------------------------------

STORED_MSG_IDS = """
SELECT ledger.market, ledger.device, ledger.msg_id, ledger.digest
FROM json_each(:keys) AS k CROSS JOIN msg_id_ledger AS ledger
WHERE ledger.market = json_extract(k.value, '$[0]')
  AND ledger.device = json_extract(k.value, '$[1]')
  AND ledger.msg_id = json_extract(k.value, '$[2]')
"""

INSERT_MSG_ID = """
INSERT INTO msg_id_ledger (market, device, msg_id, digest, received_ns) VALUES (?, ?, ?, ?, ?)
"""

FORGET_MSG_IDS = "DELETE FROM msg_id_ledger WHERE received_ns < :before"

# A letter's identity is (arrival, market, device, dup): written again, it is replaced.
INSERT_DEAD_LETTER = """
INSERT INTO dead_letter (received_ns, market, device, dup, topic, reason, payload, payload_size)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (received_ns, market, device, dup) DO UPDATE SET
    topic = excluded.topic,
    reason = excluded.reason,
    payload = excluded.payload,
    payload_size = excluded.payload_size
"""

DEAD_LETTERS = """
SELECT received_ns, topic, payload, reason, market, device, payload_size
FROM dead_letter
WHERE received_ns >= :start AND received_ns < :end
  AND (:market IS NULL OR market = :market)
ORDER BY received_ns DESC, id DESC
LIMIT :limit
"""

REJECT_COUNTS = """
SELECT market, device, COUNT(*)
FROM dead_letter
WHERE received_ns >= :start AND received_ns < :end
GROUP BY market, device
"""


def dead_letter_values(letters: Sequence[DeadLetter]) -> list[DeadLetterValues]:
    """The letters' parameters for :data:`INSERT_DEAD_LETTER`, with their ordinals."""
    return [
        _dead_letter_values(letter, ordinal)
        for letter, ordinal in zip(letters, dead_letter_ordinals(letters), strict=True)
    ]


DeadLetterValues = tuple[int, str, str, int, str, str, bytes, int]


def _dead_letter_values(letter: DeadLetter, ordinal: int) -> DeadLetterValues:
    return (
        letter.received_ns,
        letter.market,
        letter.device,
        ordinal,
        letter.topic,
        letter.reason,
        letter.payload,
        letter.payload_size,
    )


def dead_letter_row(row: Row) -> DeadLetter:
    received_ns, topic, payload, reason, market, device, payload_size = row
    return DeadLetter(
        received_ns=received_ns,
        topic=topic,
        payload=bytes(payload),
        reason=reason,
        market=market,
        device=device,
        payload_size=payload_size,
    )
