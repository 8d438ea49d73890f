"""The MQTT edge: a paho-mqtt 2.x subscriber that acknowledges only what is durable.

One thread does everything, in this order, over and over::

    read what the socket has ──▶ inbox ──▶ spool (one fsynced transaction) ──▶ PUBACKs

* **Manual acknowledgement.** paho is created with ``manual_ack=True``; PUBACKs
  go out only after the spool transaction holding the messages has been
  fsynced. A crash before that means the broker still owns the messages and
  redelivers them on reconnect (persistent session).
* **Group commit, bounded inbox.** Messages are committed when the socket has
  nothing more to read or ``commit_max`` have arrived, so one fsync covers a
  whole burst. The inbox cannot outgrow the broker's window: it never has more
  than Receive Maximum (MQTT v5; ``max_inflight_messages`` on a 3.1.1 broker)
  unacknowledged messages out to us. If the spool cannot be written we stop
  acknowledging and the broker keeps the rest: nothing is ever dropped here.
* **One thread, on purpose.** Splitting network and commit work over two Python
  threads measured a third slower here: every socket call of one hands the GIL
  to the other. The forwarder therefore runs in its own process in production.
* **Persistent session.** ``clean_start=False`` with a session expiry, and the
  subscription is (re)made in ``on_connect``.
* **Scale-out.** With ``share_group`` the subscription is
  ``$share/<group>/markets/+/+/+/+``; each instance has its own client id and spool.
* **Acks belong to a connection.** Packet ids mean something only on the
  connection that delivered them; messages spooled after their connection
  dropped are not acknowledged, the broker redelivers them, and point identity
  makes the second copy harmless.

Two measured optimisations touch paho's socket (see :mod:`ingest._socket`): reads
are buffered (paho reads each packet with three or four tiny ``recv`` calls),
and a commit's PUBACKs are written with one ``send``.
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

from ingest._socket import BufferedSocket, puback_packets
from ingest.spool import Spool, SpoolError
from schemas.topics import SUBSCRIPTION
from storage.backoff import NO_JITTER, Backoff

log = logging.getLogger(__name__)

#: Pauses between reconnection attempts: 0.5 s doubling up to 30 s.
RECONNECT_BACKOFF: Final = Backoff(first=0.5, cap=30.0, jitter=NO_JITTER)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message as stallwatch sees it: converted from paho's type at the edge."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    received_ns: int
    connection: int
    #: the broker's DUP flag: it sent this message before, unacknowledged
    redelivered: bool


@dataclass(frozen=True, slots=True)
class MqttOptions:
    host: str
    port: int
    client_id: str
    protocol: str = "5"  # "5" or "3.1.1"
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line
    share_group: str | None = None
    session_expiry_s: int = 7 * 86_400
    receive_maximum: int = 10_000
    commit_max: int = 2_000
    keepalive_s: int = 30

    @property
    def subscription(self) -> str:
        if self.share_group:
            return f"$share/{self.share_group}/{SUBSCRIPTION}"
        return SUBSCRIPTION


class MqttReceiver:
    """Receives, spools, then acknowledges. Start with :meth:`start`, end with :meth:`stop`."""

    def __init__(
        self,
        options: MqttOptions,
        spool: Spool,
        on_spooled: Callable[[], None],
        *,
        reconnect_backoff: Backoff = RECONNECT_BACKOFF,
    ) -> None:
        self._options = options
        self._reconnect_backoff = reconnect_backoff
        self._spool = spool
        self._on_spooled = on_spooled
        self._inbox: list[InboundMessage] = []
        self._stopping = threading.Event()
        self._connection = 0
        self._socket: BufferedSocket | None = None
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.received = 0
        self.acknowledged = 0
        self._client = self._make_client()
        self._thread = threading.Thread(target=self._run, name="mqtt-receiver", daemon=True)

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
        client.on_socket_open = self._on_socket_open
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _connect_properties(self) -> Properties | None:
        if self._options.protocol != "5":
            return None
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._options.session_expiry_s
        props.ReceiveMaximum = self._options.receive_maximum
        return props

    def _on_socket_open(self, client: paho.Client, _userdata: Any, sock: Any) -> None:
        self._socket = BufferedSocket(sock)
        client._sock = self._socket  # paho internals, on purpose: see ingest._socket

    def _on_connect(
        self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            log.error("MQTT broker refused the connection: %s", reason)
            return
        self._connection += 1
        client.subscribe(self._options.subscription, qos=1)
        self.connected.set()
        log.info("connected to MQTT broker %s:%d", self._options.host, self._options.port)

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any
    ) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.error("subscription to %s refused: %s", self._options.subscription, failed)
        else:
            self.subscribed.set()

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self._stopping.is_set():
            log.warning("MQTT connection lost (%s); reconnecting", reason)

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        # Hot path: convert at the edge and keep going; paho always hands out bytes here.
        self._inbox.append(
            InboundMessage(
                message.topic,
                cast(bytes, message.payload),
                message.qos,
                message.mid,
                time.time_ns(),
                self._connection,
                message.dup,
            )
        )

    # -- the loop --------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if self._client.socket() is None and not self._reconnect():
                self._commit()  # whatever arrived before the drop: durable, not acknowledged
                failures += 1
                self._stopping.wait(self._reconnect_backoff.delay(failures))
                continue
            failures = 0
            self._read_available()
            if self._inbox and (len(self._inbox) >= self._options.commit_max or self._caught_up()):
                self._commit()
        self._commit()

    def _reconnect(self) -> bool:
        try:
            return self._client.reconnect() == MQTTErrorCode.MQTT_ERR_SUCCESS
        except OSError as exc:
            log.warning(
                "cannot reach MQTT broker %s:%d: %s", self._options.host, self._options.port, exc
            )
            return False

    def _read_available(self) -> None:
        # Block in select only when there is nothing to commit, so a burst's tail is
        # committed (and acknowledged) as soon as the socket goes quiet.
        rc = self._client.loop(timeout=0.0 if self._inbox else 0.5)
        sock = self._socket
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and sock is not None and sock.pending():
            rc = self._client.loop_read()
            if len(self._inbox) >= self._options.commit_max:
                break

    def _caught_up(self) -> bool:
        sock = self._socket
        return sock is None or not sock.readable_now()

    def _commit(self) -> None:
        if not self._inbox:
            return
        batch, self._inbox = self._inbox, []
        try:
            self._spool.append([(m.topic, m.payload, m.received_ns, m.redelivered) for m in batch])
        except SpoolError:
            # Not durable, so not acknowledged: keep it and let the broker keep owning the rest.
            log.exception("spool write failed; holding %d messages unacknowledged", len(batch))
            self._inbox = batch + self._inbox
            self._stopping.wait(1.0)
            return
        self.received += len(batch)
        self._acknowledge(batch)
        self._on_spooled()

    def _acknowledge(self, batch: list[InboundMessage]) -> None:
        current = self._connection
        mids = [m.mid for m in batch if m.qos == 1 and m.connection == current]
        if not mids or not self._client.is_connected():
            return
        sock = self._socket
        try:
            if sock is not None and not self._client.want_write():
                sock.sendall(puback_packets(mids))
            else:  # paho has output of its own half-written: queue behind it instead
                for mid in mids:
                    self._client.ack(mid, 1)
        except OSError as exc:
            # The connection went away; paho notices on its next read and the broker redelivers.
            log.info("could not acknowledge %d messages: %s", len(mids), exc)
            return
        self.acknowledged += len(mids)

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        self._client.connect_async(
            self._options.host,
            self._options.port,
            keepalive=self._options.keepalive_s,
            clean_start=False
            if self._options.protocol == "5"
            else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=self._connect_properties(),
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop reading, make what already arrived durable, and disconnect."""
        self._stopping.set()
        self._thread.join(timeout=30)
        self._client.disconnect()
