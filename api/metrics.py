"""Prometheus metrics of the API process, and the ingest figures it can see from here.

Each app has its own :class:`~prometheus_client.CollectorRegistry` (never the
global one), so several apps in one process, as in tests, do not collide.

What this process measures itself:

* ``stallwatch_api_requests_total`` and ``stallwatch_api_request_duration_seconds``
  per method, route template and status. The route is the template
  (``/api/v1/markets/{market}/devices``), never the raw path, and unknown methods
  are folded into ``OTHER``, so clients cannot create series at will;
* ``stallwatch_api_store_errors_total`` per error class;
* whether the live view is subscribed to the broker and has loaded the store.

What it reads, because ingest runs in other processes:

* ``stallwatch_spool_pending_messages`` per spool file in ``ApiOptions.spool_dir``,
  opened read-only (``MAX(seq) - MIN(seq) + 1``, the same O(log n) count ingest uses);
* ``stallwatch_device_readings_last_hour`` and ``stallwatch_device_rejects_last_hour``
  per (market, device), asked of the store at most once per ``cache_s`` seconds so
  frequent scrapes cost the store nothing extra. Divided by 3600 they are the
  ingest rates.
"""

from __future__ import annotations

import copy
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.routing import APIRoute, APIRouter
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from marketview.live_mqtt import LiveView
from storage._exceptions import StoreError
from storage.base import Store

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNMATCHED_ROUTE = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Screens poll in milliseconds; store-backed reports take up to seconds.
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ApiMetrics:
    """The API's own instruments, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("method", "route", "status")
        self.requests = Counter(
            "stallwatch_api_requests", "HTTP requests answered.", labels, registry=self.registry
        )
        self.latency = Histogram(
            "stallwatch_api_request_duration_seconds",
            "Time from receiving a request to its last response byte.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.store_errors = Counter(
            "stallwatch_api_store_errors",
            "Store failures met while answering requests, by error class.",
            ("error",),
            registry=self.registry,
        )
        # labels() takes a lock and builds a key on every call; a poll should not pay that.
        # Bounded: methods are folded and routes are templates, so the keys are few.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "OTHER"
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            labels = (method, route, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def count_store_error(self, error: StoreError) -> None:
        self.store_errors.labels(type(error).__name__).inc()

    def exposition(self, market: str | None = None) -> bytes:
        """The text format Prometheus scrapes (``CONTENT_TYPE``); only ``market``'s if given."""
        if market is None:
            return generate_latest(self.registry)
        return generate_latest(_OneMarket(self.registry, market))


class _OneMarket:
    """The registry as a token limited to one market sees it: no series of other markets.

    Series without a ``market`` label (requests, spools, the live view) are this
    process's own figures, not a market's, and are kept.
    """

    def __init__(self, registry: CollectorRegistry, market: str) -> None:
        self._registry = registry
        self._market = market

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            scoped = copy.copy(metric)
            scoped.samples = [
                sample
                for sample in metric.samples
                if sample.labels.get("market", self._market) == self._market
            ]
            yield scoped


class RouteTemplates:
    """Full path templates of routes, including the prefix their router was included with.

    FastAPI keeps an included router's routes under the router, so the matched
    route in the ASGI scope knows only its own path; the prefix is recorded here
    when ``create_app`` includes the router.
    """

    def __init__(self) -> None:
        self._by_route: dict[int, str] = {}
        self._routes: list[object] = []  # keeps the ids above from being reused

    def add_router(self, router: APIRouter, prefix: str = "") -> None:
        for route in router.routes:
            if isinstance(route, APIRoute):
                self._by_route[id(route)] = prefix + route.path
                self._routes.append(route)

    def of(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            return UNMATCHED_ROUTE
        known = self._by_route.get(id(route))
        if known is not None:
            return known
        path = getattr(route, "path", None)  # the app's own routes (/docs) carry full paths
        return path if isinstance(path, str) else UNMATCHED_ROUTE


class MetricsMiddleware:
    """Times every HTTP request and counts it by route template and status (pure ASGI)."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics, templates: RouteTemplates) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before responding

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            self.metrics.observe_request(
                scope["method"], self.templates.of(scope), status, time.perf_counter() - started
            )


# -- figures read from elsewhere ---------------------------------------------------


def spool_depths(spool_dir: Path) -> dict[str, int]:
    """Messages waiting in each ingest spool (``<client id>.spool.db``) of ``spool_dir``.

    Opened read-only: this process must never create, lock or change a spool.
    A spool that cannot be read right now is left out.
    """
    depths: dict[str, int] = {}
    for path in sorted(spool_dir.glob("*.spool.db")):
        depth = _spool_depth(path)
        if depth is not None:
            depths[path.name.removesuffix(".spool.db")] = depth
    return depths


def _spool_depth(path: Path) -> int | None:
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error as exc:
        log.debug("cannot open spool %s: %s", path, exc)
        return None
    try:
        row = conn.execute("SELECT COALESCE(MAX(seq) - MIN(seq) + 1, 0) FROM spool").fetchone()
        return int(row[0])
    except sqlite3.Error as exc:
        log.debug("cannot read spool %s: %s", path, exc)
        return None
    finally:
        conn.close()


@dataclass(frozen=True, slots=True)
class DeviceFigures:
    """Readings and rejects per (market, device) over the last hour."""

    readings: dict[tuple[str, str], int]
    rejects: dict[tuple[str, str], int]


class CachedDeviceFigures:
    """Asks the store for the last hour's figures at most once per ``ttl_s`` seconds.

    A failed attempt is cached too, so a store outage is not hammered by scrapes.
    ``None`` means the store did not answer.
    """

    def __init__(
        self,
        store: Store,
        *,
        ttl_s: float = 10.0,
        window: timedelta = timedelta(hours=1),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._window = window
        self._now = now
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._expires = float("-inf")
        self._figures: DeviceFigures | None = None

    def get(self) -> DeviceFigures | None:
        with self._lock:
            if self._monotonic() >= self._expires:
                self._figures = self._fetch()
                self._expires = self._monotonic() + self._ttl_s
            return self._figures

    def _fetch(self) -> DeviceFigures | None:
        end = self._now()
        start = end - self._window
        try:
            return DeviceFigures(
                self._store.message_counts(start, end), self._store.reject_counts(start, end)
            )
        except StoreError as exc:
            log.warning("metrics: cannot read device figures from the store: %s", exc)
            return None


class IngestCollector:
    """Collects, at scrape time, the figures of :func:`spool_depths`, the store and the view."""

    def __init__(self, spool_dir: Path, figures: CachedDeviceFigures, live: LiveView) -> None:
        self._spool_dir = spool_dir
        self._figures = figures
        self._live = live

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        for spool, depth in spool_depths(self._spool_dir).items():
            families.pending.add_metric([spool], depth)
        figures = self._figures.get()
        families.store_up.add_metric([], 0 if figures is None else 1)
        if figures is not None:
            _add_per_device(families.readings, figures.readings)
            _add_per_device(families.rejects, figures.rejects)
        families.broker.add_metric([], 1 if self._live.connected else 0)
        families.synced.add_metric([], 1 if self._live.synced else 0)
        yield from families

    def _families(self) -> _Families:
        return _Families(
            pending=GaugeMetricFamily(
                "stallwatch_spool_pending_messages",
                "Messages spooled by an ingest instance and not yet in the store.",
                labels=["spool"],
            ),
            readings=GaugeMetricFamily(
                "stallwatch_device_readings_last_hour",
                "Readings stored per device during the last hour (by point time).",
                labels=["market", "device"],
            ),
            rejects=GaugeMetricFamily(
                "stallwatch_device_rejects_last_hour",
                "Messages rejected per device during the last hour (by arrival).",
                labels=["market", "device"],
            ),
            store_up=GaugeMetricFamily(
                "stallwatch_api_device_figures_up",
                "1 if the store answered the last query for the device figures.",
            ),
            broker=GaugeMetricFamily(
                "stallwatch_api_live_broker_connected",
                "1 while the live view is subscribed to the MQTT broker.",
            ),
            synced=GaugeMetricFamily(
                "stallwatch_api_live_synced",
                "1 once the live view has loaded the store's latest state.",
            ),
        )


@dataclass(frozen=True, slots=True)
class _Families:
    pending: GaugeMetricFamily
    readings: GaugeMetricFamily
    rejects: GaugeMetricFamily
    store_up: GaugeMetricFamily
    broker: GaugeMetricFamily
    synced: GaugeMetricFamily

    def __iter__(self) -> Iterator[Metric]:
        yield from (self.pending, self.readings, self.rejects, self.store_up)
        yield from (self.broker, self.synced)


def _add_per_device(family: GaugeMetricFamily, counts: dict[tuple[str, str], int]) -> None:
    for (market, device), count in sorted(counts.items()):
        family.add_metric([market, device], count)


def install_ingest_collector(
    metrics: ApiMetrics, spool_dir: Path, store: Store, live: LiveView, *, cache_s: float = 10.0
) -> None:
    figures = CachedDeviceFigures(store, ttl_s=cache_s)
    metrics.registry.register(IngestCollector(spool_dir, figures, live))
