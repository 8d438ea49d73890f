"""What the store refused: the writing interface's reads (``storage.interfaces.writing``)."""

from __future__ import annotations

from datetime import datetime

from storage.influx.influxql import time_before, time_from
from storage.influx.reader import Reader, aware_ns, optional_equals
from storage.influx.rows import dead_letter_row, int_column, whole_rows
from storage.records import DeadLetter


def dead_letters(
    reader: Reader, start: datetime, end: datetime, *, market: str | None = None, limit: int = 100
) -> list[DeadLetter]:
    if limit <= 0:
        return []
    series = reader.select(
        "dead_letter",
        optional_equals("market", market),
        time_from(aware_ns(start)),
        time_before(aware_ns(end)),
        newest_first=True,
        limit=limit,
    )
    letters = map(dead_letter_row, whole_rows("dead_letter", series))
    return sorted(letters, key=lambda d: d.received_ns, reverse=True)[:limit]


def reject_counts(reader: Reader, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
    series = reader.select(
        "dead_letter",
        time_from(aware_ns(start)),
        time_before(aware_ns(end)),
        count_of="payload_size",
        group_by=("market", "device"),
    )
    counts: dict[tuple[str, str], int] = {}
    for one in series:
        key = (one.tags.get("market", ""), one.tags.get("device", ""))
        for row in one.rows:
            counts[key] = counts.get(key, 0) + int_column(row, "count")
    return {key: count for key, count in counts.items() if count}
