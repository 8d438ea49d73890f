"""The unit the day model produces: one device message at one instant, and the market's hours."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from schemas.messages import DeviceMessage

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
#: Each device gets a block of this many message ids per market day (see :func:`msg_id_base`).
IDS_PER_DAY = 1_000_000


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime, exactly."""
    return (moment - _EPOCH) // _MS


def from_epoch_ms(at_ms: int, tz: ZoneInfo) -> datetime:
    """The aware local datetime of an epoch-ms instant, exactly."""
    return (_EPOCH + at_ms * _MS).astimezone(tz)


def msg_id_base(day: date) -> int:
    """First message id of ``day`` for every device.

    Any day can be generated on its own, yet ids still only increase from one
    day to the next, because each device numbers its messages within a block
    that starts at ``day.toordinal() × 10⁶``. Id ``base`` itself is never used
    by a message; a Last Will composed before the day's first message carries it.
    """
    return day.toordinal() * IDS_PER_DAY


@dataclass(frozen=True, slots=True)
class MarketHours:
    """One market day's opening hours as epoch milliseconds (DST-safe)."""

    day: date
    tz: ZoneInfo
    opens_ms: int
    closes_ms: int

    @classmethod
    def of(cls, day: date, tz: ZoneInfo, opens: time, closes: time) -> MarketHours:
        return cls(day, tz, _local_ms(day, opens, tz), _local_ms(day, closes, tz))

    @property
    def minutes(self) -> int:
        """Whole minutes the market is open (a trailing partial minute counts)."""
        return -(-(self.closes_ms - self.opens_ms) // 60_000)

    def at(self, local: time) -> int:
        return _local_ms(self.day, local, self.tz)

    def local(self, at_ms: int) -> datetime:
        return from_epoch_ms(at_ms, self.tz)

    def minute_start(self, minute: int) -> int:
        return self.opens_ms + minute * 60_000


def _local_ms(day: date, local: time, tz: ZoneInfo) -> int:
    return epoch_ms(datetime.combine(day, local, tzinfo=tz))


@dataclass(frozen=True, slots=True)
class DayEvent:
    """A message a device publishes at ``at_ms`` (epoch ms; ``message.ts`` is the same instant)."""

    at_ms: int
    device: str
    topic: str
    message: DeviceMessage

    def payload(self) -> bytes:
        """The bytes the device publishes (optional fields left out, as devices do)."""
        return self.message.model_dump_json(exclude_none=True).encode()

    @property
    def sort_key(self) -> tuple[int, str, int]:
        return (self.at_ms, self.device, self.message.msg_id)


@dataclass(slots=True)
class MessageIds:
    """Per-device message counters for one market day."""

    day: date
    _next: dict[str, int] = field(default_factory=dict)

    def next(self, device: str) -> int:
        value = self._next.get(device, msg_id_base(self.day) + 1)
        if value - msg_id_base(self.day) >= IDS_PER_DAY:
            raise OverflowError(f"device {device} exceeded {IDS_PER_DAY - 1} messages in one day")
        self._next[device] = value + 1
        return value
