"""Scales' status, when devices were last seen, and their message counts.

(``storage.interfaces.devices``.)
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Final

from storage.hours import HourSplit
from storage.influx.influxql import (
    Column,
    Condition,
    Select,
    SelectColumns,
    equals,
    time_before,
    time_from,
)
from storage.influx.reader import Reader, bound_ns, device_range
from storage.influx.rollups import MARKET_SALE_HOURLY, SALE_HOURLY, SCALE_SALE_HOURLY
from storage.influx.rows import (
    NEWEST_WITH_FALLBACK,
    int_column,
    newest_whole_rows,
    scale_status_row,
    str_column,
    tagged_rows,
)
from storage.interfaces.devices import STATUS_LOOKBACK_NS, ScaleStatusRow, statuses_in_force
from storage.records import from_ns, to_ns

#: Measurements whose device is a tag, and that tag (a price's screen is a field).
_DEVICE_TAGS: Final = (
    ("sale", "scale"),
    ("scale_status", "scale"),
    ("footfall", "gate"),
    ("batch", "station"),
    ("rapid_test", "station"),
)


#: Scales whose newest own status is this much older than the market's newest are
#: looked at one by one for their will; the rest share one read.
_STALE_NS: Final = 24 * 3_600 * 1_000_000_000


def scale_status(reader: Reader, market: str) -> list[ScaleStatusRow]:
    """See :meth:`Store.scale_status`: bounded reads, whatever the history.

    Each scale's newest own status is read within a day of the market's newest status
    (a seek per series there); the scales the index knows but that read did not find,
    silent for longer, one by one without that bound (a shared unbounded read costs a
    pass over every shard of heartbeats: 200-280 ms for 300 scales at 30 days, against
    40 ms within a day). Then each scale's newest Last Will from
    :data:`STATUS_LOOKBACK` before its newest own status on: one statement for the
    scales heard from within a day of the market's newest, and one each for the few
    silent longer (a shared lower bound would make the read reach back to the oldest).
    """
    # LAST() of one field: a selector answers its point's time, and reads one column
    # (a SELECT * ... LIMIT 1 across the series reads every field: 3-5 times slower).
    newest = reader.select_columns(
        SelectColumns(
            "scale_status",
            (Column("msg_id", "LAST", "msg_id"),),
            where=(equals("market", market),),
        )
    )
    latest = next((int_column(row, "time") for row in tagged_rows(newest)), None)
    if latest is None:
        return []
    own = _newest_own(reader, market, (time_from(latest - _RECENT_NS),))
    known = {
        keys["scale"]
        for keys in reader.series_keys("scale_status", (equals("market", market),))
        if "scale" in keys
    }
    for scale in sorted(known - own.keys()):
        own |= _newest_own(reader, market, (equals("scale", scale),))
    wills = _newest_wills(reader, market, {scale: to_ns(row.ts) for scale, row in own.items()})
    candidates: list[ScaleStatusRow] = [*own.values()]
    for will in wills:
        mine = own.get(will.scale)
        if mine is None or to_ns(will.ts) >= to_ns(mine.ts) - STATUS_LOOKBACK_NS:
            candidates.append(will)
    return statuses_in_force(candidates)


#: Scales heard from within this of the market's newest status are read together.
_RECENT_NS: Final = 86_400 * 1_000_000_000


def _newest_own(
    reader: Reader, market: str, bounds: tuple[Condition, ...]
) -> dict[str, ScaleStatusRow]:
    """Each scale's newest status of its own (not a Last Will) within ``bounds``."""
    rows = newest_whole_rows(
        "scale_status",
        reader.select(
            "scale_status",
            equals("market", market),
            equals("will", False),
            *bounds,
            group_by=("scale",),
            newest_first=True,
            limit=NEWEST_WITH_FALLBACK,
        ),
    )
    return {row.scale: row for row in map(scale_status_row, rows)}


def _newest_wills(reader: Reader, market: str, own_newest: dict[str, int]) -> list[ScaleStatusRow]:
    """Per scale, its newest Last Will from :data:`STATUS_LOOKBACK` before ``own_newest`` on.

    A scale that never sent a status of its own is found by the shared read, so
    its will must be from within a day of the market's newest status (a will
    older than that, of a scale that never worked, is not worth a full scan).
    """
    newest = max(own_newest.values(), default=None)
    recent = [ns for ns in own_newest.values() if newest is not None and ns >= newest - _STALE_NS]
    selects: list[Select] = []
    if recent:
        selects.append(_wills(market, since_ns=min(recent) - STATUS_LOOKBACK_NS, number=0))
    stale = sorted(
        scale for scale, ns in own_newest.items() if newest is not None and ns < newest - _STALE_NS
    )
    for number, scale in enumerate(stale, start=1):
        since = own_newest[scale] - STATUS_LOOKBACK_NS
        selects.append(_wills(market, since_ns=since, number=number, scale=scale))
    if newest is None:
        # No scale of the market ever sent a status of its own: only wills to read.
        selects.append(_wills(market, since_ns=None, number=0))
    queries = [routed.query() for select in selects for routed in reader.routed(select)]
    series = reader.statements(queries)
    newest_will: dict[str, ScaleStatusRow] = {}
    for row in map(scale_status_row, newest_whole_rows("scale_status", series)):
        held = newest_will.get(row.scale)
        if held is None or row.received > held.received:
            newest_will[row.scale] = row
    return [
        will
        for scale, will in newest_will.items()
        if scale not in own_newest or to_ns(will.ts) >= own_newest[scale] - STATUS_LOOKBACK_NS
    ]


def _wills(market: str, *, since_ns: int | None, number: int, scale: str | None = None) -> Select:
    where = [
        equals("market", market, param=f"market_w{number}"),
        equals("will", True, param=f"will_w{number}"),
    ]
    if scale is not None:
        where.append(equals("scale", scale, param=f"scale_w{number}"))
    if since_ns is not None:
        where.append(Condition("time", ">=", f"since_w{number}", since_ns))
    return Select(
        "scale_status",
        where=tuple(where),
        group_by=("scale",),
        newest_first=True,
        limit=NEWEST_WITH_FALLBACK,
    )


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


def message_counts(
    reader: Reader, start: datetime, end: datetime, *, sales: bool = True, census: bool = True
) -> dict[tuple[str, str], int]:
    """See :meth:`Store.message_counts`: a ``COUNT`` per device tag, in one request.

    A scale's sales, by far the most readings, are counted from ``scale_sale_hourly``
    over the whole hours (a few hundred series, where the raw day has thousands) and
    from the raw edge hours; in a market whose whole hours lack scale points (not yet
    backfilled, see ``storage.influx.rollups``; ``census=False``: the database is known
    to have none) from ``sale_hourly``. A price's screen
    is a field, not a tag, so price points in the range are listed (one short column)
    and counted here.
    """
    bounds = device_range(start, end)
    split = HourSplit.of(start, end)
    selects: list[Select | SelectColumns] = [
        Select(measurement, where=bounds, count_of="msg_id", group_by=("market", device_tag))
        for measurement, device_tag in _DEVICE_TAGS
        if measurement != "sale"
    ]
    selects.append(
        SelectColumns("price", columns=(Column("screen"),), where=bounds, group_by=("market",))
    )
    for low, high in ((split.start, split.head_end), (split.tail_start, split.end)):
        if sales and low < high:
            edge = (time_from(low), time_before(high))
            selects.append(Select("sale", where=edge, count_of="msg_id", group_by=_SCALE_TAGS))
    hours = (time_from(split.hours_start), time_before(split.hours_end))
    whole_hours = sales and split.hours_start < split.hours_end
    if whole_hours:
        selects.append(
            SelectColumns(SCALE_SALE_HOURLY, (_SOLD,), where=hours, group_by=_SCALE_TAGS)
        )
        if census:
            selects += [
                SelectColumns(SCALE_SALE_HOURLY, (_SOLD,), where=hours, group_by=("market",)),
                SelectColumns(MARKET_SALE_HOURLY, (_SOLD,), where=hours, group_by=("market",)),
            ]
    counts: dict[tuple[str, str], int] = defaultdict(int)
    per_scale: dict[tuple[str, str], int] = defaultdict(int)
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for one in reader.select_each(selects):
        market = one.tags.get("market", "")
        if one.name == "price":
            for row in one.rows:
                counts[(market, str_column(row, "screen"))] += 1
        elif one.name in (SCALE_SALE_HOURLY, MARKET_SALE_HOURLY) and "scale" not in one.tags:
            totals[market][one.name] += sum(_int(row.get("sold")) for row in one.rows)
        else:
            tag = next(tag for tag in _COUNTED_TAGS if tag in one.tags)
            total = sum(_int(row.get("count", row.get("sold"))) for row in one.rows)
            target = per_scale if one.name == SCALE_SALE_HOURLY else counts
            target[(market, one.tags[tag])] += total
    unrolled = {
        m for m, sums in totals.items() if sums[SCALE_SALE_HOURLY] != sums[MARKET_SALE_HOURLY]
    }
    for key, sold in per_scale.items():
        if key[0] not in unrolled:
            counts[key] += sold
    if unrolled:
        fallback = SelectColumns(SALE_HOURLY, (_SOLD,), where=hours, group_by=_SCALE_TAGS)
        for one in reader.select_columns(fallback):
            if one.tags.get("market", "") in unrolled:
                key = (one.tags["market"], one.tags.get("scale", ""))
                counts[key] += sum(_int(row.get("sold")) for row in one.rows)
    return {key: count for key, count in counts.items() if count}


_SCALE_TAGS: Final = ("market", "scale")
_COUNTED_TAGS: Final = ("scale", "gate", "station")
_SOLD: Final = Column("transactions", "SUM", "sold")


def _int(value: object) -> int:
    return value if type(value) is int else 0
