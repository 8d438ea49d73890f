"""One ingest instance: MQTT receiver → spool → forwarder → store.

The receiver always runs in the calling process. The forwarder runs either as
a thread next to it (tests, the demo: one process, a store object passed in) or
as a child process (``stallwatch ingest``), so that validation and store writes
do not compete with the receiver for the GIL. Both share only the spool file.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Protocol

from ingest.forwarder import Forwarder, ForwardStats
from ingest.mqtt import MqttOptions, MqttReceiver
from ingest.spool import Spool
from ingest.validate import Limits, Validator
from schemas.registry import Registry
from stallwatch.settings import Settings
from storage.base import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IngestStatus:
    received: int
    acknowledged: int
    stored: int
    rejected: int
    pending: int
    connected: bool


class ForwarderRunner(Protocol):
    def start(self) -> None: ...
    def wake(self) -> None: ...
    def stop(self) -> None: ...
    def counts(self) -> tuple[int, int]:
        """Readings stored and messages rejected so far."""
        ...


class ThreadForwarder:
    """The forwarder as a thread of this process, writing to a store object we were given."""

    def __init__(
        self,
        spool_path: Path,
        registry: Registry,
        store: Store,
        limits: Limits | None,
        batch_size: int,
    ) -> None:
        self._spool = Spool(spool_path, "forwarder")
        self.forwarder = Forwarder(
            self._spool, store, Validator(registry, limits), batch_size=batch_size
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(
            target=self.forwarder.run, args=(self._stop, self._wake), name="forwarder", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=60)
        self._spool.close()

    def counts(self) -> tuple[int, int]:
        return self.forwarder.stats.stored, self.forwarder.stats.rejected


class ProcessForwarder:
    """The forwarder as a child process that opens its own store from the settings."""

    def __init__(self, settings: Settings) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._wake = context.Event()
        self._stored: Synchronized[int] = context.Value("q", 0)
        self._rejected: Synchronized[int] = context.Value("q", 0)
        self._process = context.Process(
            target=_forwarder_process,
            args=(settings, self._stop, self._wake, self._stored, self._rejected, os.getpid()),
            name="stallwatch-forwarder",
            daemon=True,
        )

    def start(self) -> None:
        self._process.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._process.join(timeout=60)
        if self._process.is_alive():
            log.warning("forwarder did not stop in time; terminating it")
            self._process.terminate()

    def counts(self) -> tuple[int, int]:
        return self._stored.value, self._rejected.value

    @property
    def alive(self) -> bool:
        return self._process.is_alive()


def _forwarder_process(
    settings: Settings,
    stop: threading.Event,
    wake: threading.Event,
    stored: Synchronized[int],
    rejected: Synchronized[int],
    parent_pid: int,
) -> None:
    from stallwatch.stores import open_store

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    threading.Thread(target=_stop_when_orphaned, args=(parent_pid, stop, wake), daemon=True).start()
    registry = Registry.load(settings.markets)
    # A killed predecessor's forwarder may still be exiting: wait for its lock, briefly.
    spool = Spool(spool_path(settings), "forwarder", lock_timeout_s=30)
    with open_store(settings) as store:

        def publish(stats: ForwardStats) -> None:
            stored.value, rejected.value = stats.stored, stats.rejected

        forwarder = Forwarder(
            spool,
            store,
            Validator(registry, limits(settings)),
            batch_size=settings.batch_lines,
            on_batch=publish,
        )
        forwarder.run(stop, wake)
    spool.close()


def _stop_when_orphaned(parent_pid: int, stop: threading.Event, wake: threading.Event) -> None:
    # A SIGKILLed parent cannot tell us to stop; notice that we were re-parented instead.
    while not stop.wait(0.5):
        if os.getppid() != parent_pid:
            stop.set()
            wake.set()


class IngestService:
    """Owns the receiver and the forwarder of one ingest instance."""

    def __init__(self, options: MqttOptions, spool_file: Path, forwarder: ForwarderRunner) -> None:
        self.spool = Spool(spool_file, "receiver")
        self._forwarder = forwarder
        self.receiver = MqttReceiver(options, self.spool, forwarder.wake)

    @classmethod
    def in_process(
        cls,
        options: MqttOptions,
        registry: Registry,
        store: Store,
        spool_file: Path,
        *,
        limits: Limits | None = None,
        batch_size: int = 5_000,
    ) -> IngestService:
        return cls(
            options, spool_file, ThreadForwarder(spool_file, registry, store, limits, batch_size)
        )

    @property
    def forwarder(self) -> Forwarder:
        """The in-process forwarder (thread mode only)."""
        assert isinstance(self._forwarder, ThreadForwarder), "the forwarder runs in another process"
        return self._forwarder.forwarder

    def start(self) -> None:
        pending = self.spool.pending()
        if pending:
            log.info("spool holds %d messages from an earlier run; forwarding them first", pending)
        self._forwarder.start()
        self.receiver.start()

    def stop(self) -> None:
        self.receiver.stop()
        self._forwarder.stop()
        self.spool.close()

    def status(self) -> IngestStatus:
        stored, rejected = self._forwarder.counts()
        return IngestStatus(
            received=self.receiver.received,
            acknowledged=self.receiver.acknowledged,
            stored=stored,
            rejected=rejected,
            pending=self.spool.pending(),
            connected=self.receiver.connected.is_set(),
        )


def mqtt_options(settings: Settings) -> MqttOptions:
    return MqttOptions(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        client_id=settings.mqtt_client_id,
        protocol=settings.mqtt_protocol,
        username=settings.mqtt_username,
        password=settings.mqtt_password_value(),
        share_group=settings.mqtt_share_group,
        session_expiry_s=settings.mqtt_session_expiry_s,
        receive_maximum=settings.mqtt_receive_maximum,
    )


def limits(settings: Settings) -> Limits:
    return Limits(
        max_payload_bytes=settings.max_payload_bytes,
        max_future_skew=timedelta(seconds=settings.max_future_skew_s),
        max_age=timedelta(seconds=settings.max_age_s),
    )


def spool_path(settings: Settings) -> Path:
    return settings.spool_dir / f"{settings.mqtt_client_id}.spool.db"


def build_service(settings: Settings) -> IngestService:
    """``stallwatch ingest``: the receiver here, the forwarder in a child process."""
    return IngestService(mqtt_options(settings), spool_path(settings), ProcessForwarder(settings))
