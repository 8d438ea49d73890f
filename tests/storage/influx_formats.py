"""An InfluxDB database as an older version of stallwatch left it (rollup format 1 or 2).

Format 1's ``batch_sold`` points had no ``quantity_g``, ``rapid_test_passed`` or
``alert``; its backfill checkpoints had no ``format``. InfluxDB merges the fields
of a point written again, so the measurement is dropped and written back. Format 2
had no ``scale_sale_hourly``. Neither version wrote the marker that says every rollup
point is of the current format: it is dropped too, and a store opened afterwards (a
process of its own) reads the database as one from before.
"""

from __future__ import annotations

from storage.influx.client import InfluxClient
from storage.influx.influxql import Column, Query, SelectColumns, quote_ident
from storage.influx.lineprotocol import build_line
from storage.influx.rollups import (
    BACKFILL_PROGRESS,
    BATCH_SOLD,
    ROLLUP_FORMAT_COMPLETE,
    SCALE_SALE_HOURLY,
)
from storage.influx.rows import int_column, str_column, tagged_rows

_FORMAT_1_FIELDS = ("sales", "sold_g", "trace_code", "first_sale_ns", "last_sale_ns")
_TAGS = ("market", "station", "vendor", "plu")


def rewrite_batch_sold_as_format_1(url: str, database: str) -> int:
    """Rewrite every ``batch_sold`` point without format 2's fields; returns how many."""
    with InfluxClient(url) as client:
        select = SelectColumns(
            BATCH_SOLD, tuple(Column(name) for name in (*_FORMAT_1_FIELDS, *_TAGS))
        )
        rows = list(tagged_rows(client.query(database, select.query())))
        _drop(client, database, BATCH_SOLD)
        lines = [
            build_line(
                BATCH_SOLD,
                {tag: str_column(row, tag) for tag in _TAGS},
                {name: row[name] for name in _FORMAT_1_FIELDS if row.get(name) is not None},  # type: ignore[misc]
                int_column(row, "time"),
            )
            for row in rows
        ]
        client.write(database, lines)
        _drop(client, database, ROLLUP_FORMAT_COMPLETE)
    return len(lines)


def drop_scale_rollup(url: str, database: str) -> None:
    """Leave the database as format 2 left it: no ``scale_sale_hourly``."""
    with InfluxClient(url) as client:
        for measurement in (SCALE_SALE_HOURLY, ROLLUP_FORMAT_COMPLETE):
            _drop(client, database, measurement)


def _drop(client: InfluxClient, database: str, measurement: str) -> None:
    client.execute(Query(f"DROP MEASUREMENT {quote_ident(measurement)}"), database=database)


def write_format_1_checkpoint(url: str, database: str, day_ns: int, now_ns: int) -> None:
    """A backfill checkpoint as format 1 recorded it: the day, no format."""
    with InfluxClient(url) as client:
        client.write(database, [build_line(BACKFILL_PROGRESS, {}, {"day_ns": day_ns}, now_ns)])
