"""The MQTT edge: a paho-mqtt 2.x subscriber that acknowledges only what is durable.

Flow per message::

    paho network thread ──on_message──▶ inbox (deque) ──committer thread──▶ spool (fsync)
                                                                 └──▶ PUBACK to the broker

* **Manual acknowledgement.** paho is created with ``manual_ack=True``; the
  committer sends PUBACK only after the spool transaction holding the message
  has been fsynced. A crash before that means the broker still owns the
  message and redelivers it on reconnect (persistent session).
* **Bounded inbox, no drop policy needed.** The broker never has more than
  Receive Maximum (MQTT v5; ``max_inflight_messages`` for 3.1.1 brokers)
  unacknowledged messages out to us, so the inbox cannot grow beyond that; if
  the spool stalls we simply stop acknowledging and the broker holds the rest.
* **Persistent session.** ``clean_start=False`` with a session expiry, and the
  subscription is (re)made in ``on_connect`` so a broker that lost the session
  still delivers.
* **Scale-out.** With ``share_group`` set the subscription is
  ``$share/<group>/markets/+/+/+/+``: the broker splits messages across
  instances; each instance has its own client id and spool.
* **Acks belong to a connection.** Packet ids are only meaningful on the
  connection that delivered them, so messages received before a reconnect are
  spooled but not acknowledged; the broker redelivers them, and point identity
  makes the second copy harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.spool import Spool, SpoolError
from schemas.topics import SUBSCRIPTION

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message as stallwatch sees it: converted from paho's type at the edge."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    received_ns: int
    connection: int


@dataclass(frozen=True, slots=True)
class MqttOptions:
    host: str
    port: int
    client_id: str
    protocol: str = "5"  # "5" or "3.1.1"
    username: str | None = None
    password: str | None = None
    share_group: str | None = None
    session_expiry_s: int = 7 * 86_400
    receive_maximum: int = 2_000
    keepalive_s: int = 30

    @property
    def subscription(self) -> str:
        if self.share_group:
            return f"$share/{self.share_group}/{SUBSCRIPTION}"
        return SUBSCRIPTION


class MqttReceiver:
    """Receives, spools, then acknowledges. Start with :meth:`start`, end with :meth:`stop`."""

    def __init__(self, options: MqttOptions, spool: Spool, on_spooled: Callable[[], None]) -> None:
        self._options = options
        self._spool = spool
        self._on_spooled = on_spooled
        self._inbox: deque[InboundMessage] = deque()
        self._inbox_ready = threading.Event()
        self._stopping = threading.Event()
        self._connection = 0
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.received = 0
        self.acknowledged = 0
        self._client = self._make_client()
        self._committer = threading.Thread(target=self._commit_loop, name="spool-committer", daemon=True)
        self._network = threading.Thread(target=self._network_loop, name="mqtt-network", daemon=True)

    # -- paho wiring -----------------------------------------------------------
    def _make_client(self) -> paho.Client:
        opts = self._options
        v5 = opts.protocol == "5"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=opts.client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        if opts.username is not None:
            client.username_pw_set(opts.username, opts.password)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _connect_properties(self) -> Properties | None:
        if self._options.protocol != "5":
            return None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._options.session_expiry_s
        props.ReceiveMaximum = self._options.receive_maximum
        return props

    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.error("MQTT broker refused the connection: %s", reason)
            return
        self._connection += 1
        client.subscribe(self._options.subscription, qos=1)
        self.connected.set()
        log.info("connected to MQTT broker %s:%d", self._options.host, self._options.port)

    def _on_subscribe(self, _client: paho.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.error("subscription to %s refused: %s", self._options.subscription, failed)
        else:
            self.subscribed.set()

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self._stopping.is_set():
            log.warning("MQTT connection lost (%s); reconnecting", reason)

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        # Hot path: convert at the edge and hand over; everything else happens off this thread.
        self._inbox.append(
            InboundMessage(
                message.topic, message.payload, message.qos, message.mid, time.time_ns(), self._connection
            )
        )
        if not self._inbox_ready.is_set():
            self._inbox_ready.set()

    # -- durability then acknowledgement ---------------------------------------
    def _commit_loop(self) -> None:
        while not self._stopping.is_set() or self._inbox:
            self._inbox_ready.wait(0.5)
            self._inbox_ready.clear()
            if self._inbox:
                self._commit_inbox()

    def _commit_inbox(self) -> None:
        batch = [self._inbox.popleft() for _ in range(len(self._inbox))]
        try:
            self._spool.append([(m.topic, m.payload, m.received_ns) for m in batch])
        except SpoolError:
            # Not durable, so not acknowledged: put it back and let the broker keep owning it.
            log.exception("spool write failed; holding %d messages unacknowledged", len(batch))
            self._inbox.extendleft(reversed(batch))
            self._stopping.wait(1.0)
            return
        self.received += len(batch)
        self._acknowledge(batch)
        self._on_spooled()

    def _acknowledge(self, batch: list[InboundMessage]) -> None:
        current = self._connection
        for message in batch:
            if message.qos > 0 and message.connection == current:
                self._client.ack(message.mid, message.qos)
                self.acknowledged += 1

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        self._committer.start()
        self._client.connect_async(
            self._options.host,
            self._options.port,
            keepalive=self._options.keepalive_s,
            clean_start=False if self._options.protocol == "5" else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=self._connect_properties(),
        )
        self._network.start()

    def _network_loop(self) -> None:
        # Our own thread running loop_forever rather than paho's loop_start(): paho then writes
        # PUBACKs straight from the committer instead of waking its loop for each one, which
        # measured about a quarter faster here.
        self._client.loop_forever(retry_first_connection=True)

    def stop(self) -> None:
        """Disconnect, then make what already arrived durable (it stays unacknowledged)."""
        self._stopping.set()
        self._client.disconnect()
        self._network.join(timeout=10)
        self._inbox_ready.set()
        self._committer.join(timeout=30)
