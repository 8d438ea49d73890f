"""What ingest hands to a store, and how each reading maps onto one stored point.

Both backends derive a point's identity (series + timestamp) from these
functions only, so a redelivered or replayed message overwrites itself in
InfluxDB (same series, same timestamp: the store merges) and in SQLite (same
primary key: an upsert, ``ON CONFLICT DO UPDATE``, or ``INSERT OR REPLACE`` for
tables without rollups; see ``storage.sqlite.codec``). Series keys hold only bounded values that
come from the topic and the payload, never from mutable registry data and
never unbounded ids such as trace codes or message ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas.messages import BatchIntake, DeviceMessage, GateCount, PriceSet, Sale, ScaleStatus

_NS_PER_MS = 1_000_000
#: Placeholder tag value for a dead letter whose market or device is not registered,
#: so an attacker cannot create unbounded series by inventing ids.
UNREGISTERED = "_unregistered"


@dataclass(frozen=True, slots=True)
class Reading:
    """A validated device message together with where and when it arrived."""

    market: str
    device: str
    received_ns: int
    message: DeviceMessage
    #: Set by the edge check on a sale of a product whose category the stall is
    #: not registered for (the market file); the store records it on the sale.
    outside_categories: bool = False

    @property
    def time_ns(self) -> int:
        return point_time_ns(self)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected message, kept with the reason, the topic and the raw bytes.

    ``market``/``device`` are set only when they are registered; otherwise they
    are :data:`UNREGISTERED` and the claimed ids survive in ``topic``.
    """

    received_ns: int
    topic: str
    payload: bytes
    reason: str
    market: str = UNREGISTERED
    device: str = UNREGISTERED
    #: size of the original payload; ``payload`` may be truncated for oversized messages
    payload_size: int = field(default=-1)

    def __post_init__(self) -> None:
        if self.payload_size < 0:
            object.__setattr__(self, "payload_size", len(self.payload))


def dead_letter_ordinals(letters: Sequence[DeadLetter]) -> list[int]:
    """Each letter's ordinal among the letters before it with the same identity.

    A dead letter's identity is (market, device, arrival nanosecond) plus this
    ordinal, in both backends: letters of one write that share the rest stay
    apart, and the same write stored again (the forwarder died before trimming
    its spool) lands on the same letters instead of adding to them.
    """
    seen: dict[tuple[str, str, int], int] = {}
    ordinals = []
    for letter in letters:
        identity = (letter.market, letter.device, letter.received_ns)
        ordinal = seen.get(identity, 0)
        seen[identity] = ordinal + 1
        ordinals.append(ordinal)
    return ordinals


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, exactly (no float round trip)."""
    # timedelta // timedelta is exact integer arithmetic, done in C.
    return (moment - _EPOCH) // _MICROSECOND * 1_000


def point_time_ns(reading: Reading) -> int:
    """Timestamp of the stored point.

    Device time truncated to the millisecond, with the low six digits carrying
    ``msg_id mod 10**6``: two sales in the same millisecond stay two points,
    while a replay of the same message lands on the same point. A Last Will is
    stamped with its arrival time because its device time is from connect time.
    """
    message = reading.message
    if isinstance(message, ScaleStatus) and message.will:
        return reading.received_ns
    millis = to_ns(message.ts) // _NS_PER_MS
    return millis * _NS_PER_MS + message.msg_id % _NS_PER_MS


def measurement_of(message: DeviceMessage) -> str:
    return _MEASUREMENTS[type(message)]


_MEASUREMENTS: dict[type[DeviceMessage], str] = {
    Sale: "sale",
    ScaleStatus: "scale_status",
    GateCount: "footfall",
    PriceSet: "price",
    BatchIntake: "batch",
}

_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
_MICROSECOND = timedelta(microseconds=1)
