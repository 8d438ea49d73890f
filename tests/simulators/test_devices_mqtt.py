"""Simulated devices against a real Mosquitto: QoS 1, Last Will, outages, many connections, load."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections import Counter
from collections.abc import Callable
from datetime import datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import paho.mqtt.publish as mqtt_publish
import pytest

from schemas.commands import SuspendedBatches, Suspension, SuspensionReason, command_topic
from schemas.messages import DeviceKind, Sale, ScaleStatus
from schemas.registry import Market
from simulators.clock import VirtualClock
from simulators.config import DayConfig
from simulators.day import MarketDay
from simulators.devices import (
    BrokerAddress,
    ConnectionMode,
    DeviceHub,
    FleetDevice,
    LinkOptions,
    build_hub,
)
from simulators.events import DayEvent
from simulators.load import publish_load
from simulators.run import PER_DEVICE_LIMIT, DeviceSettings, run_day
from simulators.scaling import scale_market
from stallwatch.localservices import Mosquitto, mosquitto
from tests.simulators.conftest import DAY, Received, Subscriber

pytestmark = pytest.mark.mosquitto

WILL_TOPIC = "markets/xiaohe/scales/XH-S01/status"


def _hub(broker: Mosquitto, market: Market, options: LinkOptions | None = None) -> DeviceHub:
    devices = [FleetDevice(device) for device in market.devices]
    address = BrokerAddress.parse(broker.url)
    return build_hub(address, devices, mode=ConnectionMode.PER_DEVICE, options=options)


def _identity(received: Received) -> tuple[str, int]:
    return received.topic.split("/")[3], json.loads(received.payload)["msg_id"]


def _day_events(market: Market, n: int) -> list[DayEvent]:
    return list(itertools.islice(MarketDay(market, DAY, seed=9).events(), n))


# -- QoS 1 and the Last Will ---------------------------------------------------------------
def test_a_scale_whose_connection_dies_has_its_last_will_published(
    mosquitto_server: Mosquitto, subscribe: Callable[..., Subscriber]
) -> None:
    subscriber = subscribe(WILL_TOPIC)
    ts = datetime.combine(DAY, time(8), ZoneInfo("Asia/Shanghai"))
    will = ScaleStatus(msg_id=42, ts=ts, online=False, will=True)
    payload = will.model_dump_json(exclude_none=True).encode()
    fleet = [FleetDevice("XH-S01", will=lambda: (WILL_TOPIC, payload))]
    with build_hub(
        BrokerAddress.parse(mosquitto_server.url), fleet, mode=ConnectionMode.PER_DEVICE
    ) as hub:
        assert hub.connect(10)
        hub.publish("XH-S01", WILL_TOPIC, b'{"heartbeat": true}')
        assert hub.drain(10)
        subscriber.wait_for(1)
        hub.sever("XH-S01")
        received = subscriber.wait_for(2)
    assert received[0].qos == 1  # published at QoS 1 (the subscription allows 1)
    assert received[1] == Received(WILL_TOPIC, payload, qos=1)
    assert ScaleStatus.model_validate_json(received[1].payload).will


def test_a_clean_shutdown_publishes_no_will(
    mosquitto_server: Mosquitto, subscribe: Callable[..., Subscriber]
) -> None:
    subscriber = subscribe("markets/#")
    address = BrokerAddress.parse(mosquitto_server.url)
    scale = [FleetDevice("XH-S01", will=lambda: (WILL_TOPIC, b"will"))]
    with build_hub(address, scale, mode=ConnectionMode.PER_DEVICE) as hub:
        assert hub.connect(10)
    # published after the scale disconnected: arrives after any will would have
    with build_hub(address, [FleetDevice("XH-G1")], mode=ConnectionMode.PER_DEVICE) as hub:
        hub.publish("XH-G1", "markets/xiaohe/gates/XH-G1/count", b"after")
        assert hub.drain(10)
    assert [m.payload for m in subscriber.wait_for(1)] == [b"after"]


def test_a_played_day_arrives_complete_and_byte_identical_with_a_will_for_a_severed_scale(
    xiaohe_market: Market, mosquitto_server: Mosquitto, subscribe: Callable[..., Subscriber]
) -> None:
    subscriber = subscribe("markets/#")
    clock = VirtualClock()
    summary = run_day(
        xiaohe_market,
        mosquitto_server.url,
        seed=9,
        speed=60,
        date=DAY,
        clock=clock,
        on_connected=lambda hub: hub.sever("XH-S02"),
        progress_every_s=3600,
    )
    expected = [(e.topic, e.payload()) for e in MarketDay(xiaohe_market, DAY, seed=9).events()]
    received = subscriber.wait_for(len(expected) + 1)
    wills = [m for m in received if b'"will":true' in m.payload]
    assert [m.topic for m in wills] == ["markets/xiaohe/scales/XH-S02/status"]
    assert sorted((m.topic, m.payload) for m in received if m not in wills) == sorted(expected)
    assert summary.total == len(expected)
    assert summary.delivery is not None
    assert summary.delivery.acked == len(expected)
    assert summary.counts["Sale"] > 1_000
    # the clock was advanced by the paced span of the day: market time / 60
    assert summary.first_ts is not None
    assert summary.last_ts is not None
    span = (summary.last_ts - summary.first_ts).total_seconds()
    assert clock.waited == pytest.approx(span / 60, abs=1.0)


# -- outages ------------------------------------------------------------------------------
def test_messages_published_during_a_broker_outage_are_delivered_once_afterwards(
    xiaohe_market: Market, mosquitto_server: Mosquitto, subscribe: Callable[..., Subscriber]
) -> None:
    events = _day_events(xiaohe_market, 1_500)
    before, during = events[:500], events[500:]
    subscriber = subscribe("markets/#", client_id="archive", persistent=True)
    options = LinkOptions(reconnect_min_s=0.05, reconnect_max_s=0.5)
    with _hub(mosquitto_server, xiaohe_market, options=options) as hub:
        assert hub.connect(10)
        for event in before:
            hub.publish(event.device, event.topic, event.payload())
        assert hub.drain(20)
        subscriber.wait_for(len(before))
        _sync(subscriber)
        mosquitto_server.stop()
        for event in during:
            hub.publish(event.device, event.topic, event.payload())
        hub.pump(0.1)
        assert hub.stats().unacknowledged == len(during)  # held on the devices
        mosquitto_server.start()
        assert hub.drain(30)
        received = subscriber.wait_for(len(events) + 1, timeout=60)
        stats = hub.stats()
    received = [m for m in received if not m.topic.startswith("sync/")]
    identities = Counter(_identity(m) for m in received)
    assert set(identities.values()) == {1}, "every (device, msg_id) exactly once"
    assert len(received) == len(events)
    original = {(e.device, e.message.msg_id): e.payload() for e in events}
    assert all(m.payload == original[_identity(m)] for m in received)
    assert stats.dropped == 0
    assert stats.published == len(events)


def _sync(subscriber: Subscriber) -> None:
    """Round-trip a message so the broker has processed the subscriber's earlier PUBACKs."""
    subscriber.client.subscribe("sync/#", qos=1)
    count = subscriber.count()
    subscriber.client.publish("sync/now", b"sync", qos=1)
    subscriber.wait_for(count + 1)


def test_unacknowledged_messages_are_sent_again_after_a_dropped_connection(
    xiaohe_market: Market, mosquitto_server: Mosquitto, subscribe: Callable[..., Subscriber]
) -> None:
    subscriber = subscribe("markets/xiaohe/scales/XH-S03/#")
    events = [e for e in MarketDay(xiaohe_market, DAY, seed=9).events() if e.device == "XH-S03"][
        :200
    ]
    with _hub(mosquitto_server, xiaohe_market) as hub:
        assert hub.connect(10)
        for event in events:
            hub.publish(event.device, event.topic, event.payload())
        hub.sever("XH-S03")  # before the network loop ran: nothing reached the broker
        assert hub.stats().republished == 0
        assert hub.drain(20)
        stats = hub.stats()
    received = subscriber.wait_for(len(events))
    assert [m.payload for m in received] == [e.payload() for e in events]  # in order, once each
    assert stats.republished == len(events)


def test_a_full_buffer_drops_the_oldest_messages(
    xiaohe_market: Market, mosquitto_server: Mosquitto, subscribe: Callable[..., Subscriber]
) -> None:
    subscriber = subscribe(
        "markets/xiaohe/gates/XH-G1/#", client_id="gate-archive", persistent=True
    )
    events = [e for e in MarketDay(xiaohe_market, DAY, seed=9).events() if e.device == "XH-G1"][:50]
    mosquitto_server.stop()
    options = LinkOptions(buffer_per_device=20, reconnect_min_s=0.05, reconnect_max_s=0.2)
    with _hub(mosquitto_server, xiaohe_market, options=options) as hub:
        for event in events:
            hub.publish(event.device, event.topic, event.payload())
        assert hub.stats().dropped == 30
        mosquitto_server.start()
        assert hub.drain(30)
    received = subscriber.wait_for(20)
    assert [m.payload for m in received] == [e.payload() for e in events[30:]]


# -- scale --------------------------------------------------------------------------------
def test_a_hundred_devices_each_with_its_own_connection(
    example_market: Market, mosquitto_server: Mosquitto, subscribe: Callable[..., Subscriber]
) -> None:
    market = scale_market(example_market, vendors=50)
    subscriber = subscribe("markets/#")
    events: dict[str, DayEvent] = {}
    for event in MarketDay(market, DAY, seed=9).events():
        events.setdefault(event.device, event)
    assert len(events) == len(market.devices) >= 100
    with _hub(mosquitto_server, market) as hub:
        assert hub.connect(30)
        assert hub.stats().connected == len(market.devices)
        for event in events.values():
            hub.publish(event.device, event.topic, event.payload())
        assert hub.drain(30)
    received = subscriber.wait_for(len(events))
    assert {m.topic.split("/")[3] for m in received} == set(events)


def test_multiplexed_connections_carry_many_devices(
    xiaohe_market: Market, mosquitto_server: Mosquitto, subscribe: Callable[..., Subscriber]
) -> None:
    subscriber = subscribe("markets/#")
    events = _day_events(xiaohe_market, 2_000)
    fleet = [FleetDevice(device) for device in xiaohe_market.devices]
    address = BrokerAddress.parse(mosquitto_server.url)
    with build_hub(address, fleet, mode=ConnectionMode.MULTIPLEXED, connections=2) as hub:
        assert len(hub.links) == 2
        assert hub.connect(10)
        for event in events:
            hub.publish(event.device, event.topic, event.payload())
        assert hub.drain(30)
    received = subscriber.wait_for(len(events))
    assert Counter(_identity(m) for m in received) == Counter(
        (e.device, e.message.msg_id) for e in events
    )


def test_load_mode_publishes_n_valid_sales(
    xiaohe_market: Market, mosquitto_server: Mosquitto, subscribe: Callable[..., Subscriber]
) -> None:
    subscriber = subscribe("markets/xiaohe/scales/+/sale")
    result = publish_load(mosquitto_server.url, xiaohe_market, 5_000, connections=3, window=500)
    assert result.acked == result.messages == 5_000
    assert result.rate > 0
    received = subscriber.wait_for(5_000)
    assert len({_identity(m) for m in received}) == 5_000


# -- authentication -------------------------------------------------------------------------
@pytest.fixture
def secured_broker(tmp_path: Path) -> Mosquitto:
    passwords = tmp_path / "passwd"
    passwords.write_text("XH-S01:right\n")
    subprocess.run(["mosquitto_passwd", "-U", str(passwords)], check=True)
    server = mosquitto(
        tmp_path / "secured", extra_conf=f"allow_anonymous false\npassword_file {passwords}"
    )
    server.start()
    return server


def test_devices_log_in_with_their_id_and_password(secured_broker: Mosquitto) -> None:
    try:
        address = BrokerAddress.parse(secured_broker.url)
        fleet = [FleetDevice("XH-S01")]
        with build_hub(
            address, fleet, mode=ConnectionMode.PER_DEVICE, passwords={"XH-S01": "right"}
        ) as hub:
            assert hub.connect(10)
        with build_hub(
            address, fleet, mode=ConnectionMode.PER_DEVICE, passwords={"XH-S01": "wrong"}
        ) as hub:
            assert not hub.connect(1)
            assert hub.stats().connected == 0
    finally:
        secured_broker.stop()


def test_run_day_multiplexes_large_markets(
    example_market: Market, mosquitto_server: Mosquitto, subscribe: Callable[..., Subscriber]
) -> None:
    market = scale_market(example_market, vendors=125)
    assert len(market.devices) > PER_DEVICE_LIMIT
    subscriber = subscribe("markets/nanmen/gates/#")
    summary = run_day(
        market,
        mosquitto_server.url,
        seed=1,
        speed=0,
        date=DAY,
        config=DayConfig(sales_scale=0.2, heartbeat_interval_s=1_800),
        devices=DeviceSettings(connections=3),
        progress_every_s=3600,
    )
    assert summary.delivery is not None
    assert summary.delivery.links == 3
    assert summary.delivery.acked == summary.total
    assert len(subscriber.wait_for(summary.counts["GateCount"])) == summary.counts["GateCount"]


# -- commands ---------------------------------------------------------------------------
@pytest.mark.parametrize("deaf", [False, True], ids=["obeys", "old-scale-ignores"])
def test_a_scale_refuses_the_sales_of_a_batch_locked_on_its_command_topic(
    xiaohe_market: Market,
    mosquitto_server: Mosquitto,
    subscribe: Callable[..., Subscriber],
    deaf: bool,
) -> None:
    """A scale told of a lock refuses the batch's sales; an old one (``deaf_scales``) is
    told too, and sells them anyway."""
    expected = list(MarketDay(xiaohe_market, DAY, seed=9).events())
    sales = [e for e in expected if isinstance(e.message, Sale)]
    first = sales[len(sales) // 2].message  # a batch on sale mid-day
    assert isinstance(first, Sale)
    scale = next(e.device for e in sales if e.message is first)
    locked = [
        e
        for e in sales
        if e.device == scale
        and isinstance(e.message, Sale)
        and (e.message.trace_code, e.message.plu) == (first.trace_code, first.plu)
    ]
    command = SuspendedBatches(
        msg_id=1,
        ts=first.ts,
        suspended=(
            Suspension(
                trace_code=first.trace_code,
                plu=first.plu,
                since=first.ts,
                reason=SuspensionReason.RAPID_TEST_FAILED,
            ),
        ),
    )
    topic = command_topic(xiaohe_market.id, DeviceKind.SCALE, scale)
    mqtt_publish.single(
        topic,
        command.model_dump_json(),
        qos=1,
        retain=True,
        hostname="127.0.0.1",
        port=mosquitto_server.port,
    )
    subscriber = subscribe("markets/+/+/+/sale")

    def told(hub: DeviceHub) -> None:  # the retained lock arrives when the scale connects
        assert hub.wait_for(lambda: bool(hub.commands.suspended(scale)), timeout=10)

    summary = run_day(
        xiaohe_market,
        mosquitto_server.url,
        seed=9,
        speed=60,
        date=DAY,
        clock=VirtualClock(),
        on_connected=told,
        progress_every_s=3600,
        devices=DeviceSettings(deaf_scales=frozenset({scale} if deaf else ())),
    )

    refused = [] if deaf else locked
    received = subscriber.wait_for(len(sales) - len(refused))
    assert len(locked) >= 1
    assert summary.refused_sales == len(refused)
    assert sorted(m.payload for m in received) == sorted(
        e.payload() for e in sales if e not in refused
    )
