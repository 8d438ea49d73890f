"""Simulated devices on MQTT: QoS 1, Last Will, buffering through broker outages.

One :class:`DeviceHub` drives many paho-mqtt connections from a single thread
with a selector (paho's external-loop API), so a market of hundreds of devices
needs no thread per device. Two ways to connect:

* **per device** (the default for small markets): one connection per device,
  client id and — when credentials are configured — MQTT user name = device id,
  exactly as real devices connect. Scales register a Last Will on their status
  topic (``ScaleStatus(online=false, will=true)``); the broker publishes it
  when the scale's connection drops without a DISCONNECT.
* **multiplexed** (a simulation shortcut for large markets and benchmarks): a
  few connections carry the messages of many devices. There are no Last Wills
  (a connection has only one) and the broker must let the connection's user
  publish on every device's topics.

Delivery: every message is published at QoS 1 and stays in the connection's
:class:`~simulators.outbox.Outbox` until the broker's PUBACK arrives (paho's
``on_publish``). When a connection drops, its unacknowledged messages are
published again — same bytes, in their original order — on a *new* paho client
once the broker is back (a fresh client, so paho's own in-memory retry queue
cannot send them a second time). At most ``window`` (≤ 20 000) publishes are
unacknowledged per connection, which keeps paho's 16-bit message ids unique.
"""

from __future__ import annotations

import logging
import random
import selectors
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from simulators.commands import CommandBook
from simulators.outbox import Outbox, Outgoing

log = logging.getLogger(__name__)

#: Un-acknowledged publishes per connection; paho's message ids are 16 bit.
MAX_WINDOW = 20_000
#: How often the hub looks after connections (keepalive, reconnects, CONNACK timeouts).
_MAINTENANCE_S = 0.05

WillSource = Callable[[], tuple[str, bytes]]
"""Composes a Last Will (topic, payload) when its connection is (re)established."""


class ConnectionMode(StrEnum):
    PER_DEVICE = "per-device"
    MULTIPLEXED = "multiplexed"


class BrokerUrlError(ValueError):
    """The broker URL is not ``mqtt://[user[:password]@]host[:port]``."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in {"mqtt", "tcp"} or not parts.hostname:
            raise BrokerUrlError(f"broker URL must look like mqtt://host:1883, not {url!r}")
        try:
            port = parts.port or 1883
        except ValueError as exc:
            raise BrokerUrlError(f"bad port in broker URL {url!r}") from exc
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return cls(parts.hostname, port, username, password)


@dataclass(frozen=True, slots=True)
class LinkOptions:
    """How simulated devices connect and buffer."""

    qos: int = 1
    keepalive_s: int = 30
    #: un-acknowledged publishes per connection
    window: int = 1_000
    #: unsent messages a device keeps while the broker is unreachable (then drops the oldest);
    #: a busy scale publishes a few hundred messages a day
    buffer_per_device: int = 10_000
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 5.0
    connect_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not 1 <= self.window <= MAX_WINDOW:
            raise ValueError(f"window must be within 1..{MAX_WINDOW}")
        if self.qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ValueError("need 0 < reconnect_min_s <= reconnect_max_s")


class _State(Enum):
    IDLE = "idle"  # not connected; may try at ``next_attempt``
    CONNECTING = "connecting"  # CONNECT sent, waiting for CONNACK
    CONNECTED = "connected"
    CLOSING = "closing"  # DISCONNECT queued
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class HubStats:
    published: int  # first publications
    republished: int  # sent again after a connection was lost
    acked: int
    pending: int
    in_flight: int
    dropped: int
    connected: int
    links: int

    @property
    def unacknowledged(self) -> int:
        return self.pending + self.in_flight


class Link:
    """One MQTT connection and the buffer of the devices it carries."""

    def __init__(
        self,
        hub: DeviceHub,
        client_id: str,
        *,
        username: str | None,
        password: str | None,
        will: WillSource | None,
    ) -> None:
        self.hub = hub
        self.client_id = client_id
        self._username = username
        self._password = password
        self._will = will
        options = hub.options
        self.outbox = Outbox(capacity=options.buffer_per_device, window=options.window)
        self.state = _State.IDLE
        self.client: mqtt.Client | None = None
        self.next_attempt = 0.0
        self._backoff = options.reconnect_min_s
        self._connect_started = 0.0
        self._jitter = random.Random(client_id)  # spreads reconnects; not part of any output
        self.sessions = 0  # successful connections so far

    # -- publishing ------------------------------------------------------------------
    def enqueue(self, message: Outgoing) -> None:
        self.outbox.add(message)
        if self.state is _State.CONNECTED:
            self.fill()

    def fill(self) -> None:
        """Hand pending messages to paho up to the window."""
        client = self.client
        while client is not None and self.state is _State.CONNECTED and self.outbox.can_send():
            seq, message = self.outbox.next_to_send()
            info = client.publish(message.topic, message.payload, qos=self.hub.options.qos)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self.outbox.unsent(seq, message)
                log.warning(
                    "%s: publish refused by paho (%s)", self.client_id, mqtt.error_string(info.rc)
                )
                return
            self.outbox.sent(seq, message, info.mid)

    # -- connection lifecycle ------------------------------------------------------------
    def maintain(self, now: float) -> None:
        if self.state is _State.IDLE and now >= self.next_attempt:
            self._connect(now)
        elif (
            self.state is _State.CONNECTING
            and now - self._connect_started > self.hub.options.connect_timeout_s
        ):
            log.warning(
                "%s: no CONNACK within %.1fs", self.client_id, self.hub.options.connect_timeout_s
            )
            self.sever()
        elif self.client is not None and self.state in (_State.CONNECTED, _State.CLOSING):
            self.client.loop_misc()  # keepalive pings and ping timeouts

    def _connect(self, now: float) -> None:
        client = self._new_client()
        self.client = client
        self.state = _State.CONNECTING
        self._connect_started = now
        address = self.hub.broker
        try:
            client.connect(address.host, address.port, keepalive=self.hub.options.keepalive_s)
        except OSError as exc:  # refused, unreachable, DNS: the broker is not there (yet)
            log.debug(
                "%s: cannot connect to %s:%s: %s", self.client_id, address.host, address.port, exc
            )
            self._lost(now)

    def _new_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.connect_timeout = self.hub.options.connect_timeout_s
        client.max_inflight_messages_set(self.hub.options.window)
        client.max_queued_messages_set(0)
        if self._username is not None:
            client.username_pw_set(self._username, self._password)
        if self._will is not None:
            topic, payload = self._will()
            client.will_set(topic, payload, qos=1, retain=False)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_socket_open = self.hub.on_socket_open
        client.on_socket_close = self.hub.on_socket_close
        client.on_socket_register_write = self.hub.on_register_write
        client.on_socket_unregister_write = self.hub.on_unregister_write
        client.user_data_set(self)
        return client

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if client is not self.client:
            return
        if reason.is_failure:
            # e.g. "Not authorized": paho disconnects next; back off as for any failure
            log.error("%s: broker refused the connection: %s", self.client_id, reason)
            return
        self.state = _State.CONNECTED
        self.sessions += 1
        self._backoff = self.hub.options.reconnect_min_s
        self.subscribe(self.hub.commands.topics_of(self.hub.devices_on(self)))
        if self.sessions > 1:
            log.info(
                "%s: reconnected; %d messages waiting", self.client_id, self.outbox.unacknowledged
            )
        self.fill()

    def _on_disconnect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if client is not self.client:
            return
        if self.state is _State.CLOSING:
            self.state = _State.CLOSED
            self.client = None
            return
        if self.state is _State.CONNECTED:
            log.warning("%s: connection lost (%s)", self.client_id, reason)
        self._lost(time.monotonic())

    def _lost(self, now: float) -> None:
        self.outbox.connection_lost()
        self.client = None
        self.state = _State.IDLE
        self.next_attempt = now + self._backoff * self._jitter.uniform(0.5, 1.0)
        self._backoff = min(self._backoff * 2, self.hub.options.reconnect_max_s)

    def subscribe(self, topics: Sequence[str]) -> None:
        """Subscribe to command topics (QoS 1): their retained state arrives at once."""
        if self.client is not None and self.state is _State.CONNECTED and topics:
            self.client.subscribe([(topic, 1) for topic in topics])

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if client is self.client:
            self.hub.commands.receive(message.topic, bytes(message.payload))

    def _on_publish(
        self, client: mqtt.Client, _userdata: Any, mid: int, _reason: Any, _props: Any
    ) -> None:
        if client is self.client and self.outbox.ack(mid):
            self.fill()

    def sever(self) -> None:
        """Drop the TCP connection without DISCONNECT, like a power cut: the Last Will fires."""
        client = self.client
        sock = client.socket() if client is not None else None
        if client is None or not isinstance(sock, socket.socket):
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            log.debug("%s: socket already closed", self.client_id)
        client.loop_read()  # reads EOF: paho reports the connection lost

    def close(self) -> None:
        """Disconnect cleanly (no Last Will); unacknowledged messages stay in the outbox."""
        if self.state is _State.CONNECTED and self.client is not None:
            self.state = _State.CLOSING
            self.client.disconnect()
        elif self.state is not _State.CLOSING:
            if self.client is not None and self.client.socket() is not None:
                self.sever()
            self.state = _State.CLOSED
            self.client = None


class DeviceHub:
    """Many simulated devices' MQTT connections, driven by :meth:`pump` in the caller's thread.

    Not thread-safe: publish, pump and close from one thread (paho's callbacks
    run inside :meth:`pump`, in that same thread).
    """

    def __init__(self, broker: BrokerAddress, options: LinkOptions | None = None) -> None:
        self.broker = broker
        self.options = options or LinkOptions()
        self._selector = selectors.DefaultSelector()
        self.links: list[Link] = []
        self._link_of: dict[str, Link] = {}
        self._last_maintenance = 0.0
        #: a connection per device (else devices share a few, see build_hub)
        self.per_device = True
        #: per device: its id is its user name
        self.device_credentials = False
        #: what the scales and screens were told (their command topics)
        self.commands = CommandBook()

    def add_link(
        self,
        client_id: str,
        devices: Iterable[str],
        *,
        username: str | None = None,
        password: str | None = None,
        will: WillSource | None = None,
    ) -> Link:
        link = Link(self, client_id, username=username, password=password, will=will)
        for device in devices:
            if device in self._link_of:
                raise ValueError(
                    f"device {device} is already on connection {self._link_of[device].client_id}"
                )
            self._link_of[device] = link
        self.links.append(link)
        return link

    def add_device(self, device: str, passwords: Mapping[str, str] | None = None) -> None:
        """A device that joined while the hub runs: its own connection when the hub has one
        per device, else it shares the first connection. Known devices are left alone."""
        if device in self._link_of:
            return
        if self.per_device or not self.links:
            self.add_link(device, [device], **self._credentials(device, passwords))
        else:
            self._link_of[device] = self.links[0]

    def _credentials(self, device: str, passwords: Mapping[str, str] | None) -> dict[str, Any]:
        if self.device_credentials:
            return {"username": device, "password": (passwords or {}).get(device)}
        return {"username": self.broker.username, "password": self.broker.password}

    def link_of(self, device: str) -> Link:
        return self._link_of[device]

    def devices_on(self, link: Link) -> list[str]:
        return [device for device, carrier in self._link_of.items() if carrier is link]

    def listen_for_commands(self, device: str, topic: str) -> None:
        """The device (a scale or screen) follows its command topic, from now on."""
        self.commands.listen(device, topic)
        link = self._link_of.get(device)
        if link is not None:
            link.subscribe([topic])

    # -- publishing ----------------------------------------------------------------------
    def publish(self, device: str, topic: str, payload: bytes) -> None:
        """Buffer a device's message; it goes out as soon as its connection allows."""
        self._link_of[device].enqueue(Outgoing(device, topic, payload))

    # -- the loop ---------------------------------------------------------------------------
    def pump(self, timeout: float = 0.0) -> None:
        """Do network work: connect, send, receive acks. Waits at most ``timeout`` seconds."""
        now = time.monotonic()
        if now - self._last_maintenance >= _MAINTENANCE_S:
            self._last_maintenance = now
            for each in self.links:
                each.maintain(now)
        if not self._selector.get_map():
            if timeout > 0:  # nothing to wait on but the next connection attempt
                time.sleep(min(timeout, _MAINTENANCE_S))
            return
        for key, mask in self._selector.select(min(timeout, _MAINTENANCE_S)):
            link: Link = key.data
            client = link.client
            if client is None:
                continue
            if mask & selectors.EVENT_READ:
                client.loop_read()
            if mask & selectors.EVENT_WRITE and link.client is client:
                client.loop_write()

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Pump until ``condition()`` holds; False if ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.pump(min(remaining, _MAINTENANCE_S))
        return True

    def connect(self, timeout: float) -> bool:
        """Start every connection and wait until all are up."""
        return self.wait_for(self.all_connected, timeout)

    def all_connected(self) -> bool:
        return all(link.state is _State.CONNECTED for link in self.links)

    def drain(self, timeout: float) -> bool:
        """Wait until the broker has acknowledged everything published so far."""
        return self.wait_for(lambda: self.stats().unacknowledged == 0, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect every connection cleanly; what is still unacknowledged is abandoned."""
        for link in self.links:
            link.close()
        self.wait_for(lambda: all(link.state is _State.CLOSED for link in self.links), timeout)
        for link in self.links:
            if link.state is not _State.CLOSED:
                link.state = _State.CLOSING  # so that severing does not schedule a reconnect
                link.sever()
                link.state = _State.CLOSED
        self._selector.close()

    def sever(self, device: str) -> None:
        """Cut a device's connection as a power failure would; it reconnects later."""
        self._link_of[device].sever()

    def __enter__(self) -> DeviceHub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def sendable_backlog(self) -> int:
        """Messages queued on live connections: held back by the window, not by an outage."""
        return sum(link.outbox.pending for link in self.links if link.state is _State.CONNECTED)

    def stats(self) -> HubStats:
        links = self.links
        return HubStats(
            published=sum(link.outbox.published for link in links),
            republished=sum(link.outbox.republished for link in links),
            acked=sum(link.outbox.acked for link in links),
            pending=sum(link.outbox.pending for link in links),
            in_flight=sum(link.outbox.in_flight for link in links),
            dropped=sum(link.outbox.dropped.total() for link in links),
            connected=sum(link.state is _State.CONNECTED for link in links),
            links=len(links),
        )

    # -- paho's external-loop callbacks (registered on every client) ------------------
    def on_socket_open(self, client: mqtt.Client, userdata: Link, sock: Any) -> None:
        self._selector.register(sock, selectors.EVENT_READ, userdata)

    def on_socket_close(self, client: mqtt.Client, userdata: Link, sock: Any) -> None:
        if self._registered(sock):
            self._selector.unregister(sock)

    def on_register_write(self, client: mqtt.Client, userdata: Link, sock: Any) -> None:
        if self._registered(sock):
            self._selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, userdata)

    def on_unregister_write(self, client: mqtt.Client, userdata: Link, sock: Any) -> None:
        if self._registered(sock):
            self._selector.modify(sock, selectors.EVENT_READ, userdata)

    def _registered(self, sock: Any) -> bool:
        try:
            self._selector.get_key(sock)
        except (KeyError, ValueError):
            return False
        return True


@dataclass(frozen=True, slots=True)
class FleetDevice:
    id: str
    will: WillSource | None = None


def build_hub(
    broker: BrokerAddress,
    devices: Sequence[FleetDevice],
    *,
    mode: ConnectionMode,
    options: LinkOptions | None = None,
    passwords: Mapping[str, str] | None = None,
    authenticate: bool = False,
    connections: int = 1,
    client_prefix: str = "stallwatch-sim",
) -> DeviceHub:
    """A hub for ``devices``, connected per device or multiplexed over ``connections``.

    Per device, the MQTT user name is the device id when ``authenticate`` is set
    or ``passwords`` are given (with the device's password, if listed). Multiplexed
    connections use the broker URL's user name and password, if any.
    """
    hub = DeviceHub(broker, options)
    hub.per_device = mode is ConnectionMode.PER_DEVICE
    if mode is ConnectionMode.PER_DEVICE:
        with_credentials = authenticate or passwords is not None
        hub.device_credentials = with_credentials
        for device in devices:
            hub.add_link(
                device.id,
                [device.id],
                username=device.id if with_credentials else broker.username,
                password=(passwords or {}).get(device.id) if with_credentials else broker.password,
                will=device.will,
            )
        return hub
    count = max(1, min(connections, len(devices)))
    for index in range(count):
        hub.add_link(
            f"{client_prefix}-{index + 1}",
            [device.id for device in devices[index::count]],
            username=broker.username,
            password=broker.password,
        )
    return hub


def read_password_file(lines: Iterable[str]) -> dict[str, str]:
    """``device:password`` lines: Mosquitto's plain-text format before ``mosquitto_passwd -U``."""
    passwords = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        device, sep, password = line.partition(":")
        if not sep or not device:
            raise ValueError(f"line {number}: expected device:password")
        passwords[device] = password
    return passwords
