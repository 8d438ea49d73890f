"""Gate counters (``storage.interfaces.footfall``; hourly footfall is built from these)."""

from __future__ import annotations

from datetime import datetime, tzinfo

from storage.hours import HourSplit
from storage.influx.influxql import equals, time_before, time_from
from storage.influx.reader import Reader, bound_ns, device_range
from storage.influx.rollups import FOOTFALL_HOURLY
from storage.influx.rows import (
    NEWEST_WITH_FALLBACK,
    gate_count_row,
    int_column,
    newest_whole_rows,
    str_column,
    tagged_rows,
    whole_rows,
)
from storage.interfaces.footfall import FootfallRow, GateCountRow
from storage.records import from_ns


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


def footfall_hours(reader: Reader, market: str, split: HourSplit, tz: tzinfo) -> list[FootfallRow]:
    """The ``footfall_hourly`` rollup of the split's whole hours, per gate (hours in ``tz``).

    Each holds the sum of its readings' increases over their predecessors, which
    within a range is what the computation from raw counts adds up (the baseline
    for the first), so whole hours are taken as they are.
    """
    if split.hours_start >= split.hours_end:
        return []
    series = reader.select(
        FOOTFALL_HOURLY,
        equals("market", market),
        time_from(split.hours_start),
        time_before(split.hours_end),
        group_by=("gate",),
    )
    return [
        FootfallRow(
            market,
            str_column(row, "gate"),
            from_ns(int_column(row, "time")).astimezone(tz),
            int_column(row, "people_in"),
            int_column(row, "people_out"),
        )
        for row in tagged_rows(series)
        if row.get("readings")
    ]
