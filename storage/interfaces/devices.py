"""The devices of a market: scale statuses, when each device was last heard from, how much it sent.

Contract tests: ``tests/storage/contract/test_devices.py``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class ScaleStatusRow:
    """The latest status a scale (or its Last Will) reported.

    ``ts`` is its point time (device time, or a Last Will's arrival), which orders
    statuses; ``received`` is when it arrived, the clock of presence (see
    :meth:`DeviceStore.device_last_seen`).
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


class DeviceStore(abc.ABC):
    """The devices part of a store."""

    @abc.abstractmethod
    def scale_status(self, market: str) -> list[ScaleStatusRow]:
        """The latest status of every scale that has reported one, ordered by scale."""

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
    def message_counts(self, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
        """Number of stored readings per (market, device) in the range.

        Counted by each reading's point time (see ``storage.records.point_time_ns``):
        its device time, or for a Last Will its arrival. Validation keeps device time
        within minutes of arrival for live traffic; a backlog a device replays late
        counts in the range it was measured in. Counting by arrival instead would
        mean scanning every table beyond the range, because only the point time is
        indexed. Devices without readings in the range are absent.
        """
