"""The demo's embedded broker (amqtt) keeps every client when a hundred connect at once
and subscribe to topics holding retained messages, as the demo's devices do at start."""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as paho
import paho.mqtt.publish as mqtt_publish
from paho.mqtt.enums import CallbackAPIVersion

from stallwatch.embedded_broker import EmbeddedBroker

DEVICES = 120


def _topic(device: int) -> str:
    return f"markets/m/scales/dev-{device}/command"


def test_a_hundred_devices_connecting_at_once_to_retained_commands_all_stay_connected() -> None:
    dropped: list[str] = []
    subscribed = 0
    all_subscribed = threading.Event()
    lock = threading.Lock()

    def on_subscribe(*_args: Any) -> None:
        nonlocal subscribed
        with lock:
            subscribed += 1
            if subscribed >= DEVICES:
                all_subscribed.set()

    def on_disconnect(client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            dropped.append(f"{client._client_id.decode()}: {reason}")

    with EmbeddedBroker() as broker:
        retained: list[Any] = [(_topic(n), b"{}", 1, True) for n in range(DEVICES)]
        mqtt_publish.multiple(
            retained, hostname="127.0.0.1", port=broker.port, protocol=paho.MQTTv311
        )
        clients = []
        for n in range(DEVICES):
            client = paho.Client(
                CallbackAPIVersion.VERSION2, client_id=f"dev-{n}", protocol=paho.MQTTv311
            )
            client.on_connect = lambda c, *_a, n=n: c.subscribe(_topic(n), qos=1)
            client.on_subscribe = on_subscribe
            client.on_disconnect = on_disconnect
            client.connect_async("127.0.0.1", broker.port)
            client.loop_start()
            clients.append(client)
        try:
            assert all_subscribed.wait(30), f"{subscribed} of {DEVICES} subscribed"
        finally:
            for client in clients:
                client.disconnect()
                client.loop_stop()

    assert dropped == []
