"""The durable receiver: an MQTT subscriber that acknowledges only what is durable.

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
  subscription is (re)made in ``on_connect``: the wiring, the reconnects (with
  :data:`mqttedge.RECONNECT_BACKOFF`) and the conversion of paho's messages are
  the shared adapter's, :mod:`mqttedge`; this module adds what only durability needs.
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
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Final

from paho.mqtt.enums import MQTTErrorCode

from ingest._socket import BufferedSocket, puback_packets
from ingest.spool import Spool, SpoolError
from mqttedge import RECONNECT_BACKOFF, EdgeMessage, EdgeOptions, MqttEdge
from schemas.commands import COMMAND_CHANNEL, is_command_topic
from schemas.topics import SUBSCRIPTION
from storage.backoff import Backoff

log = logging.getLogger(__name__)

#: A received message, as the adapter converted it at the edge.
InboundMessage = EdgeMessage


#: How long the broker keeps ingest's session, and queues what arrives for it, while ingest
#: is away; also how long a redelivery can come (the forwarder remembers that long).
SESSION_EXPIRY_S: Final = 7 * 86_400
#: MQTT 5 Receive Maximum: how many unacknowledged messages the broker may have out to
#: ingest, which is what bounds the inbox.
RECEIVE_MAXIMUM: Final = 10_000


def persistent_session(
    connection: EdgeOptions,
    *,
    session_expiry_s: int = SESSION_EXPIRY_S,
    receive_maximum: int = RECEIVE_MAXIMUM,
) -> EdgeOptions:
    """``connection`` as ingest holds it: a persistent session, so the broker keeps what
    arrives while ingest is away. The one place ingest's session defaults are set."""
    return replace(
        connection,
        persistent=True,
        session_expiry_s=session_expiry_s,
        receive_maximum=receive_maximum,
    )


@dataclass(frozen=True, slots=True)
class MqttOptions:
    """Ingest's subscriber: the connection, made by :func:`persistent_session`, plus
    what only ingest uses."""

    edge: EdgeOptions
    #: join ``$share/<group>/...`` so several ingest processes split the load
    share_group: str | None = None
    #: commit (fsync, then acknowledge) at the latest after this many messages
    commit_max: int = 2_000

    def __post_init__(self) -> None:
        # Acknowledging only what is durable is worth nothing if the broker forgets the rest
        # whenever we disconnect.
        if not self.edge.persistent or self.edge.session_expiry_s is None:
            raise ValueError("ingest needs a persistent session: see persistent_session()")

    @property
    def subscription(self) -> str:
        if self.share_group:
            return f"$share/{self.share_group}/{SUBSCRIPTION}"
        return SUBSCRIPTION

    @property
    def session_expiry(self) -> timedelta:
        """How long the broker keeps the session, so how long a redelivery can come."""
        expiry = self.edge.session_expiry_s
        assert expiry is not None  # checked in __post_init__
        return timedelta(seconds=expiry)


#: The last level of every command topic.
COMMAND_SUFFIX: Final = "/" + COMMAND_CHANNEL


def _is_command(topic: str) -> bool:
    # The suffix test first: this runs for every message ingest receives.
    return topic.endswith(COMMAND_SUFFIX) and is_command_topic(topic)


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
        self._spool = spool
        self._on_spooled = on_spooled
        # Filled by the adapter's bound ``append``: no call of ours on the hot path, so the
        # list is only ever emptied in place, never replaced.
        self._inbox: list[InboundMessage] = []
        self._stopping = threading.Event()
        self._socket: BufferedSocket | None = None
        self._edge = MqttEdge(
            options.edge,
            options.subscription,
            self._inbox.append,
            backoff=reconnect_backoff,
            manual_ack=True,
            wrap_socket=self._buffer_socket,
            name="ingest receiver",
        )
        self._client = self._edge.client
        self.connected = self._edge.connected
        self.subscribed = self._edge.subscribed
        #: device messages made durable in the spool
        self.received = 0
        self.acknowledged = 0
        #: commands to devices (``schemas.commands``) that the subscription also matched
        self.commands_ignored = 0
        self._thread = threading.Thread(target=self._run, name="mqtt-receiver", daemon=True)

    def _buffer_socket(self, sock: Any) -> BufferedSocket:
        self._socket = BufferedSocket(sock)
        return self._socket

    # -- the loop --------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            # On a failed reconnect, whatever arrived before the drop is made durable
            # (not acknowledged) before the pause.
            if not self._edge.ensure_connected(self._stopping, on_down=self._commit):
                continue
            self._read_available()
            if self._inbox and (len(self._inbox) >= self._options.commit_max or self._caught_up()):
                self._commit()
        self._commit()

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
        batch = self._inbox[:]
        self._inbox.clear()
        # Commands to devices match the subscription too: acknowledged, never spooled.
        readings = [m for m in batch if not _is_command(m.topic)]
        try:
            self._spool.append(
                [(m.topic, m.payload, m.received_ns, m.redelivered) for m in readings]
            )
        except SpoolError:
            # Not durable, so not acknowledged: keep it and let the broker keep owning the rest.
            log.exception("spool write failed; holding %d messages unacknowledged", len(batch))
            self._inbox[:0] = batch
            self._stopping.wait(1.0)
            return
        self.received += len(readings)
        self.commands_ignored += len(batch) - len(readings)
        self._acknowledge(batch)
        self._on_spooled()

    def _acknowledge(self, batch: list[InboundMessage]) -> None:
        current = self._edge.connection
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
        self._edge.connect_async()
        self._thread.start()

    def stop(self) -> None:
        """Stop reading, make what already arrived durable, and disconnect."""
        self._stopping.set()
        self._thread.join(timeout=30)
        self._edge.disconnect()
