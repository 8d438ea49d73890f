"""UTC hours: how a range splits into partial edge hours and whole hours, for the rollups.

Both stores keep hourly rollups per UTC hour and read them for the whole hours
of a range, raw points only for the partial hours at its edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Final

from storage.records import from_ns, require_aware, time_bound_ns

HOUR_NS: Final = 3_600 * 1_000_000_000


def hour_of(time_ns: int) -> int:
    """The start of the UTC hour of a point time (floored, also before 1970)."""
    return time_ns - time_ns % HOUR_NS


@dataclass(frozen=True, slots=True)
class HourSplit:
    """``[start, end)`` as point-time bounds: raw ``[start, head_end)`` and
    ``[tail_start, end)``, rollups for ``hours_start <= hour < hours_end``.

    A range without a whole hour is all head.
    """

    start: int
    head_end: int
    hours_start: int
    hours_end: int
    tail_start: int
    end: int

    @classmethod
    def of(cls, start: datetime, end: datetime) -> HourSplit:
        require_aware(start, end)
        low, high = time_bound_ns(start), time_bound_ns(end)
        hours_start = -(-low // HOUR_NS) * HOUR_NS
        hours_end = high // HOUR_NS * HOUR_NS
        if hours_start >= hours_end:
            hours_start = hours_end = high
        return cls(low, hours_start, hours_start, hours_end, hours_end, high)

    def as_params(self) -> dict[str, int]:
        return {
            "start": self.start,
            "head_end": self.head_end,
            "hours_start": self.hours_start,
            "hours_end": self.hours_end,
            "tail_start": self.tail_start,
            "end": self.end,
        }


def whole_hour_offsets(tz: tzinfo, start: datetime, end: datetime) -> bool:
    """Whether every local hour of ``[start, end)`` in ``tz`` is a UTC hour.

    True when, in each UTC hour the range touches, ``tz``'s offset is a whole
    number of hours and does not change after the hour began: then a moment's
    local hour starts at the same instant as its UTC hour.
    """
    hour, last_moment = timedelta(hours=1), timedelta(microseconds=1)
    moment = from_ns(time_bound_ns(start) // HOUR_NS * HOUR_NS)
    while moment < end:
        offset = tz.utcoffset(moment.astimezone(tz))
        if (
            offset is None
            or offset % hour
            or offset != tz.utcoffset((moment + hour - last_moment).astimezone(tz))
        ):
            return False
        moment += hour
    return True
