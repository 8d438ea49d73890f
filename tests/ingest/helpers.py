"""A tiny market, a QoS 1 publisher, ingest's options and a condition waiter, for ingest tests."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from ingest.forwarder import Forwarder
from ingest.mqtt import RECEIVE_MAXIMUM, MqttOptions, persistent_session
from mqttedge import EdgeOptions


def ingest_mqtt(
    port: int,
    client_id: str,
    *,
    share_group: str | None = None,
    receive_maximum: int = RECEIVE_MAXIMUM,
) -> MqttOptions:
    """Ingest's options for a broker on this host: its persistent session, as production's."""
    session = persistent_session(
        EdgeOptions("127.0.0.1", port, client_id), receive_maximum=receive_maximum
    )
    return MqttOptions(session, share_group=share_group)


MARKET_TOML = """
[market]
id = "tm"
name = "测试市场"
name_en = "Test market"
timezone = "Asia/Shanghai"

[[products]]
plu = "1001"
name_zh = "大白菜"
name_en = "Napa cabbage"
category = "vegetables"

[[products]]
plu = "2001"
name_zh = "猪五花"
name_en = "Pork belly"
category = "meat"

[[vendors]]
id = "V01"
name = "王记蔬菜"
stall = "A01"
scales = ["S-A01"]
screens = ["P-A01"]
products = ["1001"]

[[vendors]]
id = "V02"
name = "李记肉铺"
stall = "B01"
scales = ["S-B01"]
screens = ["P-B01"]
products = ["2001"]

[[gates]]
id = "G-N"
name = "北门"

[[intake]]
id = "IN-1"
name = "进货检测室"
"""

SALE_TOPIC = "markets/tm/scales/S-A01/sale"


def write_market(directory: Path) -> Path:
    path = directory / "tm.toml"
    path.write_text(MARKET_TOML, encoding="utf-8")
    return path


def now_iso(offset: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + offset).isoformat(timespec="milliseconds")


def sale_payload(msg_id: int, *, ts: str | None = None, **changes: object) -> bytes:
    body: dict[str, object] = {
        "msg_id": msg_id,
        "ts": ts or now_iso(),
        "vendor": "V01",
        "plu": "1001",
        "weight_g": 1000 + msg_id % 500,
        "unit_price_fen_per_kg": 398,
        "trace_code": "TM-20261121-A01-0001",
    }
    body["total_fen"] = (int(body["weight_g"]) * 398 + 500) // 1000  # type: ignore[call-overload]
    body.update(changes)
    return json.dumps(body, ensure_ascii=False).encode()


class Publisher:
    """A device-like QoS 1 publisher that waits for every PUBACK."""

    def __init__(self, port: int, client_id: str = "test-device") -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        self.client.max_inflight_messages_set(200)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish_all(self, messages: Iterable[tuple[str, bytes]], timeout: float = 60) -> int:
        pending: deque[paho.MQTTMessageInfo] = deque()
        count = 0
        for topic, payload in messages:
            if len(pending) > 10_000:  # paho's packet ids wrap at 65535
                pending.popleft().wait_for_publish(timeout)
            pending.append(self.client.publish(topic, payload, qos=1))
            count += 1
        for info in pending:
            info.wait_for_publish(timeout)
            assert info.is_published()
        return count

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(condition: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    """Poll a condition that has no event to wait on (another process, a database)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class LossyLink:
    """A TCP relay to the broker that can lose what its client sends, then cut the link.

    To the broker, an ingest that spooled messages but died before its PUBACKs
    arrived looks exactly like this: the messages went out, no PUBACK came
    back, the connection ended. New connections are relayed faithfully.
    """

    def __init__(self, broker_port: int) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._broker_port = broker_port
        self.losing = threading.Event()
        self._links: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            broker = socket.create_connection(("127.0.0.1", self._broker_port))
            with self._lock:
                self._links.append((client, broker))
            threading.Thread(target=self._pump, args=(client, broker, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(broker, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        while True:
            try:
                data = source.recv(65_536)
                if not data:
                    break
                if not (from_client and self.losing.is_set()):
                    target.sendall(data)
            except OSError:
                break
        _close(source, target)

    def cut(self) -> None:
        """End every relayed connection; from now on nothing is lost."""
        with self._lock:
            links, self._links = self._links, []
        for client, broker in links:
            _close(client, broker)
        self.losing.clear()

    def close(self) -> None:
        self._listener.close()
        self.cut()


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):  # already closed by the other pump
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


@contextmanager
def running(forwarder: Forwarder) -> Iterator[None]:
    """``forwarder`` running on a thread of its own for the block; stopped and joined after."""
    stop = threading.Event()
    thread = threading.Thread(target=forwarder.run, args=(stop, threading.Event()))
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive()
