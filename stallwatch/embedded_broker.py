"""An in-process MQTT broker (amqtt) for ``stallwatch demo``: no server to install.

amqtt speaks MQTT 3.1.1 only and keeps sessions in memory, so it is for the
demo; production uses Mosquitto (see docs/deployment.md). Measured here at
about 5–9k messages/s, plenty for a simulated market.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from amqtt.broker import Broker

from stallwatch.localservices import free_port

log = logging.getLogger(__name__)


class _SnapshotIteration(dict[str, Any]):
    """amqtt's table of subscriptions, iterated over a copy.

    amqtt 0.12 walks its table with an ``await`` in the loop body, when a client connects
    (its retained messages) and for every message it forwards; another client's
    SUBSCRIBE in between raised "dictionary changed size during iteration", which
    dropped the connecting client (the demo's hundred devices connecting at once, with
    the lock keeper's retained commands, lost a third of their connections at start).
    Walking a copy sees the table as it was when the walk began, as one pass should.
    """

    def __iter__(self) -> Iterator[str]:
        return iter(list(dict.keys(self)))

    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        return list(dict.items(self))


class EmbeddedBroker:
    """Runs amqtt on its own event loop in a daemon thread, bound to 127.0.0.1."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="amqtt", daemon=True)
        self._broker: Broker | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

    async def _start(self) -> None:
        self._broker = Broker(self._config(), loop=self._loop)
        self._broker._subscriptions = _SnapshotIteration()  # see _SnapshotIteration
        await self._broker.start()

    async def _stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()

    def _call(self, coro: Any, timeout: float) -> None:
        future: Future[None] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        future.result(timeout)

    def start(self) -> None:
        # amqtt logs every connection at INFO; the demo's own output is what matters.
        for noisy in ("amqtt", "transitions"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self._thread.start()
        self._call(self._start(), timeout=15)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._call(self._stop(), timeout=15)
        except TimeoutError:
            # amqtt's shutdown can wait forever on a client caught mid-connect (a Ctrl-C
            # as the devices connect). The broker lives in this process and keeps nothing
            # on disk: stopping its loop ends it as completely.
            log.warning("the embedded broker did not shut down within 15 s; stopping it")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
