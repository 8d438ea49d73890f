"""A paho MQTT 5 test client driven from the test thread, for tests against a real broker."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

WAIT_S = 10.0


class Client:
    """A paho MQTT 5 client driven from the test thread: no background loop, no races.

    Each wait pumps the client's network loop until the awaited packet has
    arrived, with a deadline.
    """

    _ids = 0

    def __init__(
        self,
        port: int,
        username: str,
        password: str | None,
        *,
        client_id: str | None = None,
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
    ) -> None:
        Client._ids += 1
        self.port = port
        self.paho = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{username}-{Client._ids}",
            protocol=protocol,
        )
        self.paho.username_pw_set(username, password)
        self.connacks: list[ReasonCode] = []
        self.subacks: list[list[ReasonCode]] = []
        self.pubacks: dict[int, ReasonCode] = {}
        self.messages: deque[tuple[str, bytes]] = deque()
        self.disconnects: list[ReasonCode] = []
        self.paho.on_connect = lambda _c, _u, _f, rc, _p: self.connacks.append(rc)
        self.paho.on_subscribe = lambda _c, _u, _mid, rcs, _p: self.subacks.append(list(rcs))
        self.paho.on_publish = lambda _c, _u, mid, rc, _p: self.pubacks.__setitem__(mid, rc)
        self.paho.on_disconnect = lambda _c, _u, _f, rc, _p: self.disconnects.append(rc)
        self.paho.on_message = lambda _c, _u, msg: self.messages.append(
            (msg.topic, bytes(msg.payload))
        )

    def _pump_until(self, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT_S
        while not ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.paho._client_id!r}: nothing arrived in {WAIT_S}s")
            self.paho.loop(timeout=0.05)

    def connect(self) -> ReasonCode:
        self.paho.connect("127.0.0.1", self.port, keepalive=30)
        self._pump_until(lambda: bool(self.connacks))
        return self.connacks[0]

    def subscribe(self, topic_filter: str) -> list[ReasonCode]:
        self.paho.subscribe(topic_filter, qos=1)
        self._pump_until(lambda: bool(self.subacks))
        return self.subacks.pop(0)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> ReasonCode:
        """Publish at QoS 1 and return the broker's PUBACK reason code (always 0 on MQTT 3.1.1)."""
        mid = self.paho.publish(topic, payload, qos=1, retain=retain).mid
        self._pump_until(lambda: mid in self.pubacks)
        return self.pubacks.pop(mid)

    def next_message(self) -> tuple[str, bytes]:
        self._pump_until(lambda: bool(self.messages))
        return self.messages.popleft()

    def wait_disconnected(self) -> ReasonCode:
        self._pump_until(lambda: bool(self.disconnects))
        return self.disconnects[0]

    def close(self, reason: ReasonCode | None = None) -> None:
        self.paho.disconnect(reasoncode=reason)
