"""The devices of a market: scale statuses, when each device was last heard from, how much it sent.

Contract tests: ``tests/storage/contract/test_devices.py``.
"""

from __future__ import annotations

import abc
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

from storage.records import span_ns


@dataclass(frozen=True, slots=True)
class ScaleStatusRow:
    """A status a scale (or its Last Will) reported.

    ``ts`` is its point time (device time, or a Last Will's arrival), which orders
    a scale's own statuses; ``received`` is when it arrived, the clock of presence
    (see :meth:`DeviceStore.device_last_seen`) and of a Last Will.
    """

    market: str
    scale: str
    ts: datetime
    online: bool
    will: bool
    zero_ok: bool | None
    seal_intact: bool | None
    calibration_due: date | None
    received: datetime


#: How far back from a scale's newest own status (by point time) a store looks for a
#: Last Will. Enough: a will older than that status by more than a device clock may
#: run ahead (ingest refuses more than minutes) arrived before it did, so it cannot
#: be in force.
STATUS_LOOKBACK: Final = timedelta(hours=1)
STATUS_LOOKBACK_NS: Final = span_ns(STATUS_LOOKBACK)


def status_in_force(statuses: Iterable[ScaleStatusRow]) -> ScaleStatusRow | None:
    """Of one scale's statuses, the one that says what the scale is now.

    The scale's own statuses are ordered by its own clock (point time). A Last
    Will is the broker's, stamped on arrival: it is in force when it arrived after
    the newest of the scale's own statuses did, because the connection that sent
    that status is gone. Ordering the will by the status's point time instead
    would mix clocks: a scale whose clock runs ahead would hide its own will and
    show online after it died.
    """
    newest_own: ScaleStatusRow | None = None
    newest_will: ScaleStatusRow | None = None
    for status in statuses:
        if status.will:
            if newest_will is None or status.received > newest_will.received:
                newest_will = status
        elif newest_own is None or status.ts > newest_own.ts:
            newest_own = status
    if newest_own is None:
        return newest_will
    if newest_will is not None and newest_will.received > newest_own.received:
        return newest_will
    return newest_own


def statuses_in_force(statuses: Iterable[ScaleStatusRow]) -> list[ScaleStatusRow]:
    """Per (market, scale), :func:`status_in_force` of its statuses; ordered by scale."""
    by_scale: dict[tuple[str, str], list[ScaleStatusRow]] = defaultdict(list)
    for status in statuses:
        by_scale[status.market, status.scale].append(status)
    in_force = (status_in_force(by_scale[key]) for key in sorted(by_scale))
    return [status for status in in_force if status is not None]


class DeviceStore(abc.ABC):
    """The devices part of a store."""

    @abc.abstractmethod
    def scale_status(self, market: str) -> list[ScaleStatusRow]:
        """The status in force of every scale that has reported one, ordered by scale.

        Per scale, :func:`status_in_force` of its newest own status and its newest
        Last Will from :data:`STATUS_LOOKBACK` before that status on: a bounded read
        however long the scale has reported.
        """

    @abc.abstractmethod
    def device_last_seen(self, market: str, since: datetime) -> dict[str, datetime]:
        """When each device's newest reading at or after ``since`` arrived, by device id.

        Presence is on one clock, arrival (``received_ns``), as the live view
        records it for live messages: device clocks drift, and a view rebuilt from
        the store must show what it showed before. "Newest" and ``since`` are by
        point time, because only the point time is indexed: per series (and per
        screen) the arrival of its newest reading is taken, and per device the
        latest of those. As long as a device's readings arrive in the order it took
        them, that is when it was last heard. One that replays an old backlog after
        newer readings is seen when its newest reading arrived, not the backlog.

        Scales from their sales and statuses, gates from their counts, screens from
        the prices they showed, intake stations from their batches. A Last Will does
        not count: the broker sent it, not the device (its status is in
        :meth:`scale_status`). Times are aware UTC datetimes, exact to the
        microsecond; devices without a reading since ``since`` are absent. Costs an
        index seek per series, plus the prices set since ``since`` (a screen is not
        part of a price's series).
        """

    @abc.abstractmethod
    def message_counts(
        self, start: datetime, end: datetime, *, sales: bool = True
    ) -> dict[tuple[str, str], int]:
        """Number of stored readings per (market, device) in the range.

        ``sales=False`` leaves sales out, for a caller that has the range's sales per
        scale already (``sales_by_scale``): they are most of the readings to count.

        Counted by each reading's point time (see ``storage.records.point_time_ns``):
        its device time, or for a Last Will its arrival. Validation keeps device time
        within minutes of arrival for live traffic; a backlog a device replays late
        counts in the range it was measured in. Counting by arrival instead would
        mean scanning every table beyond the range, because only the point time is
        indexed. Devices without readings in the range are absent.
        """
