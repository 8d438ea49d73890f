"""Footfall from cumulative gate counters.

A gate reports running totals. The people counted between two readings is the
difference, except when the counter went down: then it restarted, and its new
value is what it counted since (the same rule as Prometheus' ``increase``).
Each increment is attributed to the local hour of the later reading.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.interfaces.footfall import FootfallRow, GateCountRow


def counter_increase(previous: int | None, current: int) -> int:
    if previous is None:
        return 0
    return current - previous if current >= previous else current


def hour_start(moment: datetime, tz: object) -> datetime:
    local = moment.astimezone(tz)  # type: ignore[arg-type]
    return local.replace(minute=0, second=0, microsecond=0)


def hourly_footfall(
    market: str,
    baseline: Iterable[GateCountRow],
    readings: Sequence[GateCountRow],
    start: datetime,
    end: datetime,
) -> list[FootfallRow]:
    from storage.interfaces.footfall import FootfallRow

    tz = start.tzinfo
    last: dict[str, tuple[int, int]] = {row.gate: (row.in_total, row.out_total) for row in baseline}
    totals: dict[tuple[str, datetime], list[int]] = defaultdict(lambda: [0, 0])
    for row in sorted(readings, key=lambda r: (r.gate, r.ts)):
        prev = last.get(row.gate)
        bucket = totals[(row.gate, hour_start(row.ts, tz))]
        bucket[0] += counter_increase(prev[0] if prev else None, row.in_total)
        bucket[1] += counter_increase(prev[1] if prev else None, row.out_total)
        last[row.gate] = (row.in_total, row.out_total)
    return [
        FootfallRow(market, gate, hour, people_in, people_out)
        for (gate, hour), (people_in, people_out) in sorted(totals.items())
        if start - timedelta(hours=1) < hour < end
    ]
