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

Rollups (hourly/daily sale aggregates for dashboards) are meant to be added as
tables keyed ``(bucket_start, source, product)``, maintained in the same
transaction as the raw rows; the time-clustered raw tables make a rebuild a
range scan. They are also what a PLU-only sales query over a long range needs:
without a vendor or scale it reads every sale of the market in the range.

Migrations only go forward. ``PRAGMA user_version`` holds the schema version;
each :class:`Migration` brings the file from ``version - 1`` to ``version`` in
one transaction, ending with its own ``PRAGMA user_version`` statement (pragmas
take no bound parameters, so the version is spelled out in the constant).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from storage._exceptions import StoreError

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

MIGRATIONS: tuple[Migration, ...] = (_V1,)
SCHEMA_VERSION = MIGRATIONS[-1].version


class SchemaError(StoreError):
    """The database file has a schema this code cannot use."""


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
