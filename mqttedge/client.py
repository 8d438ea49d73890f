"""A paho-mqtt 2.x subscriber's wiring, written once for ingest and the live view.

What every subscriber here needs, and nothing either one needs alone:

* **A client built from options**: MQTT 5 or 3.1.1, credentials, client id, and
  either a persistent session (``clean_start=False`` with a session expiry, or
  ``clean_session=False``) or a clean one.
* **Subscription in ``on_connect``**, so every reconnect resubscribes; the
  :attr:`MqttEdge.subscribed` event says the broker granted it.
* **One reconnect policy**: :data:`RECONNECT_BACKOFF`, a :class:`~storage.backoff.Backoff`,
  not paho's own ``reconnect_delay_set``. The caller's thread drives the
  client: :meth:`MqttEdge.ensure_connected` between its own reads (ingest), or
  :meth:`MqttEdge.run` when there is nothing else to do (the live view).
* **Conversion at the edge**: paho's message becomes a frozen :class:`EdgeMessage`
  in ``on_message``; nothing past the callback sees a paho type.

Hooks keep the user's own optimisations out of here: ``manual_ack`` leaves
acknowledging to the user, and ``wrap_socket`` lets it replace the socket paho
reads and writes (ingest buffers it, see :mod:`ingest._socket`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from storage.backoff import NO_JITTER, Backoff

log = logging.getLogger(__name__)

#: Pauses between reconnection attempts: 0.5 s doubling up to 30 s.
RECONNECT_BACKOFF: Final = Backoff(first=0.5, cap=30.0, jitter=NO_JITTER)
#: How long :meth:`MqttEdge.run` blocks waiting for the socket before it looks at ``stopping``.
_IDLE_WAIT_S: Final = 0.5


@dataclass(frozen=True, slots=True)
class EdgeMessage:
    """A message as stallwatch sees it: converted from paho's type at the edge."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    received_ns: int
    #: which connection (counted from 1) delivered it: packet ids mean something only there
    connection: int
    #: the broker's DUP flag: it sent this message before, unacknowledged
    redelivered: bool


@dataclass(frozen=True, slots=True)
class EdgeOptions:
    """How to reach the broker and which kind of session to hold there."""

    host: str
    port: int
    client_id: str
    protocol: str = "5"  # "5" or "3.1.1"
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line
    keepalive_s: int = 30
    #: keep the session (and the messages queued for it) while disconnected
    persistent: bool = False
    #: MQTT 5, persistent sessions only: how long the broker keeps the session
    session_expiry_s: int | None = None
    #: MQTT 5: how many unacknowledged QoS 1 messages the broker may have out to us
    receive_maximum: int | None = None

    @property
    def v5(self) -> bool:
        return self.protocol == "5"


class MqttEdge:
    """One subscriber's connection to the broker; see the module docstring."""

    def __init__(
        self,
        options: EdgeOptions,
        subscription: str,
        on_message: Callable[[EdgeMessage], object],
        *,
        backoff: Backoff = RECONNECT_BACKOFF,
        manual_ack: bool = False,
        wrap_socket: Callable[[Any], Any] | None = None,
        on_subscribed: Callable[[], None] | None = None,
        name: str = "MQTT subscriber",
    ) -> None:
        self.options = options
        self.subscription = subscription
        self._deliver = on_message
        self._backoff = backoff
        self._wrap_socket = wrap_socket
        self._on_subscribed_hook = on_subscribed
        self._name = name
        self._failures = 0
        self._stopping = False
        #: connections made so far; :attr:`EdgeMessage.connection` is this at delivery
        self.connection = 0
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.client = self._make_client(manual_ack)

    def _make_client(self, manual_ack: bool) -> paho.Client:
        opts = self.options
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=opts.client_id,
            protocol=paho.MQTTv5 if opts.v5 else paho.MQTTv311,
            clean_session=None if opts.v5 else not opts.persistent,
            manual_ack=manual_ack,
        )
        if opts.username is not None:
            client.username_pw_set(opts.username, opts.password)
        if self._wrap_socket is not None:
            client.on_socket_open = self._on_socket_open
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _connect_properties(self) -> Properties | None:
        opts = self.options
        if not opts.v5 or (opts.session_expiry_s is None and opts.receive_maximum is None):
            return None
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if opts.persistent and opts.session_expiry_s is not None:
            props.SessionExpiryInterval = opts.session_expiry_s
        if opts.receive_maximum is not None:
            props.ReceiveMaximum = opts.receive_maximum
        return props

    # -- paho callbacks ----------------------------------------------------------
    def _on_socket_open(self, client: paho.Client, _userdata: Any, sock: Any) -> None:
        assert self._wrap_socket is not None  # registered only when there is one
        client._sock = self._wrap_socket(sock)  # paho internals, on purpose: see ingest._socket

    def _on_connect(
        self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            log.error("MQTT broker refused the %s's connection: %s", self._name, reason)
            return
        self.connection += 1
        client.subscribe(self.subscription, qos=1)
        self.connected.set()
        log.info(
            "%s connected to MQTT broker %s:%d", self._name, self.options.host, self.options.port
        )

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any
    ) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.error("%s's subscription to %s refused: %s", self._name, self.subscription, failed)
            return
        self.subscribed.set()
        if self._on_subscribed_hook is not None:
            self._on_subscribed_hook()

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self._stopping:
            log.warning("%s lost the MQTT connection (%s); reconnecting", self._name, reason)

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        # Hot path: convert at the edge and hand over; paho always hands out bytes here.
        self._deliver(
            EdgeMessage(
                message.topic,
                cast(bytes, message.payload),
                message.qos,
                message.mid,
                time.time_ns(),
                self.connection,
                message.dup,
            )
        )

    # -- connecting --------------------------------------------------------------
    def connect_async(self) -> None:
        """Set where to connect; the first :meth:`ensure_connected` makes the connection."""
        opts = self.options
        self.client.connect_async(
            opts.host,
            opts.port,
            keepalive=opts.keepalive_s,
            clean_start=(not opts.persistent) if opts.v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=self._connect_properties(),
        )

    def ensure_connected(
        self, stopping: threading.Event, on_down: Callable[[], None] | None = None
    ) -> bool:
        """Connected, or try once; after a failed try, call ``on_down`` and pause per the backoff.

        Returns whether the client has a connection to read from now.
        """
        if self.client.socket() is not None or self._reconnect():
            self._failures = 0
            return True
        if on_down is not None:
            on_down()
        self._failures += 1
        stopping.wait(self._backoff.delay(self._failures))
        return False

    def _reconnect(self) -> bool:
        try:
            return self.client.reconnect() == MQTTErrorCode.MQTT_ERR_SUCCESS
        except OSError as exc:
            log.warning(
                "%s cannot reach MQTT broker %s:%d: %s",
                self._name,
                self.options.host,
                self.options.port,
                exc,
            )
            return False

    def run(self, stopping: threading.Event) -> None:
        """Read and reconnect until ``stopping`` is set; for a subscriber with no other work."""
        while not stopping.is_set():
            if self.ensure_connected(stopping):
                self.client.loop(timeout=_IDLE_WAIT_S)

    def disconnect(self) -> None:
        """Leave the broker on purpose: the drop that follows is not logged as lost."""
        self._stopping = True
        self.client.disconnect()


__all__ = ["RECONNECT_BACKOFF", "EdgeMessage", "EdgeOptions", "MqttEdge"]
