"""The SQLite side of checking sales' trace codes (see ``storage.traceability``).

Inside the writer's transaction: before the rows are inserted, the newest
stored record of every batch the write's sales name is read (one seek per trace
code on ``batch_by_trace``) and each sale gets its status; after they are
inserted, every batch the write registered turns its vendor's earlier
unknown-batch sales of its product verified (one seek on ``sale_by_trace``).
The writer's transaction is the only one, so a sale and its batch arriving in
two concurrent writes cannot miss each other.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from schemas.messages import Sale
from storage.sqlite.codec import TRACE_STATUS_CODES, EncodedRow
from storage.traceability import (
    LATE_BATCH_GRACE_NS,
    BatchKey,
    TraceStatus,
    batches_written,
    merge_batches,
    sale_statuses,
)

#: The newest record of each batch whose ``trace_code.id`` is in ``:traces`` (a JSON array).
NEWEST_BATCHES = """
SELECT t.market, t.code, s.vendor, s.plu, b.time_ns
FROM json_each(:traces) AS k
    CROSS JOIN trace_code AS t CROSS JOIN batch AS b CROSS JOIN batch_series AS s
WHERE t.id = k.value
  AND b.trace = t.id
  AND b.time_ns = (SELECT MAX(time_ns) FROM batch WHERE trace = t.id)
  AND s.id = b.series
"""

_UNKNOWN = TRACE_STATUS_CODES[TraceStatus.UNKNOWN_BATCH]
_VERIFIED = TRACE_STATUS_CODES[TraceStatus.VERIFIED]

#: A late batch: its vendor's unknown-batch sales of its product since the grace window.
VERIFY_LATE_SALES = f"""
UPDATE sale SET trace_status = {_VERIFIED}
WHERE trace = (SELECT id FROM trace_code WHERE market = :market AND code = :code)
  AND trace_status = {_UNKNOWN}
  AND time_ns >= :since
  AND product = (SELECT id FROM product WHERE market = :market AND plu = :plu)
  AND source IN (SELECT id FROM sale_source WHERE market = :market AND vendor = :vendor)
"""  # noqa: S608 - only constants of this module, values are bound


def with_trace_status(
    conn: sqlite3.Connection, rows: Sequence[EncodedRow], trace_ids: Mapping[tuple[str, ...], int]
) -> list[EncodedRow]:
    """``rows`` with each sale's trace status appended to its values (see ``codec.SALE``)."""
    named = {
        trace_ids[(row.reading.market, message.trace_code)]
        for row in rows
        if isinstance(message := row.reading.message, Sale)
    }
    if not named:
        return list(rows)
    known = merge_batches(
        _stored_batches(conn, named), batches_written(row.reading for row in rows)
    )
    statuses = sale_statuses((row.reading for row in rows), known)
    return [
        replace(row, values=(*row.values, TRACE_STATUS_CODES[statuses[index]]))
        if index in statuses
        else row
        for index, row in enumerate(rows)
    ]


def _stored_batches(
    conn: sqlite3.Connection, traces: Collection[int]
) -> dict[tuple[str, str], BatchKey]:
    rows = conn.execute(NEWEST_BATCHES, {"traces": json.dumps(sorted(traces))})
    return {
        (market, code): BatchKey(vendor, plu, time_ns)
        for market, code, vendor, plu, time_ns in rows
    }


def verify_late_sales(conn: sqlite3.Connection, batches: Sequence[EncodedRow]) -> None:
    """Turn the sales each written batch was late for verified (see ``storage.traceability``)."""
    params = [
        {
            "market": market,
            "code": code,
            "vendor": key.vendor,
            "plu": key.plu,
            "since": key.time_ns - LATE_BATCH_GRACE_NS,
        }
        for (market, code), key in batches_written(row.reading for row in batches).items()
    ]
    conn.executemany(VERIFY_LATE_SALES, params)
