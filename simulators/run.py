"""Play market days against an MQTT broker, in real time, faster, or as fast as possible.

``run_day(market, "mqtt://host:1883", seed=1, speed=60, date=…)`` connects the
market's devices (see ``simulators.devices``), then publishes the day's events
(``simulators.day``) when their time comes: ``speed=1`` is real time, ``60``
plays a market hour per minute, ``0`` sends everything at once (the connection
window and back-pressure keep memory bounded). ``run_markets`` plays several
markets of one deployment together, over one set of connections. Progress is
logged; the summary counts what was published per message type.

Device timestamps are the simulated ones, and ingest rejects readings far in
the future or older than its ``max_age``: play today at ``speed=1`` with
``catch_up_to=now`` (earlier events go out at once, later ones as they happen),
or a recent past day at any speed.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date as Date
from datetime import datetime

from schemas.commands import COMMANDS, command_topic
from schemas.messages import DeviceKind, DeviceMessage, Sale, ScaleStatus
from schemas.registry import Market, RegistrySource
from schemas.topics import topic_for
from simulators.clock import Clock, Pacer, WallClock
from simulators.config import DayConfig
from simulators.day import MarketDay
from simulators.devices import (
    BrokerAddress,
    ConnectionMode,
    DeviceHub,
    FleetDevice,
    HubStats,
    LinkOptions,
    WillSource,
    build_hub,
)
from simulators.events import IDS_PER_DAY, DayEvent, MarketHours, epoch_ms, msg_id_base
from simulators.joining import RegistryWatch, devices_of

log = logging.getLogger(__name__)

#: Above this many devices the runner multiplexes unless told otherwise.
PER_DEVICE_LIMIT = 250
#: Pump the network at least this often while publishing flat out.
_PUMP_EVERY = 200
#: Back-pressure while connected: above HIGH waiting messages, pump until below LOW.
_BACKLOG_HIGH, _BACKLOG_LOW = 50_000, 10_000


@dataclass(frozen=True, slots=True)
class DeviceSettings:
    """How the simulated devices connect (see ``simulators.devices.build_hub``)."""

    mode: ConnectionMode | None = None  # None: per device up to PER_DEVICE_LIMIT devices
    options: LinkOptions | None = None
    passwords: Mapping[str, str] | None = None
    authenticate: bool = False
    connections: int = 4  # multiplexed mode only
    #: Scales of an old model that ignore their command topic: they sell a locked batch
    #: anyway (stallwatch stores, flags and alerts such a sale).
    deaf_scales: frozenset[str] = frozenset()


@dataclass(slots=True)
class RunSummary:
    day: Date
    counts: Counter[str] = field(default_factory=Counter)  # per message type
    by_market: dict[str, Counter[str]] = field(default_factory=dict)
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    wall_seconds: float = 0.0
    delivery: HubStats | None = None  # the devices' view at the end
    #: sales the scales refused: their batch was locked (``simulators.commands``)
    refused_sales: int = 0

    @property
    def total(self) -> int:
        return self.counts.total()

    def record(self, market: str, event: DayEvent) -> None:
        kind = type(event.message).__name__
        self.counts[kind] += 1
        self.by_market.setdefault(market, Counter())[kind] += 1
        if self.first_ts is None:
            self.first_ts = event.message.ts
        self.last_ts = event.message.ts


class _DeviceTime:
    """A market's simulated device clock and each scale's latest message id, for Last Wills."""

    def __init__(self, market: Market, hours: MarketHours) -> None:
        self._market = market
        self._hours = hours
        self._latest_ms = hours.opens_ms
        self._last_id: dict[str, int] = {}
        self.pacer: Pacer | None = None

    def saw(self, event: DayEvent) -> None:
        self._latest_ms = max(self._latest_ms, event.at_ms)
        self._last_id[event.device] = event.message.msg_id

    def now_ms(self) -> int:
        paced = self.pacer.market_ms() if self.pacer is not None else self._latest_ms
        return max(self._latest_ms, paced)

    def will_of(self, scale: str) -> WillSource:
        """The scale's Last Will as composed at (re)connect time: its id and time of that moment."""

        def compose() -> tuple[str, bytes]:
            will = ScaleStatus(
                msg_id=self._last_id.get(scale, msg_id_base(self._hours.day)),
                ts=self._hours.local(self.now_ms()),
                online=False,
                will=True,
            )
            topic = topic_for(self._market.id, DeviceKind.SCALE, scale, "status")
            return topic, will.model_dump_json(exclude_none=True).encode()

        return compose


def run_day(
    market: Market,
    broker_url: str,
    *,
    seed: int,
    speed: float,
    date: Date,
    config: DayConfig | None = None,
    devices: DeviceSettings | None = None,
    catch_up_to: datetime | None = None,
    clock: Clock | None = None,
    connect_timeout_s: float = 30.0,
    drain_timeout_s: float = 60.0,
    progress_every_s: float = 10.0,
    on_connected: Callable[[DeviceHub], None] | None = None,
) -> RunSummary:
    """Publish one market day's messages to the broker at ``speed`` (0 = as fast as possible)."""
    return run_markets(
        [market],
        broker_url,
        seed=seed,
        speed=speed,
        date=date,
        config=config,
        devices=devices,
        catch_up_to=catch_up_to,
        clock=clock,
        connect_timeout_s=connect_timeout_s,
        drain_timeout_s=drain_timeout_s,
        progress_every_s=progress_every_s,
        on_connected=on_connected,
    )


def run_markets(
    markets: Sequence[Market],
    broker_url: str,
    *,
    seed: int,
    speed: float,
    date: Date,
    config: DayConfig | None = None,
    devices: DeviceSettings | None = None,
    catch_up_to: datetime | None = None,
    clock: Clock | None = None,
    connect_timeout_s: float = 30.0,
    drain_timeout_s: float = 60.0,
    progress_every_s: float = 10.0,
    on_connected: Callable[[DeviceHub], None] | None = None,
    on_playing: Callable[[Pacer], None] | None = None,
    follow: RegistrySource | None = None,
) -> RunSummary:
    """Publish the day of every market in ``markets`` together, in time order.

    ``on_playing`` gets the pacer once the day starts, so a caller can tell the simulated time.
    With ``follow``, the devices follow that registry while the day plays
    (``simulators.joining``): a vendor who joins starts selling, a device disabled falls
    silent.
    """
    days = [MarketDay(market, date, seed=seed, config=config) for market in markets]
    device_times = {day.market.id: _DeviceTime(day.market, day.hours) for day in days}
    settings = devices or DeviceSettings()
    hub = _fleet(days, broker_url, device_times, settings)
    watch = None if follow is None else RegistryWatch.of(follow, days, date, seed, config)
    summary = RunSummary(date)
    started = time.monotonic()
    with hub:
        if not hub.connect(connect_timeout_s):
            log.warning("not every device connected within %ss; the rest buffer", connect_timeout_s)
        if on_connected is not None:
            on_connected(hub)
        player = _Player(
            hub, device_times, summary, clock or WallClock(), progress_every_s, watch, settings
        )
        player.play(days, speed, catch_up_to, on_playing)
        if not hub.drain(drain_timeout_s):
            unacked = hub.stats().unacknowledged
            log.warning("%d messages unacknowledged after %ss", unacked, drain_timeout_s)
        summary.delivery = hub.stats()
        summary.refused_sales = hub.commands.refused_sales
    summary.wall_seconds = time.monotonic() - started
    log.info(
        "%s: published %d messages in %.1fs: %s",
        date,
        summary.total,
        summary.wall_seconds,
        dict(summary.counts),
    )
    return summary


def choose_mode(device_count: int, mode: ConnectionMode | None) -> ConnectionMode:
    if mode is not None:
        return mode
    if device_count <= PER_DEVICE_LIMIT:
        return ConnectionMode.PER_DEVICE
    return ConnectionMode.MULTIPLEXED


def _fleet(
    days: Sequence[MarketDay],
    broker_url: str,
    device_times: Mapping[str, _DeviceTime],
    settings: DeviceSettings,
) -> DeviceHub:
    fleet = []
    for day in days:
        clock = device_times[day.market.id]
        for device in day.market.devices.values():
            if not device.enabled:
                continue  # it may not publish; the broker has no user for it
            is_scale = device.kind is DeviceKind.SCALE
            fleet.append(FleetDevice(device.id, clock.will_of(device.id) if is_scale else None))
    hub = build_hub(
        BrokerAddress.parse(broker_url),
        fleet,
        mode=choose_mode(len(fleet), settings.mode),
        options=settings.options,
        passwords=settings.passwords,
        authenticate=settings.authenticate,
        connections=settings.connections,
        client_prefix="stallwatch-sim-" + "-".join(day.market.id for day in days),
    )
    for day in days:
        _follow_commands(hub, day.market)
    return hub


def _follow_commands(hub: DeviceHub, market: Market) -> None:
    """Scales and screens obey their command topics (locks of failed batches)."""
    for device in market.devices.values():
        if device.enabled and device.kind in COMMANDS:
            hub.listen_for_commands(device.id, command_topic(market.id, device.kind, device.id))


class _Player:
    """Feeds the merged event streams to the hub when each event is due."""

    def __init__(
        self,
        hub: DeviceHub,
        device_times: Mapping[str, _DeviceTime],
        summary: RunSummary,
        clock: Clock,
        progress_every_s: float,
        watch: RegistryWatch | None = None,
        settings: DeviceSettings | None = None,
    ) -> None:
        self._hub = hub
        self._device_times = device_times
        self._summary = summary
        self._clock = clock
        self._progress_every = progress_every_s
        self._next_progress = time.monotonic() + progress_every_s
        self._watch = watch
        self._settings = settings or DeviceSettings()
        self._joins: Counter[str] = Counter()

    def play(
        self,
        days: Sequence[MarketDay],
        speed: float,
        catch_up_to: datetime | None,
        on_playing: Callable[[Pacer], None] | None = None,
    ) -> None:
        queue = _EventQueue()
        for day in days:
            queue.add(day.market.id, day.events())
        first = queue.peek()
        if first is None:
            return
        anchor = first.at_ms if catch_up_to is None else epoch_ms(catch_up_to)
        pacer = Pacer.start(self._clock, speed, anchor)
        for device_time in self._device_times.values():
            device_time.pacer = pacer
        if on_playing is not None:
            on_playing(pacer)
        count = 0
        while (item := queue.pop()) is not None:
            market, event = item
            pacer.wait_for(event.at_ms, self._hub.pump)
            if self._watch is not None:
                self._follow(self._watch, queue, pacer.market_ms())
                if not self._watch.may_publish(market, event.device):
                    continue  # disabled, or its vendor left: a device switched off
            message = event.message
            if (
                isinstance(message, Sale)
                and event.device not in self._settings.deaf_scales
                and self._hub.commands.refuses(event.device, message.trace_code, message.plu)
            ):
                continue  # the batch is locked: the scale refuses, the customer buys elsewhere
            self._device_times[market].saw(event)
            self._hub.publish(event.device, event.topic, event.payload())
            self._summary.record(market, event)
            count += 1
            if count % _PUMP_EVERY == 0:
                self._keep_up(event)
        self._log_progress("end")

    def _follow(self, watch: RegistryWatch, queue: _EventQueue, now_ms: int) -> None:
        """Add the days of vendors who joined: from now on, and their batches at once."""
        for market, day in watch.changes().joined.items():
            self._joins[market] += 1
            for _, device in devices_of({market: day}):
                self._hub.add_device(device, self._settings.passwords)
            _follow_commands(self._hub, day.market)
            queue.add(market, _joining(day, now_ms, self._joins[market]))
            log.info(
                "%s: %s joined; their devices start now",
                market,
                ", ".join(v.id for v in day.market.active_vendors),
            )

    def _keep_up(self, event: DayEvent) -> None:
        hub = self._hub
        hub.pump(0.0)
        if hub.sendable_backlog() > _BACKLOG_HIGH:  # the broker is slower than we publish
            hub.wait_for(lambda: hub.sendable_backlog() < _BACKLOG_LOW, timeout=60.0)
        if time.monotonic() >= self._next_progress:
            self._next_progress = time.monotonic() + self._progress_every
            self._log_progress(event.message.ts.strftime("%H:%M"))

    def _log_progress(self, market_time: str) -> None:
        stats = self._hub.stats()
        log.info(
            "%s %s: %d messages; acked %d, buffered %d, in flight %d, dropped %d, up %d/%d",
            self._summary.day,
            market_time,
            self._summary.total,
            stats.acked,
            stats.pending,
            stats.in_flight,
            stats.dropped,
            stats.connected,
            stats.links,
        )


#: Message ids of a day's joiners on devices the day already plays (the intake desks):
#: a block of their own in the upper half of the day's ids, one per join of the market,
#: so no id is used twice by one device (a desk's own day uses a few hundred).
_JOINER_IDS = IDS_PER_DAY // 2
_JOINER_BLOCK = 1_000


def _joining(day: MarketDay, now_ms: int, join: int) -> Iterator[DayEvent]:
    """A joiner's day from ``now_ms`` on; their batches taken in earlier are registered at
    once (the desk enters them as the vendor arrives). The desk's ids are renumbered into
    the join's block, and the joiner's trace codes carry the join (``-J2``): a vendor
    taking over a stall the same day would otherwise print the leaver's codes."""
    own = {d for v in day.market.active_vendors for d in (*v.scales, *v.screens)}
    offset = _JOINER_IDS + join * _JOINER_BLOCK
    if offset + _JOINER_BLOCK > IDS_PER_DAY:
        log.warning(
            "%s: too many vendors joined today; %s sells without batches",
            day.market.id,
            ", ".join(v.id for v in day.market.active_vendors),
        )
    for event in day.events():
        message = _own_codes(event.message, join)
        if event.device in own:
            if event.at_ms >= now_ms:
                yield DayEvent(event.at_ms, event.device, event.topic, message)
            continue
        number = event.message.msg_id - msg_id_base(day.day)
        if offset + number >= IDS_PER_DAY:
            continue  # past the day's block (see the warning above)
        renumbered = message.model_copy(update={"msg_id": event.message.msg_id + offset})
        yield DayEvent(max(event.at_ms, now_ms), event.device, event.topic, renumbered)


def _own_codes(message: DeviceMessage, join: int) -> DeviceMessage:
    """``message`` with the joiner's own trace codes (sales and batches name the same)."""
    code = getattr(message, "trace_code", None)
    if not isinstance(code, str):
        return message
    return message.model_copy(update={"trace_code": f"{code[:58]}-J{join}"})  # ≤ 64


class _EventQueue:
    """Events of several streams in time order; streams may be added while it is read."""

    def __init__(self) -> None:
        self._heap: list[
            tuple[tuple[int, str, str, int], int, str, DayEvent, Iterator[DayEvent]]
        ] = []
        self._order = itertools.count()

    def add(self, market: str, stream: Iterator[DayEvent]) -> None:
        self._push(market, stream)

    def _push(self, market: str, stream: Iterator[DayEvent]) -> None:
        event = next(stream, None)
        if event is not None:
            key = (event.at_ms, market, event.device, event.message.msg_id)
            heapq.heappush(self._heap, (key, next(self._order), market, event, stream))

    def peek(self) -> DayEvent | None:
        return self._heap[0][3] if self._heap else None

    def pop(self) -> tuple[str, DayEvent] | None:
        if not self._heap:
            return None
        _, _, market, event, stream = heapq.heappop(self._heap)
        self._push(market, stream)
        return market, event


def parse_speed(text: str) -> float:
    """``"max"`` (or ``0``) for as fast as possible, else market seconds per real second."""
    if text.strip().lower() in {"max", "0"}:
        return 0.0
    value = float(text)
    if value <= 0:
        raise ValueError("speed must be positive, or 'max'")
    return value
