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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from ingest.validate import Limits, Validator
from marketview.live import LiveState
from mqttedge import EdgeMessage, EdgeOptions, MqttEdge
from schemas.registry import Registry, RegistrySource
from schemas.topics import SUBSCRIPTION
from storage._exceptions import StoreError
from storage.backoff import NO_JITTER, Backoff
from storage.base import Store
from storage.records import Reading

log = logging.getLogger(__name__)

#: How far back a (re)load looks for devices' last readings: the store seeks per
#: series, but screens cost the prices set in the window.
_LAST_SEEN_WINDOW = timedelta(days=7)
#: Pauses between reconnection attempts: 1 s doubling up to 30 s, the pace the view
#: kept when paho reconnected it (``reconnect_delay_set(1, 30)``), now by the one policy.
LIVE_RECONNECT_BACKOFF: Final = Backoff(first=1.0, cap=30.0, jitter=NO_JITTER)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LiveView(LiveState):
    """The live view, kept current from MQTT and the store; see the module docstring."""

    def __init__(
        self,
        registry: Registry | RegistrySource,
        store: Store,
        mqtt: EdgeOptions,
        *,
        clock: Callable[[], datetime] = _utc_now,
        limits: Limits | None = None,
        on_reading: Callable[[Reading], None] | None = None,
        resync_interval_s: float = 300.0,
        retry_interval_s: float = 5.0,
        reconnect_backoff: Backoff = LIVE_RECONNECT_BACKOFF,
    ) -> None:
        if mqtt.persistent:
            # The broker would queue for a session nobody resumes: the store fills the gaps.
            raise ValueError("the live view subscribes with a clean session, not a persistent one")
        super().__init__(registry, clock=clock)
        self._store = store
        self._validator = Validator(self._source, limits)
        #: Called with each valid reading from MQTT, on the MQTT thread: it must not block
        #: (the lock keeper only queues the rare failed test).
        self._on_reading = on_reading
        self._resync_interval_s = resync_interval_s
        self._retry_interval_s = retry_interval_s
        self._stopping = threading.Event()
        self._resync_wanted = threading.Event()
        self._synced = threading.Event()
        self._store_down = False
        self._edge = MqttEdge(
            mqtt,
            SUBSCRIPTION,
            self._on_message,
            backoff=reconnect_backoff,
            # Whatever was published while we were not subscribed is only in the store.
            on_subscribed=self._resync_wanted.set,
            name="live view",
        )
        self._mqtt_thread = threading.Thread(
            target=self._edge.run, args=(self._stopping,), name="live-view-mqtt", daemon=True
        )
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
        self._edge.connect_async()
        self._mqtt_thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._resync_wanted.set()
        self._edge.disconnect()
        if self._mqtt_thread.is_alive():
            self._mqtt_thread.join(timeout=30)
        if self._resync_thread.is_alive():
            self._resync_thread.join(timeout=30)

    @property
    def connected(self) -> bool:
        """Subscribed to the broker right now (messages are arriving)."""
        return self._edge.subscribed.is_set()

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
        self.follow_registry()
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
    def _on_message(self, message: EdgeMessage) -> None:
        self._handle(message.topic, message.payload, message.received_ns)

    def _handle(self, topic: str, payload: bytes, received_ns: int) -> None:
        """Take one raw MQTT message into the view; invalid ones are ignored."""
        self._validator.refresh()
        checked = self._validator.check(topic, payload, received_ns)
        if isinstance(checked, Reading):
            self.apply(checked)
            if self._on_reading is not None:
                self._on_reading(checked)
