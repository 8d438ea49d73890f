"""One ingest instance: MQTT receiver → spool → forwarder → store."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from ingest.forwarder import Forwarder
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


class IngestService:
    """Owns the threads of one ingest instance; the store is opened and closed by the caller."""

    def __init__(self, options: MqttOptions, registry: Registry, store: Store, spool_path: Path, *,
                 limits: Limits | None = None, batch_size: int = 5_000) -> None:
        self.spool = Spool(spool_path)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.forwarder = Forwarder(self.spool, store, Validator(registry, limits), batch_size=batch_size)
        self.receiver = MqttReceiver(options, self.spool, self._wake.set)
        self._forward_thread = threading.Thread(
            target=self.forwarder.run, args=(self._stop, self._wake), name="forwarder", daemon=True
        )

    def start(self) -> None:
        pending = self.spool.pending()
        if pending:
            log.info("spool holds %d messages from an earlier run; forwarding them first", pending)
        self._forward_thread.start()
        self.receiver.start()

    def stop(self) -> None:
        self.receiver.stop()
        self._stop.set()
        self._wake.set()
        self._forward_thread.join(timeout=60)
        self.spool.close()

    def status(self) -> IngestStatus:
        stats = self.forwarder.stats
        return IngestStatus(
            received=self.receiver.received,
            acknowledged=self.receiver.acknowledged,
            stored=stats.stored,
            rejected=stats.rejected,
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


def build_service(settings: Settings, registry: Registry, store: Store) -> IngestService:
    return IngestService(
        mqtt_options(settings), registry, store, spool_path(settings),
        limits=limits(settings), batch_size=settings.batch_lines,
    )
