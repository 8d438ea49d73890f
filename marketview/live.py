"""The live view's in-memory part: every vendor's current prices and every device's presence.

Price screens poll every few seconds, and asking the store for "the last price
per vendor and product" costs a query over thousands of series per poll. The
view answers from memory instead (:class:`LiveState`); what feeds it, the MQTT
stream ingest consumes and the store it is rebuilt from, is its adapter,
:class:`marketview.live_mqtt.LiveView`. This module does no I/O.

* **Newest wins.** A price replaces the one held only if its point in time
  (device time to the millisecond, then ``msg_id``; the store's own point
  identity, :func:`storage.records.point_time_ns`) is later. A replayed or
  redelivered old price never overwrites a newer one, and merging the store's
  rows after live ones is always safe.
* **Reads never lock.** Each market's prices are an immutable snapshot, replaced
  as a whole on every change (prices change a few times a day per vendor). A
  reader takes a reference and works on it. Board aggregates are computed when
  a snapshot is published, and once more per promotion that ends.
* **Versions for ETags.** Each market's price snapshot has a version that
  increases on every change. Whether a promotion is still running depends on
  the clock, not on a message, so :class:`ViewState` also counts the promotions
  that have ended; together with a per-process epoch that makes an ETag that is
  never reused for different content.

Device presence (last seen, online from status and Last Will) is kept per
device under a lock; it changes with every message and is read rarely. "Last
seen" is on one clock, arrival (``received_ns``), live and when rebuilt from the
store: device clocks drift, and a restart must not move a device in time.
"""

from __future__ import annotations

import bisect
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, cast

from marketview.pricing import spread
from schemas.messages import PriceSet, ScaleStatus
from schemas.registry import FixedRegistry, Market, Registry, RegistrySource
from storage.interfaces.devices import ScaleStatusRow
from storage.interfaces.prices import PriceRow, PromotionRow
from storage.records import Reading, device_time, from_ns, point_ns, to_ns


def _utc_now() -> datetime:
    return datetime.now(UTC)


# -- what callers get ------------------------------------------------------------


class UnknownName(LookupError):
    """A market, vendor or stall that the registry does not declare."""

    what = "name"

    def __init__(self, name: str, market: str | None = None) -> None:
        where = f" in market {market!r}" if market is not None else ""
        super().__init__(f"unknown {self.what} {name!r}{where}")
        self.name = name


class UnknownMarket(UnknownName):
    what = "market"


class UnknownVendor(UnknownName):
    what = "vendor"


class UnknownStall(UnknownName):
    what = "stall"


@dataclass(frozen=True, slots=True)
class ViewState:
    """Identifies what a market's price views show; equal states mean identical content."""

    epoch: str  # per LiveView: versions restart at 1 when the process does
    version: int
    expired_promotions: int

    @property
    def tag(self) -> str:
        return f"{self.epoch}-{self.version}-{self.expired_promotions}"


@dataclass(frozen=True, slots=True)
class Quote:
    """A vendor's current price for a product; ``promo`` only while the promotion runs."""

    vendor: str
    plu: str
    price_fen_per_kg: int
    promo: PromotionRow | None
    set_at: datetime

    @property
    def current_fen_per_kg(self) -> int:
        """What a customer pays now."""
        return self.price_fen_per_kg if self.promo is None else self.promo.price_fen_per_kg


@dataclass(frozen=True, slots=True)
class ProductSummary:
    """One line of the market board: a product's current price across vendors."""

    plu: str
    vendors: int
    min_fen_per_kg: int
    median_fen_per_kg: Decimal
    max_fen_per_kg: int
    promotions_active: int


@dataclass(frozen=True, slots=True)
class Board:
    market: str
    state: ViewState
    products: tuple[ProductSummary, ...]  # in the market file's product order
    #: For presentation layers to keep their rendering of this (immutable) view.
    memo: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class VendorQuotes:
    market: str
    vendor: str
    state: ViewState
    quotes: tuple[Quote, ...]  # in the market file's product order
    #: For presentation layers to keep their rendering of this (immutable) view.
    memo: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Suspensions:
    """A market's products suspended on its stall screens (暂停销售), per vendor."""

    changes: int = 0
    by_vendor: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def of(self, vendor: str) -> frozenset[str]:
        return self.by_vendor.get(vendor, frozenset())


_NO_SUSPENSIONS: Final = Suspensions()


@dataclass(frozen=True, slots=True)
class DeviceSeen:
    last_seen: datetime
    online: bool | None  # None for devices without a status channel (screens, gates, intake)


# -- the price snapshot ------------------------------------------------------------


def _point_key(row: PriceRow) -> tuple[int, int]:
    """Order of prices: the stored point's time (device ms + msg_id digits), then msg_id."""
    return point_ns(row.ts, row.msg_id), row.msg_id


class _Group:
    """The prices of one vendor, or of one product, with what is derived from them.

    Snapshots share a group until one of its prices changes, so a price change
    rebuilds one vendor's and one product's figures, not the market's. What a
    group shows depends on the clock only through its promotions' ends; the memos
    are keyed by how many of those have passed, so equal keys give equal content.
    Two threads filling the same memo entry compute equal values: a harmless race.
    """

    __slots__ = ("_quotes", "_summaries", "promo_ends_ns", "rows")

    def __init__(self, rows: Iterable[PriceRow]) -> None:
        self.rows = tuple(rows)  # in display order
        self.promo_ends_ns = tuple(
            sorted(to_ns(row.promo.until) for row in self.rows if row.promo is not None)
        )
        self._quotes: dict[int, tuple[Quote, ...]] = {}
        self._summaries: dict[int, ProductSummary] = {}

    def quotes_at(self, now_ns: int) -> tuple[Quote, ...]:
        passed = bisect.bisect_right(self.promo_ends_ns, now_ns)
        found = self._quotes.get(passed)
        if found is None:
            found = self._quotes[passed] = tuple(_quote(row, now_ns) for row in self.rows)
        return found

    def summary_at(self, plu: str, now_ns: int) -> ProductSummary:
        passed = bisect.bisect_right(self.promo_ends_ns, now_ns)
        found = self._summaries.get(passed)
        if found is None:
            found = self._summaries[passed] = _summary(plu, self.quotes_at(now_ns))
        return found


@dataclass(frozen=True, slots=True)
class _Views:
    """Everything the price endpoints show for one snapshot and one set of ended promotions."""

    board: Board
    vendors: Mapping[str, VendorQuotes]


class _MarketPrices:
    """One market's prices at one version. Never changed after publication, except memos."""

    __slots__ = ("_epoch", "_market", "_views", "by_plu", "by_vendor", "promo_ends_ns", "version")

    def __init__(
        self,
        market: Market,
        epoch: str,
        version: int,
        by_vendor: Mapping[str, _Group],
        by_plu: Mapping[str, _Group],
    ) -> None:
        self._market = market
        self._epoch = epoch
        self.version = version
        self.by_vendor = by_vendor
        self.by_plu = by_plu
        self.promo_ends_ns = tuple(sorted(e for g in by_vendor.values() for e in g.promo_ends_ns))
        self._views: dict[int, _Views] = {}

    @classmethod
    def empty(cls, market: Market, epoch: str) -> _MarketPrices:
        return cls(market, epoch, 1, {}, {})

    def over(self, market: Market) -> _MarketPrices:
        """The next version for ``market``'s new registry entry: prices of vendors who
        left and of products no longer sold are dropped."""
        vendors = {v.id for v in market.active_vendors}
        by_vendor = {
            vendor: kept
            for vendor, group in self.by_vendor.items()
            if vendor in vendors
            and (kept := _Group([r for r in group.rows if r.plu in market.products])).rows
        }
        by_plu = {
            plu: kept
            for plu, group in self.by_plu.items()
            if plu in market.products
            and (kept := _Group([r for r in group.rows if r.vendor in vendors])).rows
        }
        return _MarketPrices(market, self._epoch, self.version + 1, by_vendor, by_plu)

    def held(self, vendor: str, plu: str) -> PriceRow | None:
        group = self.by_vendor.get(vendor)
        return None if group is None else next((r for r in group.rows if r.plu == plu), None)

    def merged(self, newer: Iterable[PriceRow]) -> _MarketPrices:
        """The next version: each row replaces what is held for its (vendor, PLU)."""
        by_vendor_changes: dict[str, list[PriceRow]] = {}
        by_plu_changes: dict[str, list[PriceRow]] = {}
        for row in newer:
            by_vendor_changes.setdefault(row.vendor, []).append(row)
            by_plu_changes.setdefault(row.plu, []).append(row)
        product_order = {plu: i for i, plu in enumerate(self._market.products)}
        by_vendor, by_plu = dict(self.by_vendor), dict(self.by_plu)
        for vendor, changes in by_vendor_changes.items():
            by_vendor[vendor] = _regroup(
                self.by_vendor.get(vendor), changes, key=_plu_of, order=product_order.__getitem__
            )
        for plu, changes in by_plu_changes.items():
            by_plu[plu] = _regroup(self.by_plu.get(plu), changes, key=_vendor_of, order=str)
        return _MarketPrices(self._market, self._epoch, self.version + 1, by_vendor, by_plu)

    def views_at(self, now: datetime) -> _Views:
        now_ns = to_ns(now)
        passed = bisect.bisect_right(self.promo_ends_ns, now_ns)
        found = self._views.get(passed)
        if found is None:
            found = self._views[passed] = self._build(passed, now_ns)
        return found

    def _build(self, passed: int, now_ns: int) -> _Views:
        state = ViewState(self._epoch, self.version, passed)
        market = self._market.id
        board = Board(
            market,
            state,
            tuple(
                self.by_plu[plu].summary_at(plu, now_ns)
                for plu in self._market.products
                if plu in self.by_plu
            ),
        )
        vendors = {
            vendor: VendorQuotes(
                market, vendor, state, group.quotes_at(now_ns) if group is not None else ()
            )
            for vendor, group in (
                (v.id, self.by_vendor.get(v.id)) for v in self._market.active_vendors
            )
        }
        return _Views(board, vendors)


def _plu_of(row: PriceRow) -> str:
    return row.plu


def _vendor_of(row: PriceRow) -> str:
    return row.vendor


def _regroup(
    old: _Group | None,
    changes: Iterable[PriceRow],
    *,
    key: Callable[[PriceRow], str],
    order: Callable[[str], Any],
) -> _Group:
    rows = {key(row): row for row in (old.rows if old is not None else ())}
    rows.update((key(row), row) for row in changes)
    return _Group(sorted(rows.values(), key=lambda row: order(key(row))))


def _quote(row: PriceRow, now_ns: int) -> Quote:
    promo = row.promo if row.promo is not None and to_ns(row.promo.until) > now_ns else None
    return Quote(row.vendor, row.plu, row.price_fen_per_kg, promo, row.ts)


def _summary(plu: str, quotes: tuple[Quote, ...]) -> ProductSummary:
    prices = spread([q.current_fen_per_kg for q in quotes])
    return ProductSummary(
        plu=plu,
        vendors=prices.count,
        min_fen_per_kg=prices.low,
        median_fen_per_kg=prices.median,
        max_fen_per_kg=prices.high,
        promotions_active=sum(q.promo is not None for q in quotes),
    )


# -- device presence ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Presence:
    last_seen_ns: int
    #: the scale's newest own status: (point time, arrival, online)
    status: tuple[int, int, bool] | None = None
    #: arrival of the newest Last Will
    will_ns: int | None = None

    @property
    def online(self) -> bool | None:
        """As :func:`storage.interfaces.devices.status_in_force` decides it."""
        if self.will_ns is not None and (self.status is None or self.will_ns > self.status[1]):
            return False
        return None if self.status is None else self.status[2]


def _seen(held: _Presence | None, at_ns: int, *, will: bool) -> _Presence:
    """Presence after hearing of the device at ``at_ns``.

    A Last Will is the broker speaking, not the device: it moves "last seen"
    only for a device we had not heard from at all.
    """
    if held is None:
        return _Presence(at_ns)
    if will or at_ns <= held.last_seen_ns:
        return held
    return replace(held, last_seen_ns=at_ns)


def _with_status(held: _Presence, status_ns: int, received_ns: int, online: bool) -> _Presence:
    """A scale's own status: the newest by its own clock counts."""
    if held.status is not None and status_ns <= held.status[0]:
        return held
    return replace(held, status=(status_ns, received_ns, online))


def _with_will(held: _Presence, received_ns: int) -> _Presence:
    """A Last Will: the broker's, so the newest by arrival counts."""
    if held.will_ns is not None and received_ns <= held.will_ns:
        return held
    return replace(held, will_ns=received_ns)


class _PresenceBook:
    """Last seen and online per registered device. Written per message, read rarely: locked."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._lock = threading.Lock()
        self._devices: dict[str, dict[str, _Presence]] = {market.id: {} for market in registry}

    def use(self, registry: Registry) -> None:
        """Follow a changed registry: new markets get a book, devices it no longer has go."""
        with self._lock:
            self._devices = {
                market.id: {
                    device: presence
                    for device, presence in self._devices.get(market.id, {}).items()
                    if device in market.devices
                }
                for market in registry
            }
            self._registry = registry

    def record(
        self,
        market: str,
        device: str,
        at_ns: int,
        *,
        will: bool = False,
        status: tuple[int, bool] | None = None,
    ) -> None:
        """Hear of ``device`` at ``at_ns`` (arrival).

        ``status`` is (point time, online) of a scale status; with ``will`` it is
        the scale's Last Will, which the broker sent.
        """
        known = self._registry.markets.get(market)
        if known is None or device not in known.devices:
            return  # left over from an older registry
        with self._lock:
            devices = self._devices[market]
            presence = _seen(devices.get(device), at_ns, will=will)
            if status is not None and will:
                presence = _with_will(presence, at_ns)
            elif status is not None:
                presence = _with_status(presence, status[0], at_ns, status[1])
            devices[device] = presence

    def seen(self, market: str) -> dict[str, DeviceSeen]:
        with self._lock:
            held = dict(self._devices.get(market, {}))
        return {device: DeviceSeen(from_ns(p.last_seen_ns), p.online) for device, p in held.items()}


# -- the view's state -------------------------------------------------------------------


class LiveState:
    """Latest prices and device presence per market, in memory; see the module docstring."""

    def __init__(
        self, registry: Registry | RegistrySource, *, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        self._source = FixedRegistry(registry) if isinstance(registry, Registry) else registry
        self.registry = self._source.current()
        self._clock = clock
        self._epoch = secrets.token_hex(4)
        self._stalls = _stalls_of(self.registry)
        self._prices = {
            market.id: _MarketPrices.empty(market, self._epoch) for market in self.registry
        }
        self._presence = _PresenceBook(self.registry)
        self._prices_lock = threading.Lock()  # writers only
        #: Products suspended per market and vendor (batches locked after a failed rapid
        #: test, ``stallwatch.lockkeeper``), replaced whole; with a count of changes, which
        #: the screens' ETags carry.
        self._suspended: dict[str, Suspensions] = {}

    def follow_registry(self) -> None:
        """Take the source's registry if it changed (reads and writes call this; cheap when
        it did not): a vendor added has a screen, one who left has none, a new market starts
        empty. Each market's version moves, so screens polling with an ETag reload."""
        registry = self._source.current()
        if registry is self.registry:
            return
        with self._prices_lock:
            if registry is self.registry:
                return
            self._prices = {
                market.id: (
                    held.over(market)
                    if (held := self._prices.get(market.id)) is not None
                    else _MarketPrices.empty(market, self._epoch)
                )
                for market in registry
            }
            self._stalls = _stalls_of(registry)
            self._presence.use(registry)
            self.registry = registry

    def set_suspensions(self, market: str, by_vendor: Mapping[str, frozenset[str]]) -> None:
        """The market's suspended products per vendor, all of them (the lock keeper calls
        this after each lock or unlock it published)."""
        with self._prices_lock:
            changes = self._suspended.get(market, Suspensions()).changes + 1
            self._suspended[market] = Suspensions(
                changes, {vendor: plus for vendor, plus in by_vendor.items() if plus}
            )

    def suspensions(self, market: str) -> Suspensions:
        """The market's suspended products (none until the lock keeper told any)."""
        return self._suspended.get(market, _NO_SUSPENSIONS)

    # -- reads (no locks) ----------------------------------------------------------
    def version(self, market: str) -> int:
        return self._snapshot(market).version

    def board(self, market: str) -> Board:
        return self._snapshot(market).views_at(self._clock()).board

    def vendor_prices(self, market: str, vendor: str) -> VendorQuotes:
        found = self._snapshot(market).views_at(self._clock()).vendors.get(vendor)
        if found is None:
            raise UnknownVendor(vendor, market)
        return found

    def stall_screen(self, market: str, stall: str) -> VendorQuotes:
        snapshot = self._snapshot(market)
        vendor = self._stalls[market].get(stall)
        if vendor is None:
            raise UnknownStall(stall, market)
        return snapshot.views_at(self._clock()).vendors[vendor]

    def prices(self, market: str) -> list[PriceRow]:
        """Every price held, ordered by vendor then PLU (as :meth:`Store.latest_prices`)."""
        groups = self._snapshot(market).by_vendor.values()
        return sorted((row for g in groups for row in g.rows), key=lambda r: (r.vendor, r.plu))

    def device_seen(self, market: str) -> dict[str, DeviceSeen]:
        """Every device heard of since start (or found in the store), by device id."""
        self._snapshot(market)
        return self._presence.seen(market)

    def _snapshot(self, market: str) -> _MarketPrices:
        self.follow_registry()
        try:
            return self._prices[market]
        except KeyError:
            raise UnknownMarket(market) from None

    # -- writes ----------------------------------------------------------------------
    def merge_prices(self, market: str, rows: Iterable[PriceRow]) -> None:
        """Take in prices; each replaces the one held only if it is newer."""
        self.follow_registry()
        with self._prices_lock:
            known = self.registry.markets.get(market)
            current = self._prices.get(market)
            if known is None or current is None:
                return  # a market the registry no longer has
            active = {vendor.id for vendor in known.active_vendors}
            newer: dict[tuple[str, str], PriceRow] = {}
            for row in rows:
                if row.vendor not in active or row.plu not in known.products:
                    continue  # left over from an older registry, or a vendor who left
                key = (row.vendor, row.plu)
                held = newer.get(key) or current.held(row.vendor, row.plu)
                if held is None or _point_key(row) > _point_key(held):
                    newer[key] = row
            if not newer:
                return
            published = current.merged(newer.values())
            published.views_at(self._clock())  # aggregates on write, not per request
            self._prices[market] = published

    def apply(self, reading: Reading) -> None:
        """Take in one validated reading: a price, or news of its device."""
        message = reading.message
        if isinstance(message, PriceSet):
            self.merge_prices(reading.market, [_price_row(reading, message)])
        is_status = isinstance(message, ScaleStatus)
        self._presence.record(
            reading.market,
            reading.device,
            reading.received_ns,
            will=is_status and cast(ScaleStatus, message).will,
            status=(reading.time_ns, cast(ScaleStatus, message).online) if is_status else None,
        )

    def merge_stored(
        self,
        market: str,
        prices: list[PriceRow],
        statuses: Iterable[ScaleStatusRow],
        last_seen: Mapping[str, datetime],
    ) -> None:
        """Take in what the store holds: latest prices, scale statuses, devices' last arrivals.

        Presence is taken exactly as :meth:`apply` takes it live: last seen from
        arrival times (``last_seen`` is :meth:`Store.device_last_seen`, which also
        covers the screens of ``prices``), online from the status with the latest
        point time. A price's own time is the screen's clock, so it is not used.
        """
        self.merge_prices(market, prices)
        for device, seen in last_seen.items():
            self._presence.record(market, device, to_ns(seen))
        for status in statuses:
            self._presence.record(
                market,
                status.scale,
                to_ns(status.received),
                will=status.will,
                status=(to_ns(status.ts), status.online),
            )


def _stalls_of(registry: Registry) -> dict[str, dict[str, str]]:
    """Per market, the vendor trading at each stall now."""
    return {
        market.id: {vendor.stall: vendor.id for vendor in market.active_vendors}
        for market in registry
    }


def _price_row(reading: Reading, message: PriceSet) -> PriceRow:
    """The row the store will hold for this message (device time cut to the millisecond)."""
    promo = message.promo
    return PriceRow(
        market=reading.market,
        vendor=message.vendor,
        plu=message.plu,
        screen=reading.device,
        price_fen_per_kg=message.price_fen_per_kg,
        promo=None
        if promo is None
        else PromotionRow(promo.price_fen_per_kg, promo.text, promo.until.astimezone(UTC)),
        ts=device_time(reading.time_ns),
        msg_id=message.msg_id,
    )
