"""What ingest hands to a store, and how each reading maps onto one stored point.

This is the point codec both stores and the live view share: point time
(:func:`point_time_ns`, :func:`point_ns`), device time (:func:`device_time`,
:func:`time_bound_ns`), ns ↔ datetime (:func:`to_ns`, :func:`from_ns`),
percent ↔ permille (:func:`pct_to_permille`, :func:`permille_to_pct`) and a
refused reading as a dead letter (:func:`reading_as_dead_letter`). All of it is
integer (or Decimal) arithmetic: a float loses nanoseconds and tenths.

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
from decimal import Decimal

from schemas.messages import (
    BatchIntake,
    DeviceMessage,
    GateCount,
    PriceSet,
    RapidTestReport,
    Sale,
    ScaleStatus,
)
from schemas.topics import CHANNELS, topic_for

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
    #: The stored point's time (:func:`point_time_ns`), worked out once here: a write
    #: needs it for the point's line, its rollup mark and its trace index entries, and
    #: the datetime arithmetic, done for each, was a sixth of the InfluxDB writer's time
    #: in a profile of the ingest benchmark.
    time_ns: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "time_ns", _point_time_ns(self.message, self.received_ns))


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


def require_aware(*moments: datetime) -> None:
    """Refuse naive datetimes: a store's times are absolute instants."""
    for moment in moments:
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(
                f"{moment!r} is naive: it has no time zone, and a store's times are absolute"
            )


def span_ns(span: timedelta) -> int:
    """Nanoseconds in ``span``, exactly."""
    return span // _MICROSECOND * 1_000


def point_time_ns(reading: Reading) -> int:
    """Timestamp of the stored point (:attr:`Reading.time_ns`).

    Device time truncated to the millisecond, with the low six digits carrying
    ``msg_id mod 10**6``: two sales in the same millisecond stay two points,
    while a replay of the same message lands on the same point. A Last Will is
    stamped with its arrival time because its device time is from connect time.
    """
    return reading.time_ns


def _point_time_ns(message: DeviceMessage, received_ns: int) -> int:
    if isinstance(message, ScaleStatus) and message.will:
        return received_ns
    return point_ns(message.ts, message.msg_id)


def point_ns(device_ts: datetime, msg_id: int) -> int:
    """The stored point time of a message with device time ``device_ts`` and ``msg_id``.

    See :func:`point_time_ns`; also what a reader that holds a stored row (whose
    ``ts`` is already cut to the millisecond) uses to order it as the store does.
    """
    millis = to_ns(device_ts) // _NS_PER_MS
    return millis * _NS_PER_MS + msg_id % _NS_PER_MS


def from_ns(ns: int) -> datetime:
    """Aware UTC datetime of nanoseconds since the epoch, exact to the microsecond (no float)."""
    return _EPOCH + timedelta(microseconds=ns // 1_000)


def device_time(time_ns: int) -> datetime:
    """The device time of a stored point: its millisecond part (the rest carries ``msg_id``)."""
    return from_ns(time_ns - time_ns % _NS_PER_MS)


def time_bound_ns(moment: datetime) -> int:
    """Bound on point times equivalent to ``moment`` on millisecond device times.

    A point's device time T is whole milliseconds and its time lies in
    ``[T, T + 1 ms)``, so ``T >= moment`` exactly when ``time_ns >= ceil_ms(moment)``
    and ``T < moment`` exactly when ``time_ns < ceil_ms(moment)``.
    """
    return -(-to_ns(moment) // _NS_PER_MS) * _NS_PER_MS


def pct_to_permille(pct: Decimal) -> int:
    """45.5 % → 455, exactly; the contract allows one decimal, anything finer raises ValueError."""
    scaled = pct.scaleb(1)
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        raise ValueError(f"inhibition_pct {pct} has more than one decimal place")
    return int(scaled)


def permille_to_pct(permille: int) -> Decimal:
    """455 → Decimal('45.5')."""
    return Decimal(permille).scaleb(-1)


def reading_as_dead_letter(reading: Reading, reason: str) -> DeadLetter:
    """A reading the store does not keep, as a dead letter carrying the message as JSON."""
    message: DeviceMessage = reading.message
    kind, channel = _CHANNEL_OF[type(message)]
    return DeadLetter(
        received_ns=reading.received_ns,
        topic=topic_for(reading.market, kind, reading.device, channel),
        payload=message.model_dump_json().encode(),
        reason=reason,
        market=reading.market,
        device=reading.device,
    )


def measurement_of(message: DeviceMessage) -> str:
    return _MEASUREMENTS[type(message)]


_MEASUREMENTS: dict[type[DeviceMessage], str] = {
    Sale: "sale",
    ScaleStatus: "scale_status",
    GateCount: "footfall",
    PriceSet: "price",
    BatchIntake: "batch",
    RapidTestReport: "rapid_test",
}

_CHANNEL_OF = {model: kind_channel for kind_channel, model in CHANNELS.items()}

_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
_MICROSECOND = timedelta(microseconds=1)
