"""Scales' status, when devices were last seen, and their message counts.

(``storage.interfaces.devices``.)
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Final

from storage.influx.influxql import Column, Condition, SelectColumns, equals, time_from
from storage.influx.reader import Reader, bound_ns, device_range
from storage.influx.rows import (
    NEWEST_WITH_FALLBACK,
    int_column,
    newest_whole_rows,
    scale_status_row,
    str_column,
    tagged_rows,
    whole_rows,
)
from storage.interfaces.devices import (
    STATUS_LOOKBACK_NS,
    STATUS_LOOKBACK_ROWS,
    ScaleStatusRow,
    statuses_in_force,
)
from storage.records import from_ns, to_ns

#: Measurements whose device is a tag, and that tag (a price's screen is a field).
_DEVICE_TAGS: Final = (
    ("sale", "scale"),
    ("scale_status", "scale"),
    ("footfall", "gate"),
    ("batch", "station"),
)


def scale_status(reader: Reader, market: str) -> list[ScaleStatusRow]:
    # The newest STATUS_LOOKBACK_ROWS per scale, then those within STATUS_LOOKBACK
    # of its newest: the same candidates as SQLite's, in one request.
    series = reader.select(
        "scale_status",
        equals("market", market),
        group_by=("scale",),
        newest_first=True,
        limit=STATUS_LOOKBACK_ROWS,
    )
    candidates: list[ScaleStatusRow] = []
    for one in series:
        rows = [scale_status_row(row) for row in whole_rows("scale_status", [one])]
        if rows:
            newest = max(to_ns(row.ts) for row in rows)
            candidates += [r for r in rows if to_ns(r.ts) >= newest - STATUS_LOOKBACK_NS]
    return statuses_in_force(candidates)


def device_last_seen(reader: Reader, market: str, since: datetime) -> dict[str, datetime]:
    """See :meth:`Store.device_last_seen`: the arrival of the newest point per series.

    A price's screen is a field, so the screens of the prices since ``since``
    are listed (two short columns) and the newest per screen kept here. A point
    whose write is in flight is passed over, as everywhere (``rows.WRITTEN_WITH``).
    """
    bounds = (equals("market", market), time_from(bound_ns(since)))
    arrivals: dict[str, int] = {}

    def saw(device: str, received_ns: int) -> None:
        arrivals[device] = max(received_ns, arrivals.get(device, received_ns))

    for measurement, device_tag in _DEVICE_TAGS:
        # A Last Will is the broker's message, not the device's.
        not_a_will = equals("will", False) if measurement == "scale_status" else None
        latest = reader.select(
            measurement,
            *bounds,
            not_a_will,
            group_by=(device_tag,),
            newest_first=True,
            limit=NEWEST_WITH_FALLBACK,
        )
        for row in newest_whole_rows(measurement, latest):
            saw(str_column(row, device_tag), int_column(row, "received_ns"))
    for screen, received_ns in _newest_price_per_screen(reader, bounds).items():
        saw(screen, received_ns)
    return {device: from_ns(arrivals[device]) for device in sorted(arrivals)}


def _newest_price_per_screen(reader: Reader, bounds: tuple[Condition, ...]) -> dict[str, int]:
    """The arrival of the newest price (by point time) of each screen within ``bounds``."""
    listed = reader.select_columns(
        SelectColumns("price", columns=(Column("screen"), Column("received_ns")), where=bounds)
    )
    newest: dict[str, tuple[int, int]] = {}  # screen -> (point time, arrival)
    for row in tagged_rows(listed):
        if row.get("screen") is None or row.get("received_ns") is None:
            continue  # a write in flight: whole on the next read
        screen, time_ns = str_column(row, "screen"), int_column(row, "time")
        if screen not in newest or time_ns > newest[screen][0]:
            newest[screen] = (time_ns, int_column(row, "received_ns"))
    return {screen: received_ns for screen, (_, received_ns) in newest.items()}


def message_counts(reader: Reader, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
    """See :meth:`Store.message_counts`: a ``COUNT`` per device tag.

    A price's screen is a field, not a tag, so price points in the range are
    listed (one short column) and counted here.
    """
    bounds = device_range(start, end)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for measurement, device_tag in _DEVICE_TAGS:
        grouped = reader.select(
            measurement, *bounds, count_of="msg_id", group_by=("market", device_tag)
        )
        for one in grouped:
            key = (one.tags.get("market", ""), one.tags.get(device_tag, ""))
            counts[key] += sum(int_column(row, "count") for row in one.rows)
    screens = reader.select_columns(
        SelectColumns("price", columns=(Column("screen"),), where=bounds, group_by=("market",))
    )
    for one in screens:
        for row in one.rows:
            counts[(one.tags.get("market", ""), str_column(row, "screen"))] += 1
    return {key: count for key, count in counts.items() if count}
