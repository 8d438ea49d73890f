"""A publisher of retained state: what stallwatch tells devices (``schemas.commands``).

One paho client on its own network thread (``loop_start``), reconnecting by itself.
:meth:`RetainedPublisher.publish` sends at QoS 1 with the retain flag and waits for the
broker's PUBACK: a command counts as sent only once the broker holds it, since from
then on the broker delivers it to the device, now or when it reconnects. A publish
that is not acknowledged in time, or that the broker refuses (PUBACK ≥ 0x80 on
MQTT 5: the user may not publish there), raises :class:`CommandNotSent`; the caller
keeps the state and publishes it again later (it is the whole state, so sending it
twice is harmless).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from mqttedge.client import EdgeOptions

log = logging.getLogger(__name__)

#: How long a publish waits for the broker's PUBACK.
PUBACK_TIMEOUT_S: Final = 5.0
#: MQTT 5 reason codes from here up are refusals.
_REFUSED: Final = 0x80


class CommandNotSent(RuntimeError):
    """The broker did not take the message (not connected, refused, or no PUBACK in time)."""


class RetainedPublisher:
    """Publishes retained QoS 1 messages and waits for each PUBACK (thread-safe)."""

    def __init__(self, options: EdgeOptions, *, timeout_s: float = PUBACK_TIMEOUT_S) -> None:
        self._timeout_s = timeout_s
        self._acks: dict[int, int] = {}
        self._abandoned: set[int] = set()  # packet ids given up on (no PUBACK in time)
        self._acked = threading.Condition()
        self.connected = threading.Event()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=paho.MQTTv5 if options.v5 else paho.MQTTv311,
        )
        if options.username is not None:
            self._client.username_pw_set(options.username, options.password)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._options = options

    def start(self) -> None:
        """Connect in the background; publishes wait for the connection up to their timeout."""
        self._client.connect_async(
            self._options.host, self._options.port, keepalive=self._options.keepalive_s
        )
        self._client.loop_start()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish retained at QoS 1; returns once the broker acknowledged it.

        paho is called without our lock held: its network thread calls
        :meth:`_on_publish` under paho's own lock, which ``publish`` takes too.
        """
        if not self.connected.wait(self._timeout_s):
            raise CommandNotSent(f"not connected to the broker; {topic} not sent")
        info = self._client.publish(topic, payload, qos=1, retain=True)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise CommandNotSent(f"{topic} not sent: {paho.error_string(info.rc)}")
        with self._acked:
            if not self._acked.wait_for(lambda: info.mid in self._acks, self._timeout_s):
                # Its PUBACK may still come: dropped then, not taken for a later
                # publish's that gets the same packet id.
                self._abandoned.add(info.mid)
                raise CommandNotSent(f"no PUBACK for {topic} in {self._timeout_s:.0f}s")
            code = self._acks.pop(info.mid)
        if code >= _REFUSED:
            raise CommandNotSent(f"the broker refused {topic} (reason code {code:#x})")

    # -- paho callbacks (its network thread) -------------------------------------------
    def _on_connect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("command publisher refused by the broker: %s", reason)
            return
        self.connected.set()

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        self.connected.clear()

    def _on_publish(
        self, _client: paho.Client, _userdata: Any, mid: int, reason: ReasonCode, _props: Any
    ) -> None:
        with self._acked:
            if mid in self._abandoned:
                self._abandoned.discard(mid)
                return
            self._acks[mid] = reason.value
            self._acked.notify_all()
