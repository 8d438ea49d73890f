"""What every page's queries share: where figures come from, the clock, market time."""

from __future__ import annotations

import logging
import time as time_module
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from threading import Lock
from typing import Any, TypeVar, cast

from dashboard.i18n import Lang
from ingest.validate import Validator
from marketdb.locks import LockService
from marketdb.management import Management
from marketview.live import UnknownName
from marketview.live_mqtt import LiveView
from schemas.registry import Market, Product, Registry, RegistrySource
from storage.base import Store
from storage.interfaces.traceability import UnverifiedSalesRow
from storage.outage import OutageLog

T = TypeVar("T")

#: Gates report every minute; one silent for this long during opening hours is offline.
GATE_SILENCE = timedelta(minutes=10)
#: Batches older than this are sold out or thrown away; alerts look no further back.
BATCH_ALERT_WINDOW = timedelta(days=7)
TREND_DAYS = 30
HEATMAP_WEEKS = 8
DEAD_LETTER_ROWS = 200
#: Store reads a page makes at once. Most of a page's time is the store's, which
#: serves reads in parallel (InfluxDB on every core, SQLite a connection per thread).
CONCURRENT_READS = 4


@dataclass(frozen=True)
class DashboardData:
    """Where the dashboard's figures come from, and what time it is."""

    #: Market files (fixed) or the market database (followed): :meth:`markets` reads it now.
    registry: Registry | RegistrySource
    store: Store
    live: LiveView
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    #: Where store failures are reported; the web app shares the API's.
    outage: OutageLog = field(default_factory=lambda: OutageLog(logging.getLogger("dashboard")))
    #: The market database's changes (the management page); None with market files.
    management: Management | None = None
    #: Checks batches entered at the intake form as the desk's messages are; None: no form.
    validator: Validator | None = None
    #: The batches locked after a failed rapid test (``stallwatch.lockkeeper``); None
    #: without the market database, where locks are kept.
    lock_keeper: LockService | None = None
    #: Browsers on one market share the overview's figures for this long, in seconds
    #: (they poll every 3 s); a benchmark of what one viewer waits for sets 0.
    shared_for_s: float = 2.0
    #: Runs a page's independent store reads at once (``reads.submit(...)``).
    reads: Executor = field(
        default_factory=lambda: ThreadPoolExecutor(
            CONCURRENT_READS, thread_name_prefix="dashboard-read"
        )
    )

    def markets(self) -> Mapping[str, Market]:
        """The markets as the registry has them now."""
        registry = self.registry if isinstance(self.registry, Registry) else self.registry.current()
        return registry.markets

    def market(self, market_id: str) -> Market:
        found = self.markets().get(market_id)
        if found is None:
            raise UnknownName(f"no market {market_id!r}")
        return found

    def default_market(self) -> str:
        return next(iter(self.markets()))


# -- time ------------------------------------------------------------------------------


def market_today(market: Market, now: datetime) -> date:
    return now.astimezone(market.tz).date()


def day_start(market: Market, day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=market.tz)


def is_open(market: Market, now: datetime) -> bool:
    local = now.astimezone(market.tz).time()
    return market.spec.market.opens <= local < market.spec.market.closes


def unverified_today(
    data: DashboardData, market: Market, now: datetime
) -> list[UnverifiedSalesRow]:
    """Today's sales whose trace code did not check out, per vendor, scale and status.

    One store call (``Store.unverified_sales``), cheap: such sales are few.
    """
    return data.store.unverified_sales(market.id, day_start(market, market_today(market, now)), now)


def unverified_counts(rows: Sequence[UnverifiedSalesRow], by: str) -> dict[str, int]:
    """Unverified sales per ``by`` (``"vendor"`` or ``"scale"``), all statuses together."""
    counts: dict[str, int] = {}
    for row in rows:
        key = getattr(row, by)
        counts[key] = counts.get(key, 0) + row.sales
    return counts


def product_name(product: Product, lang: Lang) -> str:
    return product.name_zh if lang is Lang.ZH else product.name_en


def local_time_text(moment: datetime | None, market: Market) -> str:
    if moment is None:
        return ""
    return moment.astimezone(market.tz).strftime("%Y-%m-%d %H:%M:%S")


class Recent:
    """The latest answer per key, reused for ``ttl_s`` seconds.

    Every open overview polls every few seconds, and the answer is the same for
    every browser on a market: with this, ten managers' screens cost one query
    per ``ttl_s``, not ten. Shorter than the poll interval, so one browser alone
    always gets fresh figures. Two misses at the same moment may both compute.
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time_module.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = Lock()
        self._held: dict[Hashable, tuple[float, Any]] = {}

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        now = self._clock()
        with self._lock:
            held = self._held.get(key)
        if held is not None and now - held[0] < self._ttl_s:
            return cast(T, held[1])
        value = compute()
        with self._lock:
            self._held[key] = (now, value)
        return value
