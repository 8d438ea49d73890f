"""Fixtures for the simulator tests: the second example market, cached days, an MQTT subscriber."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from schemas.registry import Market, load_market
from simulators.day import MarketDay
from simulators.events import DayEvent
from stallwatch.localservices import Mosquitto
from tests.conftest import REPO

XIAOHE = REPO / "examples" / "markets" / "xiaohe.toml"
#: A Saturday: busy, with the later weekend morning peak.
DAY = date(2026, 11, 21)


@pytest.fixture(scope="session")
def xiaohe_market() -> Market:
    return load_market(XIAOHE)


@pytest.fixture(scope="session")
def nanmen_day(example_market: Market) -> tuple[MarketDay, list[DayEvent]]:
    """One full day of the 40-stall example market (generated once per session)."""
    day = MarketDay(example_market, DAY, seed=7)
    return day, list(day.events())


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        event.wait(0.02)  # a bounded poll of state owned by another thread


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    qos: int


class Subscriber:
    """A QoS 1 subscriber on its own network thread that records everything it receives."""

    def __init__(self, broker: Mosquitto, topic: str, *, client_id: str, persistent: bool) -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._topic = topic
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=not persistent,
            protocol=mqtt.MQTTv311,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()
        wait_until(self._subscribed.is_set, 10, "the subscription")

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe(self._topic, qos=1)

    def _on_subscribe(self, *_args: Any) -> None:
        self._subscribed.set()

    def _on_message(self, _client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(message.topic, bytes(message.payload), message.qos))

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        wait_until(
            lambda: self.count() >= count, timeout, f"{count} messages (have {self.count()})"
        )
        return self.received()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribe(mosquitto_server: Mosquitto) -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(
        topic: str = "markets/#", *, client_id: str = "test-subscriber", persistent: bool = False
    ) -> Subscriber:
        subscriber = Subscriber(mosquitto_server, topic, client_id=client_id, persistent=persistent)
        made.append(subscriber)
        return subscriber

    yield make
    for subscriber in made:
        subscriber.close()
