"""The live view's adapter: feeds :class:`marketview.live.LiveState` from MQTT and the store.

The view is kept current by the same MQTT stream ingest consumes:

* **Rebuilt from the store.** On :meth:`LiveView.start`, after every
  (re)subscription, and every ``resync_interval_s``, the latest prices, scale
  statuses and each device's last reading (of the past week) are read from the
  store and merged in. The API subscribes with a clean, non-persistent session,
  so what was published while it was away is only in the store; merging after
  each subscription closes that gap. Merging is safe in any order: the newest
  price wins (:mod:`marketview.live`).
* **Validated like ingest.** Every message goes through
  :class:`ingest.validate.Validator`; rejected ones are ignored here (ingest
  dead-letters them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from ingest.validate import Limits, Validator
from marketview.live import LiveState
from schemas.registry import Registry
from schemas.topics import SUBSCRIPTION
from storage._exceptions import StoreError
from storage.base import Store
from storage.records import Reading

log = logging.getLogger(__name__)

#: How far back a (re)load looks for devices' last readings: the store seeks per
#: series, but screens cost the prices set in the window.
_LAST_SEEN_WINDOW = timedelta(days=7)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class LiveMqttOptions:
    """A plain subscriber: clean session, QoS 1, its own client id.

    The client id must differ from ingest's: ingest's session is persistent and
    a second client with its id would take it over.
    """

    host: str
    port: int
    client_id: str
    protocol: Literal["5", "3.1.1"] = "5"
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line
    keepalive_s: int = 30


class LiveView(LiveState):
    """The live view, kept current from MQTT and the store; see the module docstring."""

    def __init__(
        self,
        registry: Registry,
        store: Store,
        mqtt: LiveMqttOptions,
        *,
        clock: Callable[[], datetime] = _utc_now,
        limits: Limits | None = None,
        resync_interval_s: float = 300.0,
        retry_interval_s: float = 5.0,
    ) -> None:
        super().__init__(registry, clock=clock)
        self._store = store
        self._mqtt = mqtt
        self._validator = Validator(registry, limits)
        self._resync_interval_s = resync_interval_s
        self._retry_interval_s = retry_interval_s
        self._stopping = threading.Event()
        self._resync_wanted = threading.Event()
        self._subscribed = threading.Event()
        self._synced = threading.Event()
        self._store_down = False
        self._client = self._make_client()
        self._resync_thread = threading.Thread(
            target=self._resync_loop, name="live-view-resync", daemon=True
        )

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> None:
        """Load the store's latest state, then follow the MQTT stream.

        A store that does not answer is not fatal: the view keeps retrying in the
        background and :attr:`synced` stays false until it has loaded once.
        """
        self._try_resync()
        self._resync_thread.start()
        v5 = self._mqtt.protocol == "5"
        self._client.connect_async(
            self._mqtt.host,
            self._mqtt.port,
            keepalive=self._mqtt.keepalive_s,
            clean_start=True if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._stopping.set()
        self._resync_wanted.set()
        self._client.disconnect()
        self._client.loop_stop()
        if self._resync_thread.is_alive():
            self._resync_thread.join(timeout=30)

    @property
    def connected(self) -> bool:
        """Subscribed to the broker right now (messages are arriving)."""
        return self._subscribed.is_set()

    @property
    def synced(self) -> bool:
        """The view has loaded the store's state at least once and can be served."""
        return self._synced.is_set()

    def _load_from_store(self, market: str) -> None:
        self.merge_stored(
            market,
            self._store.latest_prices(market),
            self._store.scale_status(market),
            self._store.device_last_seen(market, self._clock() - _LAST_SEEN_WINDOW),
        )

    # -- resynchronisation with the store --------------------------------------------
    def _try_resync(self) -> bool:
        try:
            for market in self.registry.markets:
                self._load_from_store(market)
        except StoreError as exc:
            if not self._store_down:
                log.warning("live view cannot read the store (%s); retrying", exc)
            self._store_down = True
            return False
        if self._store_down:
            log.info("live view reloaded from the store")
        self._store_down = False
        self._synced.set()
        return True

    def _resync_loop(self) -> None:
        while not self._stopping.is_set():
            healthy = self.synced and not self._store_down
            if self._resync_wanted.wait(
                self._resync_interval_s if healthy else self._retry_interval_s
            ):
                self._resync_wanted.clear()
            if not self._stopping.is_set():
                self._try_resync()

    # -- MQTT ----------------------------------------------------------------------
    def _make_client(self) -> paho.Client:
        opts = self._mqtt
        v5 = opts.protocol == "5"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=opts.client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            clean_session=None if v5 else True,
        )
        if opts.username is not None:
            client.username_pw_set(opts.username, opts.password)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(
        self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            log.error("MQTT broker refused the live view's connection: %s", reason)
            return
        client.subscribe(SUBSCRIPTION, qos=1)

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any
    ) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.error("live view subscription to %s refused: %s", SUBSCRIPTION, failed)
            return
        self._subscribed.set()
        # Whatever was published while we were not subscribed is only in the store.
        self._resync_wanted.set()

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self._subscribed.clear()
        if not self._stopping.is_set():
            log.warning("live view lost the MQTT connection (%s); reconnecting", reason)

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        # Converted at the edge: nothing past this line sees a paho type.
        self._handle(message.topic, cast(bytes, message.payload), time.time_ns())

    def _handle(self, topic: str, payload: bytes, received_ns: int) -> None:
        """Take one raw MQTT message into the view; invalid ones are ignored."""
        checked = self._validator.check(topic, payload, received_ns)
        if isinstance(checked, Reading):
            self.apply(checked)
