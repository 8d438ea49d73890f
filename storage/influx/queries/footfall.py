"""Gate counters (``storage.interfaces.footfall``; hourly footfall is built from these)."""

from __future__ import annotations

from datetime import datetime

from storage.influx.influxql import equals, time_before
from storage.influx.reader import Reader, bound_ns, device_range
from storage.influx.rows import NEWEST_WITH_FALLBACK, gate_count_row, newest_whole_rows, whole_rows
from storage.interfaces.footfall import GateCountRow


def gate_counts(reader: Reader, market: str, start: datetime, end: datetime) -> list[GateCountRow]:
    series = reader.select("footfall", equals("market", market), *device_range(start, end))
    rows = map(gate_count_row, whole_rows("footfall", series))
    return sorted(rows, key=lambda r: (r.gate, r.ts))


def gate_counts_before(reader: Reader, market: str, moment: datetime) -> list[GateCountRow]:
    # LAST(in_total), LAST(out_total) could come from different points; the
    # newest point per gate keeps the pair consistent.
    series = reader.select(
        "footfall",
        equals("market", market),
        time_before(bound_ns(moment)),
        group_by=("gate",),
        newest_first=True,
        limit=NEWEST_WITH_FALLBACK,
    )
    rows = map(gate_count_row, newest_whole_rows("footfall", series))
    return sorted(rows, key=lambda r: r.gate)
