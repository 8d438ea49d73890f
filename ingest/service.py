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
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from ingest.forwarder import Forwarder, ForwardStats, Memory, RetentionSchedule
from ingest.mqtt import MqttOptions, MqttReceiver
from ingest.spool import Spool
from ingest.validate import Limits, Validator
from schemas.registry import FixedRegistry, Registry, RegistrySource
from storage.base import Store
from storage.spec import StoreSpec, open_store

log = logging.getLogger(__name__)


class _SharedInt(Protocol):
    value: int


@dataclass(frozen=True, slots=True)
class IngestStatus:
    received: int
    acknowledged: int
    stored: int
    rejected: int
    pending: int
    connected: bool


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """One ingest instance, as the composition root configures it.

    Plain values only: the forwarder's child process gets a pickled copy and opens
    its own store from ``store``.
    """

    markets: tuple[Path, ...]
    #: Without market files, the market database the forwarder follows (its URL).
    market_database: str | None
    mqtt: MqttOptions
    spool_file: Path
    store: StoreSpec
    limits: Limits
    memory: Memory
    batch_lines: int
    retention: RetentionSchedule


class ForwarderRunner(Protocol):
    def start(self) -> None: ...
    def wake(self) -> None: ...
    def stop(self) -> None: ...
    def supervise(self) -> None: ...
    def counts(self) -> tuple[int, int]:
        """Readings stored and messages rejected so far."""
        ...


class ThreadForwarder:
    """The forwarder as a thread of this process, writing to a store object we were given."""

    def __init__(
        self,
        spool_path: Path,
        registry: Registry | RegistrySource,
        store: Store,
        limits: Limits | None,
        batch_size: int,
        memory: Memory,
        retention: RetentionSchedule | None = None,
    ) -> None:
        self._spool = Spool(spool_path, "forwarder")
        self.forwarder = Forwarder(
            self._spool,
            store,
            Validator(registry, limits),
            batch_size=batch_size,
            memory=memory,
            retention=retention,
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

    def supervise(self) -> None:
        if not self._thread.is_alive() and not self._stop.is_set():
            log.error("forwarder thread died; restarting it")
            self._thread = threading.Thread(
                target=self.forwarder.run,
                args=(self._stop, self._wake),
                name="forwarder",
                daemon=True,
            )
            self._thread.start()


class ProcessForwarder:
    """The forwarder as a child process that opens its own store from the options.

    Nothing here takes a lock shared with the child: a child killed while holding
    one (a ``multiprocessing.Event``'s, a synchronized ``Value``'s) would hang the
    receiver. So the child polls the spool when idle instead of being woken, is
    stopped with SIGTERM, and reports its counts through lock-free shared integers.
    """

    def __init__(self, options: IngestOptions, configure_logging: Callable[[], None]) -> None:
        """``configure_logging`` runs first in each child (a module-level function: pickled)."""
        self._context = multiprocessing.get_context("spawn")
        self._options = options
        self._configure_logging = configure_logging
        self._stored = self._context.Value("q", 0, lock=False)
        self._rejected = self._context.Value("q", 0, lock=False)
        self._stopping = False
        self._process = self._new_process()

    def _new_process(self) -> multiprocessing.process.BaseProcess:
        return self._context.Process(
            target=_forwarder_process,
            args=(
                self._options,
                self._configure_logging,
                self._stored,
                self._rejected,
                os.getpid(),
            ),
            name="stallwatch-forwarder",
            daemon=True,
        )

    def start(self) -> None:
        self._process.start()

    def wake(self) -> None:
        """The child polls the spool every few tens of milliseconds when idle."""

    def stop(self) -> None:
        self._stopping = True
        self._process.terminate()  # SIGTERM: the child finishes its batch and exits
        self._process.join(timeout=60)
        if self._process.is_alive():
            log.warning("forwarder did not stop in time; killing it")
            self._process.kill()

    def counts(self) -> tuple[int, int]:
        return self._stored.value, self._rejected.value

    def supervise(self) -> None:
        """Restart the forwarder process if it died; the spool keeps what it had not sent."""
        if self._stopping or self._process.is_alive():
            return
        log.error("forwarder process exited with %s; restarting it", self._process.exitcode)
        self._process = self._new_process()
        self._process.start()


def _forwarder_process(
    options: IngestOptions,
    configure_logging: Callable[[], None],
    stored: _SharedInt,
    rejected: _SharedInt,
    parent_pid: int,
) -> None:
    configure_logging()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    threading.Thread(target=_stop_when_orphaned, args=(parent_pid, stop), daemon=True).start()
    registry = _registry_source(options)
    # A killed predecessor may still be exiting: wait for its lock, briefly.
    spool = Spool(options.spool_file, "forwarder", lock_timeout_s=30)
    # Counts are cumulative across restarts of this process.
    base_stored, base_rejected = stored.value, rejected.value

    def publish(stats: ForwardStats) -> None:
        stored.value = base_stored + stats.stored
        rejected.value = base_rejected + stats.rejected

    with open_store(options.store) as store:
        forwarder = Forwarder(
            spool,
            store,
            Validator(registry, options.limits),
            batch_size=options.batch_lines,
            on_batch=publish,
            memory=options.memory,
            # On the market database, each pass takes the markets' policies as they are then.
            retention=replace(options.retention, follow=registry)
            if options.market_database is not None and not options.markets
            else options.retention,
        )
        forwarder.run(stop, threading.Event(), idle_poll_s=0.05)
    spool.close()


def _registry_source(options: IngestOptions) -> RegistrySource:
    """The market files, fixed; or the market database, followed while ingest runs."""
    if options.markets or options.market_database is None:
        return FixedRegistry(Registry.load(options.markets))
    from marketdb.database import open_database, session_factory
    from marketdb.follow import RegistryFollower

    return RegistryFollower(session_factory(open_database(options.market_database)))


def _stop_when_orphaned(parent_pid: int, stop: threading.Event) -> None:
    # A SIGKILLed parent cannot tell us to stop; notice that we were re-parented instead.
    while not stop.wait(0.5):
        if os.getppid() != parent_pid:
            stop.set()


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
        registry: Registry | RegistrySource,
        store: Store,
        spool_file: Path,
        *,
        limits: Limits | None = None,
        batch_size: int = 5_000,
        retention: RetentionSchedule | None = None,
    ) -> IngestService:
        """Ingest on a thread of this process; no retention passes unless ``retention`` says."""
        remember = Memory(
            msg_ids=(limits or Limits()).max_age,
            redeliveries=options.session_expiry,
        )
        forwarder = ThreadForwarder(
            spool_file, registry, store, limits, batch_size, remember, retention
        )
        return cls(options, spool_file, forwarder)

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

    def supervise(self) -> None:
        """Call now and then: brings back a forwarder that died."""
        self._forwarder.supervise()

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


def build_service(
    options: IngestOptions, *, configure_logging: Callable[[], None]
) -> IngestService:
    """``stallwatch ingest``: the receiver here, the forwarder in a child process."""
    return IngestService(
        options.mqtt, options.spool_file, ProcessForwarder(options, configure_logging)
    )
