"""Table layout of the SQLite store and its forward migrations.

Layout, and why (measured with ``bench/sqlite_year_bench.py``: 300 vendors,
60k sales a day; a year is ~22 M sales):

* **Tags are interned.** Each measurement's point identity (the same tags
  InfluxDB uses, see ``storage.records``) is stored once in a small table and
  referenced by an integer id. Repeating market/scale/vendor/PLU text in every
  sale row and every index entry cost ~346 bytes per sale; interned, ~170.
* **Trace codes are interned** in ``trace_code`` (shared by sales and batches):
  a batch's code repeats in every sale from it. With it a sale costs ~110–125
  bytes including all indexes: ~2.7 GB for a year of sales.
* **A sale references its source (market, scale, vendor) and its product
  separately**, so the per-source indexes have one insertion point per scale
  (hundreds) instead of one per scale and product (~11k). With one per series,
  every row of a 5000-row batch dirtied its own page in two indexes, and after a
  month of data commits and checkpoints had slowed writes to ~17k rows/s; now
  ~25–30k, for ~10 % more bytes per sale (the product id sits in every index).
* **Sales and batches are clustered by time** (``PRIMARY KEY (time_ns, …)``,
  ``WITHOUT ROWID``): ingest appends, and a market-wide range is one contiguous
  scan. A ``(source|series, time_ns)`` index serves per-vendor/scale ranges.
* **Prices, gate counts and scale statuses are clustered by series**
  (``PRIMARY KEY (series, time_ns)``): their hot queries want the latest row per
  series, which is one B-tree seek each (``MAX(time_ns)`` on the key prefix)
  regardless of how much history piles up.
* ``time_ns`` is :func:`storage.records.point_time_ns`; the device time is
  recovered from it (its millisecond part), so it is not stored twice.
* Money and weights are INTEGER; the rapid test's inhibition percentage is
  stored as integer permille; ``calibration_due`` as the integer ``YYYYMMDD``.

**Hourly rollups** (version 2), so dashboards never read a year of raw rows,
kept in the same transaction as the raw rows; each migration that added one
built it from the rows already stored:

* ``sale_hourly`` — per UTC hour, sale source and product: transactions, fen,
  grams. ``sales_summary`` reads it for the whole hours of a range and raw
  sales only for the partial hours at its edges. With ~4–5k sales an hour
  spread over ~11k (source, product) pairs it is ~0.8 rows per sale, so it
  spares the raw rows' width and the trace/receipt lookups, not their number;
  a per-vendor summary over a year still reads ~17 M rollup rows.
* ``market_sale_hourly`` — per market and UTC hour (~9k rows a year): what
  ``sales_by_hour`` reads.
* ``batch_sold`` (version 3, re-keyed in version 6) — per trace code, product
  and sale source: sales so far, grams sold and the oldest and newest sale's
  ``time_ns``. ``batch_balances`` adds up, for each batch of a range, the rows
  of the batch's own vendor and product: another vendor's or product's sales
  naming the code are not the batch's (docs/traceability.md).
* ``footfall_hourly`` — per gate and UTC hour: the number of readings and the
  sum of each reading's increase over the gate's previous reading
  (``storage.footfall``'s rule, counter resets included). A reading's increase
  depends on its predecessor, so the triggers also correct the next reading's
  hour when a reading arrives out of order, is replayed with other counts, or
  is deleted. ``footfall_hourly`` reads it for whole hours when the caller's
  time zone has whole-hour offsets in the range.

**Who keeps them.** The three sale rollups are kept by the writer, once per
``write`` (``storage.sqlite.rollups``): it reads which of the write's sales are
already stored, computes the net change per rollup row in Python and applies
it with one ``executemany`` upsert per table. Version 2 kept them with
triggers, but *any* trigger that fires on each sale insert (even one that does
nothing) made bulk sale writes about ten times slower, and more so as the table
grew (docs/benchmarks.md); version 3 dropped those. What remains on ``sale``
never fires on the store's writes: an ``AFTER DELETE`` trigger (raw sales
deleted by hand or by tests leave the rollups that way; since version 7 it is
silent during a retention pass, whose expired sales stay in the rollups, see
``storage.sqlite.retention``) and a guard that refuses updates of a sale's key
columns. Changing a sale's amounts
or trace code with a hand-written ``UPDATE`` bypasses the rollups: correct a
sale by writing the corrected reading through the store. Gate counts keep
their triggers (a few hundred an hour; measured harmless).

Rows whose rollups are kept are written with an upsert (``ON CONFLICT DO
UPDATE``), never ``INSERT OR REPLACE``: REPLACE deletes the old row without
firing delete triggers (unless ``recursive_triggers`` is on), so a redelivered
gate count would be counted twice, and a sale's removal would depend on a
connection setting. The triggers refuse updates of a row's key columns, which
would move it to another rollup row.

Migrations only go forward. ``PRAGMA user_version`` holds the schema version;
each :class:`Migration` brings the file from ``version - 1`` to ``version`` in
one transaction, ending with its own ``PRAGMA user_version`` statement (pragmas
take no bound parameters, so the version is spelled out in the constant).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from storage._exceptions import SchemaError

#: SQLite 3.37 introduced STRICT tables, which keep every column's type honest.
MIN_SQLITE_VERSION = (3, 37, 0)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    statements: tuple[str, ...]


_V1 = Migration(
    version=1,
    statements=(
        """
        CREATE TABLE trace_code (
            id INTEGER PRIMARY KEY,
            market TEXT NOT NULL,
            code TEXT NOT NULL,
            UNIQUE (market, code)
        ) STRICT
        """,
        # -- sales ------------------------------------------------------------
        # A sale's tags are (market, scale, vendor, plu). The PLU is interned on
        # its own so that the per-source indexes below have one insertion point per
        # scale (hundreds) instead of one per scale and product (tens of thousands):
        # each batch then dirties far fewer index pages.
        """
        CREATE TABLE product (
            id INTEGER PRIMARY KEY,
            market TEXT NOT NULL,
            plu TEXT NOT NULL,
            UNIQUE (market, plu)
        ) STRICT
        """,
        """
        CREATE TABLE sale_source (
            id INTEGER PRIMARY KEY,
            market TEXT NOT NULL,
            scale TEXT NOT NULL,
            vendor TEXT NOT NULL,
            UNIQUE (market, scale, vendor)
        ) STRICT
        """,
        """
        CREATE TABLE sale (
            time_ns INTEGER NOT NULL,
            source INTEGER NOT NULL,      -- sale_source.id
            product INTEGER NOT NULL,     -- product.id
            trace INTEGER NOT NULL,       -- trace_code.id
            msg_id INTEGER NOT NULL,
            weight_g INTEGER NOT NULL,
            tare_g INTEGER,
            unit_price_fen_per_kg INTEGER NOT NULL,
            total_fen INTEGER NOT NULL,
            received_ns INTEGER NOT NULL,
            PRIMARY KEY (time_ns, source, product)
        ) STRICT, WITHOUT ROWID
        """,
        "CREATE INDEX sale_by_source ON sale (source, time_ns)",
        # Entries are (trace, time_ns, source, product): a batch's sales come out in time order.
        "CREATE INDEX sale_by_trace ON sale (trace)",
        "CREATE INDEX sale_by_receipt ON sale (source, msg_id)",
        # -- prices -----------------------------------------------------------
        """
        CREATE TABLE price_series (
            id INTEGER PRIMARY KEY,
            market TEXT NOT NULL,
            vendor TEXT NOT NULL,
            plu TEXT NOT NULL,
            UNIQUE (market, vendor, plu)
        ) STRICT
        """,
        """
        CREATE TABLE price (
            series INTEGER NOT NULL,      -- price_series.id
            time_ns INTEGER NOT NULL,
            msg_id INTEGER NOT NULL,
            screen TEXT NOT NULL,
            price_fen_per_kg INTEGER NOT NULL,
            promo_price_fen_per_kg INTEGER,
            promo_text TEXT,
            promo_until_ns INTEGER,
            received_ns INTEGER NOT NULL,
            PRIMARY KEY (series, time_ns),
            CHECK ((promo_price_fen_per_kg IS NULL) = (promo_text IS NULL)
                   AND (promo_text IS NULL) = (promo_until_ns IS NULL))
        ) STRICT, WITHOUT ROWID
        """,
        # -- batches ----------------------------------------------------------
        """
        CREATE TABLE batch_series (
            id INTEGER PRIMARY KEY,
            market TEXT NOT NULL,
            station TEXT NOT NULL,
            vendor TEXT NOT NULL,
            plu TEXT NOT NULL,
            UNIQUE (market, station, vendor, plu)
        ) STRICT
        """,
        """
        CREATE TABLE batch (
            time_ns INTEGER NOT NULL,
            series INTEGER NOT NULL,      -- batch_series.id
            trace INTEGER NOT NULL,       -- trace_code.id
            msg_id INTEGER NOT NULL,
            origin TEXT NOT NULL,
            supplier TEXT NOT NULL,
            quantity_g INTEGER NOT NULL,
            certificate_no TEXT NOT NULL,
            rapid_test_passed INTEGER NOT NULL CHECK (rapid_test_passed IN (0, 1)),
            inhibition_permille INTEGER NOT NULL,
            received_ns INTEGER NOT NULL,
            PRIMARY KEY (time_ns, series)
        ) STRICT, WITHOUT ROWID
        """,
        "CREATE INDEX batch_by_series ON batch (series, time_ns)",
        "CREATE INDEX batch_by_trace ON batch (trace)",
        # -- footfall ---------------------------------------------------------
        """
        CREATE TABLE footfall_series (
            id INTEGER PRIMARY KEY,
            market TEXT NOT NULL,
            gate TEXT NOT NULL,
            UNIQUE (market, gate)
        ) STRICT
        """,
        """
        CREATE TABLE footfall (
            series INTEGER NOT NULL,      -- footfall_series.id
            time_ns INTEGER NOT NULL,
            msg_id INTEGER NOT NULL,
            in_total INTEGER NOT NULL,
            out_total INTEGER NOT NULL,
            received_ns INTEGER NOT NULL,
            PRIMARY KEY (series, time_ns)
        ) STRICT, WITHOUT ROWID
        """,
        # -- scale status -----------------------------------------------------
        """
        CREATE TABLE scale_status_series (
            id INTEGER PRIMARY KEY,
            market TEXT NOT NULL,
            scale TEXT NOT NULL,
            UNIQUE (market, scale)
        ) STRICT
        """,
        """
        CREATE TABLE scale_status (
            series INTEGER NOT NULL,      -- scale_status_series.id
            time_ns INTEGER NOT NULL,
            msg_id INTEGER NOT NULL,
            online INTEGER NOT NULL CHECK (online IN (0, 1)),
            will INTEGER NOT NULL CHECK (will IN (0, 1)),
            zero_ok INTEGER CHECK (zero_ok IN (0, 1)),
            seal_intact INTEGER CHECK (seal_intact IN (0, 1)),
            calibration_due INTEGER,      -- YYYYMMDD
            received_ns INTEGER NOT NULL,
            PRIMARY KEY (series, time_ns)
        ) STRICT, WITHOUT ROWID
        """,
        # -- dead letters -----------------------------------------------------
        # A rowid table: identical dead letters received in the same nanosecond
        # are still two rows.
        """
        CREATE TABLE dead_letter (
            id INTEGER PRIMARY KEY,
            received_ns INTEGER NOT NULL,
            market TEXT NOT NULL,
            device TEXT NOT NULL,
            topic TEXT NOT NULL,
            reason TEXT NOT NULL,
            payload BLOB NOT NULL,
            payload_size INTEGER NOT NULL
        ) STRICT
        """,
        "CREATE INDEX dead_letter_by_time ON dead_letter (received_ns)",
        "CREATE INDEX dead_letter_by_market ON dead_letter (market, received_ns)",
        "PRAGMA user_version = 1",
    ),
)

# -- version 2: hourly rollups, maintained by triggers ------------------------------------
#
# The statements are put together from the helpers below, which hold only SQL
# fragments and column names (never a value). They are part of migration 2:
# change them and files migrated before and after differ, so a later migration
# brings its own.

HOUR_NS = 3_600_000_000_000


def hour_of(time_ns: str) -> str:
    """SQL for the start of the UTC hour of ``time_ns`` (floored, also before 1970)."""
    return f"({time_ns} - ({time_ns} % {HOUR_NS} + {HOUR_NS}) % {HOUR_NS})"


def _increase(previous: str, current: str) -> str:
    """SQL for :func:`storage.footfall.counter_increase`: growth, or the value after a reset."""
    return (
        f"(CASE WHEN {previous} IS NULL THEN 0 WHEN {current} >= {previous}"
        f" THEN {current} - {previous} ELSE {current} END)"
    )


_ADD_EXCLUDED_SALES = """
    transactions = transactions + excluded.transactions,
    total_fen = total_fen + excluded.total_fen,
    weight_g = weight_g + excluded.weight_g"""


def _count_sale(row: str, sign: str) -> str:
    """Add (``sign`` ``+``) or take away (``-``) sale ``row`` in both sale rollups."""
    hour = hour_of(f"{row}.time_ns")
    amounts = f"{sign}1, {sign}{row}.total_fen, {sign}{row}.weight_g"
    return f"""
    INSERT INTO sale_hourly (hour_ns, source, product, transactions, total_fen, weight_g)
    VALUES ({hour}, {row}.source, {row}.product, {amounts})
    ON CONFLICT DO UPDATE SET {_ADD_EXCLUDED_SALES};
    INSERT INTO market_sale_hourly (market, hour_ns, transactions, total_fen, weight_g)
    SELECT market, {hour}, {amounts} FROM sale_source WHERE id = {row}.source
    ON CONFLICT DO UPDATE SET {_ADD_EXCLUDED_SALES};"""  # noqa: S608 - only SQL fragments of this module, no values


def _drop_empty_sale_hours(row: str) -> str:
    hour = hour_of(f"{row}.time_ns")
    return f"""
    DELETE FROM sale_hourly
    WHERE hour_ns = {hour} AND source = {row}.source AND product = {row}.product
      AND transactions = 0;
    DELETE FROM market_sale_hourly
    WHERE market = (SELECT market FROM sale_source WHERE id = {row}.source)
      AND hour_ns = {hour} AND transactions = 0;"""  # noqa: S608 - only SQL fragments of this module, no values


_SALE_TRIGGERS = (
    f"CREATE TRIGGER sale_rollup_insert AFTER INSERT ON sale BEGIN {_count_sale('NEW', '+')}\nEND",
    f"""CREATE TRIGGER sale_rollup_delete AFTER DELETE ON sale BEGIN {_count_sale("OLD", "-")}
    {_drop_empty_sale_hours("OLD")}
    END""",
    # A replay overwrites the sale (an upsert, see storage.sqlite.codec): swap its amounts.
    f"""CREATE TRIGGER sale_rollup_update AFTER UPDATE OF total_fen, weight_g ON sale BEGIN
    {_count_sale("OLD", "-")}
    {_count_sale("NEW", "+")}
    END""",
    # The rollup row of a sale follows from its hour, source and product; the
    # store never changes those, and the triggers above rely on that.
    """CREATE TRIGGER sale_key_is_fixed BEFORE UPDATE OF time_ns, source, product ON sale BEGIN
    SELECT RAISE(ABORT, 'the time, source and product of a stored sale cannot change');
    END""",
)


def _previous_count(row: str) -> str:
    """The gate's reading just before ``row`` (one key seek), as a FROM item."""
    return f"""(SELECT in_total, out_total FROM footfall
        WHERE series = {row}.series AND time_ns < {row}.time_ns
        ORDER BY time_ns DESC LIMIT 1)"""  # noqa: S608 - only SQL fragments of this module, no values


def _next_count(row: str) -> str:
    """The gate's reading just after ``row`` (one key seek), as a FROM item."""
    return f"""(SELECT time_ns, in_total, out_total FROM footfall
        WHERE series = {row}.series AND time_ns > {row}.time_ns
        ORDER BY time_ns LIMIT 1)"""  # noqa: S608 - only SQL fragments of this module, no values


def _add_footfall(
    source: str, series: str, hour: str, readings: str, change: tuple[str, str]
) -> str:
    """Add ``readings`` and the (in, out) ``change`` to a gate's hour, selected from ``source``."""
    people_in, people_out = change
    return f"""
    INSERT INTO footfall_hourly (series, hour_ns, readings, people_in, people_out)
    SELECT {series}, {hour}, {readings}, {people_in}, {people_out}
    FROM {source}
    WHERE true
    ON CONFLICT DO UPDATE SET
        readings = readings + excluded.readings,
        people_in = people_in + excluded.people_in,
        people_out = people_out + excluded.people_out;"""  # noqa: S608 - only SQL fragments of this module, no values


def _increments(previous: str, current: str, *, sign: str = "") -> tuple[str, str]:
    return tuple(  # type: ignore[return-value]
        sign + _increase(f"{previous}.{column}", f"{current}.{column}")
        for column in ("in_total", "out_total")
    )


def _minus(left: tuple[str, str], right: tuple[str, str]) -> tuple[str, str]:
    return (f"{left[0]} - {right[0]}", f"{left[1]} - {right[1]}")


def _own_hour(row: str, readings: str, change: tuple[str, str]) -> str:
    source = f"(SELECT 1) LEFT JOIN {_previous_count(row)} AS prev"
    return _add_footfall(source, f"{row}.series", hour_of(f"{row}.time_ns"), readings, change)


def _next_hour(row: str, change: tuple[str, str]) -> str:
    # An inner join on ``next``: nothing to adjust when ``row`` is the gate's newest reading.
    source = f"{_next_count(row)} AS next LEFT JOIN {_previous_count(row)} AS prev"
    return _add_footfall(source, f"{row}.series", hour_of("next.time_ns"), "0", change)


#: What deleting gate count ``OLD`` takes out of its own hour and its next reading's.
_FOOTFALL_DELETE = f"""
    {_own_hour("OLD", "-1", _increments("prev", "OLD", sign="-"))}
    {_next_hour("OLD", _minus(_increments("prev", "next"), _increments("OLD", "next")))}
    DELETE FROM footfall_hourly
    WHERE series = OLD.series AND hour_ns = {hour_of("OLD.time_ns")} AND readings = 0;"""  # noqa: S608 - only SQL fragments of this module, no values


# A reading's increment depends on the reading before it, so inserting or
# removing one also changes the increment of the gate's next reading (readings
# that arrive out of order), which may lie in another hour.
_FOOTFALL_TRIGGERS = (
    f"""CREATE TRIGGER footfall_rollup_insert AFTER INSERT ON footfall BEGIN
    {_own_hour("NEW", "1", _increments("prev", "NEW"))}
    {_next_hour("NEW", _minus(_increments("NEW", "next"), _increments("prev", "next")))}
    END""",
    f"""CREATE TRIGGER footfall_rollup_delete AFTER DELETE ON footfall BEGIN{_FOOTFALL_DELETE}
    END""",
    # A replay overwrites the reading (an upsert, see storage.sqlite.codec).
    f"""CREATE TRIGGER footfall_rollup_update AFTER UPDATE OF in_total, out_total ON footfall
    BEGIN
    {_own_hour("NEW", "0", _minus(_increments("prev", "NEW"), _increments("prev", "OLD")))}
    {_next_hour("NEW", _minus(_increments("NEW", "next"), _increments("OLD", "next")))}
    END""",
    """CREATE TRIGGER footfall_key_is_fixed BEFORE UPDATE OF series, time_ns ON footfall BEGIN
    SELECT RAISE(ABORT, 'the gate and time of a stored gate count cannot change');
    END""",
)

_V2 = Migration(
    version=2,
    statements=(
        # Sales per UTC hour, source (market, scale, vendor) and product: what a
        # per-vendor/product summary over whole hours reads instead of raw sales.
        """
        CREATE TABLE sale_hourly (
            hour_ns INTEGER NOT NULL,     -- start of the UTC hour, ns since the epoch
            source INTEGER NOT NULL,      -- sale_source.id
            product INTEGER NOT NULL,     -- product.id
            transactions INTEGER NOT NULL,
            total_fen INTEGER NOT NULL,
            weight_g INTEGER NOT NULL,
            PRIMARY KEY (hour_ns, source, product)
        ) STRICT, WITHOUT ROWID
        """,
        # Market-wide sales per UTC hour: one row per market and hour, so a year
        # of hourly totals is ~9k rows however many vendors sell.
        """
        CREATE TABLE market_sale_hourly (
            market TEXT NOT NULL,
            hour_ns INTEGER NOT NULL,
            transactions INTEGER NOT NULL,
            total_fen INTEGER NOT NULL,
            weight_g INTEGER NOT NULL,
            PRIMARY KEY (market, hour_ns)
        ) STRICT, WITHOUT ROWID
        """,
        # Per gate and UTC hour: how many readings, and the sum of their
        # increments over the gate's previous reading (storage.footfall's rule).
        """
        CREATE TABLE footfall_hourly (
            series INTEGER NOT NULL,      -- footfall_series.id
            hour_ns INTEGER NOT NULL,
            readings INTEGER NOT NULL,
            people_in INTEGER NOT NULL,
            people_out INTEGER NOT NULL,
            PRIMARY KEY (series, hour_ns)
        ) STRICT, WITHOUT ROWID
        """,
        # Backfill from the rows already stored, then keep up with triggers.
        f"""
        INSERT INTO sale_hourly (hour_ns, source, product, transactions, total_fen, weight_g)
        SELECT {hour_of("time_ns")}, source, product, COUNT(*), SUM(total_fen), SUM(weight_g)
        FROM sale
        GROUP BY 1, source, product
        """,  # noqa: S608 - only SQL fragments of this module, no values
        """
        INSERT INTO market_sale_hourly (market, hour_ns, transactions, total_fen, weight_g)
        SELECT src.market, h.hour_ns, SUM(h.transactions), SUM(h.total_fen), SUM(h.weight_g)
        FROM sale_hourly AS h JOIN sale_source AS src ON src.id = h.source
        GROUP BY src.market, h.hour_ns
        """,
        f"""
        INSERT INTO footfall_hourly (series, hour_ns, readings, people_in, people_out)
        SELECT series, {hour_of("time_ns")}, COUNT(*),
            SUM({_increase("prev_in", "in_total")}), SUM({_increase("prev_out", "out_total")})
        FROM (
            SELECT series, time_ns, in_total, out_total,
                LAG(in_total) OVER gate AS prev_in, LAG(out_total) OVER gate AS prev_out
            FROM footfall
            WINDOW gate AS (PARTITION BY series ORDER BY time_ns)
        )
        GROUP BY series, 2
        """,  # noqa: S608 - only SQL fragments of this module, no values
        *_SALE_TRIGGERS,
        *_FOOTFALL_TRIGGERS,
        "PRAGMA user_version = 2",
    ),
)

# -- version 3: sale rollups kept by the writer, per batch; sales per batch ---------------
#
# Any trigger that fires on every sale insert cut bulk sale writes about
# tenfold (docs/benchmarks.md), so the store now keeps the sale rollups itself,
# once per write (``storage.sqlite.rollups``). Only the triggers that never fire
# on the store's own writes stay: DELETE (raw rows are only deleted by hand or
# by tests) and the guard on key columns (an upsert never sets them).


def _forget_sale_in_batch(row: str) -> str:
    """Take sale ``row`` out of ``batch_sold``; its batch's last sale is looked up again."""
    return f"""
    UPDATE batch_sold SET
        sales = sales - 1,
        sold_g = sold_g - {row}.weight_g,
        last_sale_ns = (SELECT MAX(time_ns) FROM sale WHERE trace = {row}.trace)
    WHERE trace = {row}.trace;
    DELETE FROM batch_sold WHERE trace = {row}.trace AND sales = 0;"""  # noqa: S608 - only SQL fragments of this module, no values


_V3 = Migration(
    version=3,
    statements=(
        "DROP TRIGGER sale_rollup_insert",
        "DROP TRIGGER sale_rollup_update",
        "DROP TRIGGER sale_rollup_delete",
        # What has been sold of each batch (trace code) so far: what the
        # dashboard's batch alerts read instead of every sale of every batch.
        """
        CREATE TABLE batch_sold (
            trace INTEGER PRIMARY KEY REFERENCES trace_code (id),
            sales INTEGER NOT NULL,
            sold_g INTEGER NOT NULL,
            last_sale_ns INTEGER NOT NULL  -- time_ns of the newest sale
        ) STRICT
        """,
        """
        INSERT INTO batch_sold (trace, sales, sold_g, last_sale_ns)
        SELECT trace, COUNT(*), SUM(weight_g), MAX(time_ns)
        FROM sale
        GROUP BY trace
        """,
        f"""CREATE TRIGGER sale_rollup_delete AFTER DELETE ON sale BEGIN
        {_count_sale("OLD", "-")}
        {_drop_empty_sale_hours("OLD")}
        {_forget_sale_in_batch("OLD")}
        END""",
        "PRAGMA user_version = 3",
    ),
)

# -- version 4: each sale's trace status ---------------------------------------------------
#
# Whether the sale's trace code names a registered batch of its vendor and
# product (``storage.traceability``), as the integer of ``codec.TRACE_STATUS_CODES``:
# 0 verified, 1 unknown batch, 2 another vendor's batch, 3 another product's
# batch, 4 outside the stall's categories. The writer sets it; writing a batch
# turns its vendor's earlier unknown-batch sales verified. Sales already stored
# are checked against the batches already stored (the market file's categories
# are not in the store, so code 4 only appears on sales written from now on).

#: The grace window, in nanoseconds, of ``storage.traceability.LATE_BATCH_GRACE``
#: when version 4 was written; part of the migration, so spelled out here.
_V4_GRACE_NS = 86_400_000_000_000

_V4 = Migration(
    version=4,
    statements=(
        """
        ALTER TABLE sale ADD COLUMN
            trace_status INTEGER NOT NULL DEFAULT 1 CHECK (trace_status BETWEEN 0 AND 4)
        """,
        f"""
        UPDATE sale SET trace_status = COALESCE((
            SELECT CASE
                WHEN bs.vendor <> src.vendor THEN 2
                WHEN bs.plu <> p.plu THEN 3
                WHEN sale.time_ns < b.time_ns - {_V4_GRACE_NS} THEN 1
                ELSE 0 END
            FROM batch AS b CROSS JOIN batch_series AS bs, sale_source AS src, product AS p
            WHERE b.trace = sale.trace AND bs.id = b.series
              AND src.id = sale.source AND p.id = sale.product
            ORDER BY b.time_ns DESC
            LIMIT 1
        ), 1)
        """,  # noqa: S608 - only a constant of this module, no values
        # The few sales that did not check out, by source and time: what
        # counting them per vendor and scale reads instead of every sale.
        "CREATE INDEX sale_unverified ON sale (source, time_ns) WHERE trace_status <> 0",
        "PRAGMA user_version = 4",
    ),
)

# -- version 5: the msg_id ledger (``storage.msgids``), dead letters with an identity ----------
#
# The first message's content digest per (market, device, msg_id), checked and
# filled in the write's transaction. Clustered by key: a device's ids only grow,
# so a write appends at one place per device. ``received_ns`` (the first
# message's arrival) is indexed for ``forget_msg_ids``. It starts empty: digests
# of the readings already stored cannot be computed in SQL.

_V5 = Migration(
    version=5,
    statements=(
        """
        CREATE TABLE msg_id_ledger (
            market TEXT NOT NULL,
            device TEXT NOT NULL,
            msg_id INTEGER NOT NULL,
            digest INTEGER NOT NULL,
            received_ns INTEGER NOT NULL,
            PRIMARY KEY (market, device, msg_id)
        ) STRICT, WITHOUT ROWID
        """,
        "CREATE INDEX msg_id_ledger_by_arrival ON msg_id_ledger (received_ns)",
        # A dead letter's identity, as in InfluxDB (``storage.records.dead_letter_ordinals``):
        # arrival, market, device and its ordinal among letters of one write sharing those.
        # Letters already stored are numbered in the order they were written.
        "ALTER TABLE dead_letter ADD COLUMN dup INTEGER NOT NULL DEFAULT 0",
        """
        UPDATE dead_letter SET dup = numbered.ordinal
        FROM (
            SELECT id, ROW_NUMBER() OVER (
                PARTITION BY received_ns, market, device ORDER BY id
            ) - 1 AS ordinal
            FROM dead_letter
        ) AS numbered
        WHERE dead_letter.id = numbered.id AND numbered.ordinal > 0
        """,
        # Its prefix serves the time ranges dead_letter_by_time served.
        """
        CREATE UNIQUE INDEX dead_letter_identity ON dead_letter (received_ns, market, device, dup)
        """,
        "DROP INDEX dead_letter_by_time",
        "PRAGMA user_version = 5",
    ),
)

# -- version 6: a batch's sales are its own vendor's of its own product -------------------
#
# ``batch_sold`` of version 3 counted every sale naming a trace code, so a scale
# naming a neighbour's batch made that batch look oversold. Version 6 keys it
# by (trace, product, source): the sales that name a code are counted per
# product and scale, and ``queries.BATCH_BALANCES`` adds up only the rows of
# the batch's own vendor and product. Which sales those are does not depend on
# their trace status, so a batch registered after its first sales needs no
# change here. ``first_sale_ns`` tells when some of those sales precede the
# batch's grace window (``storage.traceability``), so that only then the raw
# sales are counted instead.


def _forget_sale_in_batch_v6(row: str) -> str:
    """Take sale ``row`` out of version 6's ``batch_sold``; its first and last sale are re-read.

    The row goes first if ``row`` was its last sale: no first or last sale is left to set.
    """
    key = f"trace = {row}.trace AND product = {row}.product AND source = {row}.source"
    return f"""
    DELETE FROM batch_sold WHERE {key} AND NOT EXISTS (SELECT 1 FROM sale WHERE {key});
    UPDATE batch_sold SET
        sales = sales - 1,
        sold_g = sold_g - {row}.weight_g,
        first_sale_ns = (SELECT MIN(time_ns) FROM sale WHERE {key}),
        last_sale_ns = (SELECT MAX(time_ns) FROM sale WHERE {key})
    WHERE {key};"""  # noqa: S608 - only SQL fragments of this module, no values


#: What deleting sale ``OLD`` takes out of the sale rollups and ``batch_sold`` (version 6).
_SALE_DELETE_V6 = f"""
        {_count_sale("OLD", "-")}
        {_drop_empty_sale_hours("OLD")}
        {_forget_sale_in_batch_v6("OLD")}"""


_V6 = Migration(
    version=6,
    statements=(
        "DROP TRIGGER sale_rollup_delete",
        "DROP TABLE batch_sold",
        # What has been sold under each trace code so far, per product and sale
        # source (market, scale, vendor): a batch adds up its vendor's rows of its product.
        """
        CREATE TABLE batch_sold (
            trace INTEGER NOT NULL,       -- trace_code.id
            product INTEGER NOT NULL,     -- product.id
            source INTEGER NOT NULL,      -- sale_source.id
            sales INTEGER NOT NULL,
            sold_g INTEGER NOT NULL,
            first_sale_ns INTEGER NOT NULL,  -- time_ns of the oldest sale
            last_sale_ns INTEGER NOT NULL,   -- time_ns of the newest sale
            PRIMARY KEY (trace, product, source)
        ) STRICT, WITHOUT ROWID
        """,
        """
        INSERT INTO batch_sold (trace, product, source, sales, sold_g, first_sale_ns, last_sale_ns)
        SELECT trace, product, source, COUNT(*), SUM(weight_g), MIN(time_ns), MAX(time_ns)
        FROM sale
        GROUP BY trace, product, source
        """,
        f"""CREATE TRIGGER sale_rollup_delete AFTER DELETE ON sale BEGIN{_SALE_DELETE_V6}
        END""",
        "PRAGMA user_version = 6",
    ),
)

# -- version 7: retention deletes raw rows without touching the rollups -------------------
#
# A retention pass (``storage.sqlite.retention``) deletes raw sales and gate
# counts whose time is up, but what they added to the rollups must stay: queries
# over expired days answer from the rollups. The two delete triggers now fire
# only while the one-row ``retention_in_progress`` flag is off. The pass sets it
# at the start of each of its transactions and clears it before committing, so
# no other connection ever sees it set (a rollback clears it too), and deletes
# by hand or by tests keep the rollups exact as before. (A TEMP flag cannot be
# used: triggers of the main schema may not read temp tables.)

#: The delete triggers' condition: not a retention pass.
_NOT_RETENTION = "(SELECT active FROM retention_in_progress) = 0"

_V7 = Migration(
    version=7,
    statements=(
        """
        CREATE TABLE retention_in_progress (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            active INTEGER NOT NULL CHECK (active IN (0, 1))
        ) STRICT
        """,
        "INSERT INTO retention_in_progress (id, active) VALUES (1, 0)",
        "DROP TRIGGER sale_rollup_delete",
        f"""CREATE TRIGGER sale_rollup_delete AFTER DELETE ON sale WHEN {_NOT_RETENTION}
        BEGIN{_SALE_DELETE_V6}
        END""",
        "DROP TRIGGER footfall_rollup_delete",
        f"""CREATE TRIGGER footfall_rollup_delete AFTER DELETE ON footfall WHEN {_NOT_RETENTION}
        BEGIN{_FOOTFALL_DELETE}
        END""",
        "PRAGMA user_version = 7",
    ),
)

# -- version 8: rapid tests after intake, kept beside the intake's ------------------------
#
# A spot check or re-test of a batch (``RapidTestReport``) never replaces the
# intake's test or an earlier report: each is a row, clustered by time like the
# batches, in the intake station's batch series (market, station, vendor, PLU),
# and found by trace code through its index.

_V8 = Migration(
    version=8,
    statements=(
        """
        CREATE TABLE rapid_test (
            time_ns INTEGER NOT NULL,
            series INTEGER NOT NULL,      -- batch_series.id
            trace INTEGER NOT NULL,       -- trace_code.id
            msg_id INTEGER NOT NULL,
            passed INTEGER NOT NULL CHECK (passed IN (0, 1)),
            inhibition_permille INTEGER NOT NULL,
            received_ns INTEGER NOT NULL,
            PRIMARY KEY (time_ns, series)
        ) STRICT, WITHOUT ROWID
        """,
        "CREATE INDEX rapid_test_by_trace ON rapid_test (trace, time_ns)",
        "PRAGMA user_version = 8",
    ),
)

# -- version 9: a batch may come in without a rapid test ----------------------------------
#
# Markets rapid-test a sample of their batches (a daily quota), so the intake's
# test columns may be NULL: not tested at intake, neither passed nor failed. Both
# or neither. SQLite cannot drop a NOT NULL constraint in place, so the table is
# rebuilt (the batch table is small: a few hundred rows a day beside ~60k sales)
# with its indexes. No trigger or view names the batch table; the rename keeps it so.

_V9 = Migration(
    version=9,
    statements=(
        """
        CREATE TABLE batch_v9 (
            time_ns INTEGER NOT NULL,
            series INTEGER NOT NULL,      -- batch_series.id
            trace INTEGER NOT NULL,       -- trace_code.id
            msg_id INTEGER NOT NULL,
            origin TEXT NOT NULL,
            supplier TEXT NOT NULL,
            quantity_g INTEGER NOT NULL,
            certificate_no TEXT NOT NULL,
            -- both NULL: not tested at intake
            rapid_test_passed INTEGER CHECK (rapid_test_passed IN (0, 1)),
            inhibition_permille INTEGER,
            received_ns INTEGER NOT NULL,
            PRIMARY KEY (time_ns, series),
            CHECK ((rapid_test_passed IS NULL) = (inhibition_permille IS NULL))
        ) STRICT, WITHOUT ROWID
        """,
        """
        INSERT INTO batch_v9 (time_ns, series, trace, msg_id, origin, supplier, quantity_g,
            certificate_no, rapid_test_passed, inhibition_permille, received_ns)
        SELECT time_ns, series, trace, msg_id, origin, supplier, quantity_g,
            certificate_no, rapid_test_passed, inhibition_permille, received_ns
        FROM batch
        """,
        "DROP TABLE batch",
        "ALTER TABLE batch_v9 RENAME TO batch",
        "CREATE INDEX batch_by_series ON batch (series, time_ns)",
        "CREATE INDEX batch_by_trace ON batch (trace)",
        "PRAGMA user_version = 9",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9)
SCHEMA_VERSION = MIGRATIONS[-1].version


def check_sqlite_version() -> None:
    if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
        wanted = ".".join(map(str, MIN_SQLITE_VERSION))
        raise SchemaError(
            f"SQLite {sqlite3.sqlite_version} is too old; the store needs {wanted} or newer"
        )


def user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the file up to the newest version; returns the version it is at.

    ``conn`` must be in autocommit mode. The version check and the migrations run
    under one write lock (``BEGIN IMMEDIATE``), so two processes opening a new
    file at once do not both create the tables.
    """
    _check_sequence(migrations)
    newest = migrations[-1].version
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = user_version(conn)
        if current > newest:
            raise SchemaError(
                f"the database is at schema version {current}, newer than this code's {newest}; "
                "upgrade stallwatch"
            )
        for migration in migrations:
            if migration.version > current:
                _apply(conn, migration)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return newest


def _apply(conn: sqlite3.Connection, migration: Migration) -> None:
    for statement in migration.statements:
        conn.execute(statement)
    reached = user_version(conn)
    if reached != migration.version:
        raise SchemaError(
            f"migration to version {migration.version} left user_version at {reached}"
        )


def _check_sequence(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if not versions or versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3, … without gaps; got {versions}")
