"""The shared MQTT adapter against a real Mosquitto: connect, resubscribe, convert."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from mqttedge import EdgeMessage, EdgeOptions, MqttEdge
from stallwatch.localservices import Mosquitto
from storage.backoff import FULL_JITTER, Backoff
from tests.ingest.helpers import Publisher, wait_until

pytestmark = pytest.mark.mosquitto

TOPIC = "edge-test/a"
#: Long enough for a loaded machine, never reached when things work.
TIMEOUT_S = 30


class Subscriber:
    """An adapter driven by :meth:`MqttEdge.run` on its own thread, as the live view drives it."""

    def __init__(self, options: EdgeOptions, backoff: Backoff) -> None:
        self.messages: queue.Queue[EdgeMessage] = queue.Queue()
        self.subscriptions = 0
        self.stopping = threading.Event()
        self.edge = MqttEdge(
            options, "edge-test/#", self.messages.put, backoff=backoff, on_subscribed=self._count
        )
        self._thread = threading.Thread(target=self.edge.run, args=(self.stopping,), daemon=True)

    def _count(self) -> None:
        self.subscriptions += 1

    def next_message(self) -> EdgeMessage:
        return self.messages.get(timeout=TIMEOUT_S)

    @contextmanager
    def running(self) -> Iterator[Subscriber]:
        self.edge.connect_async()
        self._thread.start()
        try:
            assert self.edge.subscribed.wait(TIMEOUT_S), "never subscribed"
            yield self
        finally:
            self.stopping.set()
            self.edge.disconnect()
            self._thread.join(TIMEOUT_S)


def publish(broker: Mosquitto, payload: bytes) -> None:
    publisher = Publisher(broker.port, client_id="edge-test-publisher")
    try:
        publisher.publish_all([(TOPIC, payload)])
    finally:
        publisher.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_message_is_converted_at_the_edge(mosquitto_server: Mosquitto, protocol: str) -> None:
    options = EdgeOptions("127.0.0.1", mosquitto_server.port, "edge-test", protocol=protocol)
    with Subscriber(options, Backoff()).running() as subscriber:
        before = time.time_ns()
        publish(mosquitto_server, b"\x00payload")
        message = subscriber.next_message()
        after = time.time_ns()
    assert isinstance(message, EdgeMessage)
    assert (message.topic, message.payload, message.qos) == (TOPIC, b"\x00payload", 1)
    assert (message.connection, message.redelivered) == (1, False)
    assert before <= message.received_ns <= after


def test_after_a_broker_restart_it_reconnects_by_the_backoff_and_resubscribes(
    mosquitto_server: Mosquitto,
) -> None:
    draws: list[float] = []

    def drawn() -> float:
        draws.append(0.5)
        return 0.5

    backoff = Backoff(first=0.05, cap=0.2, jitter=FULL_JITTER, random=drawn)
    # A clean session: the broker forgets the subscription, so only on_connect can remake it.
    options = EdgeOptions("127.0.0.1", mosquitto_server.port, "edge-test", persistent=False)
    with Subscriber(options, backoff).running() as subscriber:
        mosquitto_server.stop()
        wait_until(lambda: not subscriber.edge.connected.is_set(), TIMEOUT_S, "the drop noticed")
        wait_until(lambda: len(draws) >= 2, TIMEOUT_S, "failed reconnects paced by the backoff")
        mosquitto_server.start()
        assert subscriber.edge.subscribed.wait(TIMEOUT_S), "never resubscribed"
        publish(mosquitto_server, b"after the restart")
        message = subscriber.next_message()
    assert subscriber.subscriptions == 2
    assert (message.payload, message.connection) == (b"after the restart", 2)
