"""The live view against a real Mosquitto and a store filled by the real ingest path.

These use the 40-vendor example market (``registry``), not the conftest's tiny one:
spreads need several vendors pricing one product. The rig here (ingest over MQTT,
a device-like publisher, views) is shared with ``test_prices.py``; ``store`` is
the conftest's (SQLite unless ``store_kind`` is parametrized).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import cast
from uuid import uuid4

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from ingest.service import IngestService
from ingest.validate import Validator
from marketview.live import ProductSummary, UnknownMarket, UnknownStall, UnknownVendor
from marketview.live_mqtt import LiveView
from mqttedge import EdgeOptions
from schemas.messages import DeviceKind
from schemas.registry import Registry
from schemas.topics import topic_for
from stallwatch.localservices import Mosquitto
from storage.base import Store
from storage.interfaces.prices import PriceRow
from storage.records import Reading, from_ns
from tests.api.conftest import Feeder
from tests.conftest import BOTH_STORES
from tests.ingest.helpers import Publisher, ingest_mqtt, wait_until

MARKET = "nanmen"
DISCONNECT_WITH_WILL = 4


# -- messages ------------------------------------------------------------------------


def screen_topic(stall: str) -> str:
    return topic_for(MARKET, DeviceKind.SCREEN, f"P-{stall}", "price")


def price(
    stall: str,
    plu: str,
    fen_per_kg: int,
    msg_id: int,
    *,
    at: datetime | None = None,
    promo: tuple[int, datetime] | None = None,
) -> tuple[str, bytes]:
    """A stall screen's price message (vendor ``V-<stall>`` owns screen ``P-<stall>``)."""
    body: dict[str, object] = {
        "msg_id": msg_id,
        "ts": (at or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        "vendor": f"V-{stall}",
        "plu": plu,
        "price_fen_per_kg": fen_per_kg,
    }
    if promo is not None:
        promo_fen, until = promo
        body["promo"] = {
            "price_fen_per_kg": promo_fen,
            "text": "限时特价",
            "until": until.isoformat(),
        }
    return screen_topic(stall), json.dumps(body, ensure_ascii=False).encode()


def status(msg_id: int, *, online: bool = True, will: bool = False) -> bytes:
    body = {
        "msg_id": msg_id,
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "online": online,
        "will": will,
    }
    return json.dumps(body).encode()


# -- the rig: broker, ingest, store, view -----------------------------------------------


@dataclass
class Clock:
    """The view's clock, moved by hand to expire promotions; starts at the real time."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Rig:
    registry: Registry
    store: Store
    broker: Mosquitto
    publisher: Publisher
    clock: Clock

    def publish(self, *messages: tuple[str, bytes]) -> None:
        self.publisher.publish_all(messages)

    def wait_stored(self, condition: Callable[[list[PriceRow]], bool], what: str) -> None:
        wait_until(lambda: condition(list(self.store.latest_prices(MARKET))), 30, what)

    @contextmanager
    def view(self) -> Iterator[LiveView]:
        options = EdgeOptions("127.0.0.1", self.broker.port, f"api-{uuid4().hex[:8]}")
        live = LiveView(self.registry, self.store, options, clock=self.clock)
        live.start()
        try:
            wait_until(lambda: live.connected and live.synced, 30, "the view to subscribe")
            yield live
        finally:
            live.stop()


@contextmanager
def running_rig(
    registry: Registry, store: Store, broker: Mosquitto, spool_dir: Path
) -> Iterator[Rig]:
    """Ingest (receiver + forwarder into ``store``) and a device-like publisher, running."""
    ingest = IngestService.in_process(
        ingest_mqtt(broker.port, "ingest-under-test"),
        registry,
        store,
        spool_dir / "spool.db",
    )
    ingest.start()
    assert ingest.receiver.subscribed.wait(10)
    publisher = Publisher(broker.port, "test-devices")
    try:
        yield Rig(registry, store, broker, publisher, Clock())
    finally:
        publisher.close()
        ingest.stop()


@pytest.fixture
def rig(
    registry: Registry, store: Store, mosquitto_server: Mosquitto, tmp_path: Path
) -> Iterator[Rig]:
    with running_rig(registry, store, mosquitto_server, tmp_path) as running:
        yield running


def wait_for(live: LiveView, condition: Callable[[LiveView], bool], what: str) -> None:
    wait_until(lambda: condition(live), 30, what)


def line(live: LiveView, plu: str) -> ProductSummary | None:
    return next((p for p in live.board(MARKET).products if p.plu == plu), None)


# -- rebuilding from the store ------------------------------------------------------------


@pytest.mark.mosquitto
@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_view_is_rebuilt_from_what_ingest_stored(rig: Rig) -> None:
    rig.publish(
        price("A01", "1002", 596, 1),
        price("A03", "1002", 796, 1),
        price("A04", "1001", 398, 1),
        price("A01", "1001", 400, 2),
        price("A04", "1009", 500, 2),
    )
    rig.wait_stored(lambda rows: len(rows) == 5, "five prices in the store")
    with rig.view() as live:
        assert live.prices(MARKET) == rig.store.latest_prices(MARKET)
        tomato = line(live, "1002")
        assert tomato is not None
        assert (tomato.vendors, tomato.min_fen_per_kg, tomato.max_fen_per_kg) == (2, 596, 796)
        assert tomato.median_fen_per_kg == Decimal(696)
        seen = live.device_seen(MARKET)
        assert {"P-A01", "P-A03", "P-A04"} <= set(seen)
        assert seen["P-A01"].online is None  # screens have no status channel


@pytest.mark.mosquitto
@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_restart_gives_exactly_what_the_store_holds(rig: Rig) -> None:
    until = datetime.now(UTC) + timedelta(hours=2)
    with rig.view() as first:
        rig.publish(price("A01", "1001", 398, 1), price("A04", "1001", 420, 1, promo=(380, until)))
        wait_for(first, lambda v: len(v.prices(MARKET)) == 2, "two live prices")
    # Published while no view runs: only ingest (and so the store) has these.
    rig.publish(price("A01", "1001", 410, 2), price("A03", "1002", 700, 1))
    rig.wait_stored(lambda rows: len(rows) == 3 and 410 in {r.price_fen_per_kg for r in rows}, "3")
    with rig.view() as second:
        assert second.prices(MARKET) == rig.store.latest_prices(MARKET)
        cabbage = line(second, "1001")
        assert cabbage is not None
        assert (cabbage.min_fen_per_kg, cabbage.max_fen_per_kg) == (380, 410)
        assert cabbage.promotions_active == 1


# -- the live stream ---------------------------------------------------------------


@pytest.mark.mosquitto
def test_a_published_price_reaches_the_board_and_bumps_the_version(rig: Rig) -> None:
    with rig.view() as live:
        before = live.version(MARKET)
        assert line(live, "1005") is None
        rig.publish(price("A01", "1005", 598, 1))
        wait_for(live, lambda v: line(v, "1005") is not None, "the new price on the board")
        assert live.version(MARKET) > before
        quotes = live.stall_screen(MARKET, "A01")
        assert [(q.plu, q.price_fen_per_kg) for q in quotes.quotes] == [("1005", 598)]
        assert live.vendor_prices(MARKET, "V-A01") == quotes


@pytest.mark.mosquitto
def test_a_replayed_older_price_never_overwrites_a_newer_one(rig: Rig) -> None:
    now = datetime.now(UTC)
    with rig.view() as live:
        rig.publish(price("A01", "1001", 450, 7, at=now))
        wait_for(live, lambda v: line(v, "1001") is not None, "the current price")
        version = live.version(MARKET)
        # Older by device time; then a marker on another screen, which arrives after it
        # (one publisher, one subscriber, QoS 1: the broker keeps the order).
        rig.publish(
            price("A01", "1001", 300, 6, at=now - timedelta(minutes=5)),
            price("A01", "1001", 450, 7, at=now),  # an exact redelivery changes nothing either
            price("A03", "1002", 700, 1),
        )
        wait_for(live, lambda v: line(v, "1002") is not None, "the marker price")
        cabbage = line(live, "1001")
        assert cabbage is not None
        assert cabbage.min_fen_per_kg == 450
        assert live.version(MARKET) == version + 1  # the marker, and nothing else


@pytest.mark.mosquitto
def test_invalid_messages_are_ignored(rig: Rig) -> None:
    with rig.view() as live:
        version = live.version(MARKET)
        topic, _ = price("A01", "1001", 450, 1)
        rig.publish(
            (topic, b"{not json"),
            price("A01", "9999", 450, 2),  # unknown product
            (screen_topic("A03"), price("A01", "1001", 450, 3)[1]),  # V-A01 does not own P-A03
            price("A04", "1001", 420, 1),  # the marker
        )
        wait_for(live, lambda v: line(v, "1001") is not None, "the marker price")
        assert [(r.vendor, r.price_fen_per_kg) for r in live.prices(MARKET)] == [("V-A04", 420)]
        assert live.version(MARKET) == version + 1


@pytest.mark.mosquitto
def test_heartbeat_means_online_and_last_will_offline(rig: Rig) -> None:
    topic = topic_for(MARKET, DeviceKind.SCALE, "S-A01", "status")
    scale = paho.Client(CallbackAPIVersion.VERSION2, client_id="S-A01", protocol=paho.MQTTv5)
    scale.will_set(topic, status(1, online=False, will=True), qos=1)
    with rig.view() as live:
        scale.connect("127.0.0.1", rig.broker.port)
        scale.loop_start()
        scale.publish(topic, status(2), qos=1).wait_for_publish(10)
        wait_for(live, lambda v: _online(v, "S-A01") is True, "the heartbeat")
        heard = live.device_seen(MARKET)["S-A01"].last_seen
        scale.disconnect(ReasonCode(PacketTypes.DISCONNECT, identifier=DISCONNECT_WITH_WILL))
        scale.loop_stop()
        wait_for(live, lambda v: _online(v, "S-A01") is False, "the Last Will")
        # The will is the broker speaking: it does not count as hearing from the scale.
        assert live.device_seen(MARKET)["S-A01"].last_seen == heard
    # The store has the will too, so a restarted view agrees.
    wait_until(lambda: any(s.will for s in rig.store.scale_status(MARKET)), 30, "stored will")
    with rig.view() as again:
        assert _online(again, "S-A01") is False


@pytest.mark.mosquitto
@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_a_gates_last_seen_survives_a_restart(rig: Rig) -> None:
    counted_at = datetime.now(UTC) - timedelta(minutes=3)
    body = {
        "msg_id": 1,
        "ts": counted_at.isoformat(timespec="milliseconds"),
        "in_total": 120,
        "out_total": 100,
    }
    published = datetime.now(UTC)
    rig.publish((topic_for(MARKET, DeviceKind.GATE, "NM-G1", "count"), json.dumps(body).encode()))
    wait_until(lambda: rig.store.gate_counts_before(MARKET, datetime.now(UTC)), 30, "stored count")
    stored = datetime.now(UTC)
    with rig.view() as live:
        # Seen when ingest heard it (presence is on arrival time), not when it counted.
        assert published <= live.device_seen(MARKET)["NM-G1"].last_seen <= stored


@pytest.mark.mosquitto
@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_presence_is_the_same_after_a_restart_whatever_the_device_clocks(rig: Rig) -> None:
    # Devices whose clocks run ahead or behind are seen when they were heard, by
    # the running view and by one rebuilt from the store alike. Heard here means:
    # ingest stored each reading with the arrival the running view took it in with.
    now = datetime.now(UTC)
    ahead, behind = now + timedelta(minutes=4), now - timedelta(minutes=20)
    gate = {"msg_id": 1, "ts": behind.isoformat(), "in_total": 120, "out_total": 100}
    heartbeat = {"msg_id": 1, "ts": ahead.isoformat(), "online": True}
    messages = [
        (topic_for(MARKET, DeviceKind.GATE, "NM-G1", "count"), json.dumps(gate).encode()),
        (topic_for(MARKET, DeviceKind.SCALE, "S-A01", "status"), json.dumps(heartbeat).encode()),
        price("A01", "1001", 398, 1, at=ahead),
    ]
    validator = Validator(rig.registry)
    readings = [validator.check(t, body, time.time_ns()) for t, body in messages]
    assert all(isinstance(r, Reading) for r in readings)
    heard = cast(list[Reading], readings)
    with rig.view() as live:
        assert rig.store.write(heard) == []
        for reading in heard:
            live.apply(reading)
        before = live.device_seen(MARKET)
    assert {d: s.last_seen for d, s in before.items()} == {
        r.device: from_ns(r.received_ns) for r in heard
    }
    with rig.view() as again:
        assert again.device_seen(MARKET) == before


@pytest.mark.mosquitto
@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_a_will_after_a_heartbeat_from_a_clock_ahead_means_offline_before_and_after_restart(
    rig: Rig,
) -> None:
    # The scale's clock runs 4 minutes ahead; it died a minute after its heartbeat,
    # so the broker's will arrived before the heartbeat's own timestamp. The will
    # arrived last: the scale is offline, in the running view and a rebuilt one.
    heard_ns = time.time_ns()
    will_heard_ns = heard_ns + 60 * 1_000_000_000
    ahead = from_ns(heard_ns) + timedelta(minutes=4)
    topic = topic_for(MARKET, DeviceKind.SCALE, "S-A01", "status")
    heartbeat = {"msg_id": 7, "ts": ahead.isoformat(), "online": True}
    validator = Validator(rig.registry)
    readings = [
        validator.check(topic, json.dumps(heartbeat).encode(), heard_ns),
        validator.check(topic, status(1, online=False, will=True), will_heard_ns),
    ]
    assert all(isinstance(r, Reading) for r in readings)
    with rig.view() as live:
        assert rig.store.write(cast(list[Reading], readings)) == []
        for reading in cast(list[Reading], readings):
            live.apply(reading)
        assert _online(live, "S-A01") is False
        before = live.device_seen(MARKET)
    with rig.view() as again:
        assert again.device_seen(MARKET) == before


def _online(live: LiveView, device: str) -> bool | None:
    seen = live.device_seen(MARKET).get(device)
    return None if seen is None else seen.online


@pytest.mark.mosquitto
def test_after_a_reconnect_the_view_has_what_was_stored_meanwhile(rig: Rig, tmp_path: Path) -> None:
    with rig.view() as live:
        rig.broker.stop()
        wait_for(live, lambda v: not v.connected, "the view to notice the broker is gone")
        # Stored while the view could not hear it (the ingest path minus MQTT).
        feeder = Feeder(tmp_path / "feeder", rig.registry, rig.store)
        feeder.ingest([price("A01", "1001", 398, 1)])
        feeder.close()
        assert line(live, "1001") is None
        rig.broker.start()
        wait_for(live, lambda v: line(v, "1001") is not None, "the resync after resubscribing")
        rig.publish(price("A04", "1001", 420, 1))
        wait_for(live, lambda v: (p := line(v, "1001")) is not None and p.vendors == 2, "live")


@pytest.mark.mosquitto
def test_the_view_refuses_a_persistent_session(rig: Rig) -> None:
    # Nobody resumes an API process's random client id: the broker would queue for nothing.
    options = EdgeOptions("127.0.0.1", rig.broker.port, "api-persistent", persistent=True)
    with pytest.raises(ValueError, match="clean session"):
        LiveView(rig.registry, rig.store, options, clock=rig.clock)


@pytest.mark.mosquitto
def test_mqtt_3_1_1_works_too(rig: Rig) -> None:
    options = EdgeOptions("127.0.0.1", rig.broker.port, "api-v311", protocol="3.1.1")
    live = LiveView(rig.registry, rig.store, options, clock=rig.clock)
    live.start()
    try:
        wait_for(live, lambda v: v.connected, "the 3.1.1 subscription")
        rig.publish(price("A01", "1001", 398, 1))
        wait_for(live, lambda v: line(v, "1001") is not None, "the price")
    finally:
        live.stop()


# -- promotions and the clock --------------------------------------------------------


@pytest.mark.mosquitto
def test_an_ending_promotion_changes_the_board_and_its_state_without_a_message(rig: Rig) -> None:
    until = rig.clock.now + timedelta(hours=1)
    with rig.view() as live:
        rig.publish(price("A01", "1001", 400, 1, promo=(300, until)), price("A04", "1001", 420, 1))
        wait_for(live, lambda v: (p := line(v, "1001")) is not None and p.vendors == 2, "prices")
        running = live.board(MARKET)
        assert running.products[0].min_fen_per_kg == 300
        assert running.products[0].promotions_active == 1
        assert live.stall_screen(MARKET, "A01").quotes[0].promo is not None

        rig.clock.now = until
        ended = live.board(MARKET)
        assert ended.state.version == running.state.version
        assert ended.state != running.state
        assert ended.products[0].min_fen_per_kg == 400
        assert ended.products[0].median_fen_per_kg == Decimal(410)
        assert ended.products[0].promotions_active == 0
        assert live.stall_screen(MARKET, "A01").quotes[0].promo is None

        rig.clock.now = until - timedelta(seconds=1)  # equal states show equal content
        assert live.board(MARKET) == running


# -- names the registry does not know ------------------------------------------------


@pytest.mark.mosquitto
def test_unknown_names_raise(rig: Rig) -> None:
    with rig.view() as live:
        with pytest.raises(UnknownMarket):
            live.board("nowhere")
        with pytest.raises(UnknownVendor):
            live.vendor_prices(MARKET, "V-Z99")
        with pytest.raises(UnknownStall):
            live.stall_screen(MARKET, "Z99")
        assert live.stall_screen(MARKET, "A02").quotes == ()  # known, no prices yet
