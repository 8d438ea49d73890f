"""What the dashboard's pages show, asked of the store and the live view and shaped with pandas.

Every function takes a :class:`DashboardData` and returns plain data (frames or
frozen dataclasses); none builds a component. Callbacks call one or two of these
and hand the result to a pure figure builder (:mod:`dashboard.figures`) or a grid.

Cost at scale is the point of this module: the dashboard runs all day on a
year-old store of hundreds of vendors, so nothing here reads more than a day of
raw sales. Longer ranges come from the store's rollups (``sales_by_hour``,
``footfall_hourly``, ``batch_balances``), and current prices from the live view,
which never touches the store.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from threading import Lock
from typing import Any

import pandas as pd

from api import analytics
from api.live import LiveView, UnknownName
from dashboard.i18n import Lang, category_name, device_kind_name, money_text, price_text
from schemas.messages import DeviceKind
from schemas.registry import Market, Registry
from storage.base import BatchRow, SaleRow, ScaleStatusRow, Store

#: Gates report every minute; one silent for this long during opening hours is offline.
GATE_SILENCE = timedelta(minutes=10)
#: Batches older than this are sold out or thrown away; alerts look no further back.
BATCH_ALERT_WINDOW = timedelta(days=7)
TREND_DAYS = 30
HEATMAP_WEEKS = 8
DEAD_LETTER_ROWS = 200


@dataclass(frozen=True)
class DashboardData:
    """Where the dashboard's figures come from, and what time it is."""

    registry: Registry
    store: Store
    live: LiveView
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def market(self, market_id: str) -> Market:
        found = self.registry.markets.get(market_id)
        if found is None:
            raise UnknownName(f"no market {market_id!r}")
        return found

    def default_market(self) -> str:
        return next(iter(self.registry.markets))


# -- time ------------------------------------------------------------------------------


def market_today(market: Market, now: datetime) -> date:
    return now.astimezone(market.tz).date()


def day_start(market: Market, day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=market.tz)


def is_open(market: Market, now: datetime) -> bool:
    local = now.astimezone(market.tz).time()
    return market.spec.market.opens <= local < market.spec.market.closes


# -- overview --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Overview:
    footfall_today: int
    footfall_last_week: int  # the same weekday a week ago, up to the same time of day
    occupancy: int
    turnover_fen: int
    transactions: int
    vendors_online: int
    vendors: int


def overview(data: DashboardData, market_id: str) -> Overview:
    market = data.market(market_id)
    now = data.now()
    start = day_start(market, market_today(market, now))
    today = analytics.footfall_frame(data.store.footfall_hourly(market.id, start, now))
    week = timedelta(days=7)
    last_week = analytics.footfall_frame(
        data.store.footfall_hourly(market.id, start - week, now - week)
    )
    sales = analytics.sales_totals(
        analytics.sales_frame(data.store.sales_summary(market.id, start, now))
    )
    online, total = vendors_online(data, market)
    return Overview(
        footfall_today=analytics.footfall_totals(today)[0],
        footfall_last_week=analytics.footfall_totals(last_week)[0],
        occupancy=analytics.occupancy(today),
        turnover_fen=sales.turnover_fen,
        transactions=sales.transactions,
        vendors_online=online,
        vendors=total,
    )


def vendors_online(data: DashboardData, market: Market) -> tuple[int, int]:
    """Vendors with at least one scale online now, and vendors with a scale at all."""
    seen = data.live.device_seen(market.id)
    with_scales = [v for v in market.spec.vendors if v.scales]
    online = sum(
        1
        for vendor in with_scales
        if any(seen.get(scale) is not None and seen[scale].online for scale in vendor.scales)
    )
    return online, len(with_scales)


ALERT_COLUMNS = ["kind", "subject", "detail", "since"]


def alerts(data: DashboardData, market_id: str) -> pd.DataFrame:
    """Open alerts, most urgent kind first: ``kind, subject, detail, since``.

    ``kind`` is one of ``failed_on_sale``, ``oversold``, ``offline``, ``rejects``;
    ``since`` is a UTC timestamp or None.
    """
    market = data.market(market_id)
    now = data.now()
    rows: list[dict[str, Any]] = []
    rows += _batch_alerts(data, market, now)
    if is_open(market, now):
        rows += _offline_alerts(data, market, now)
    rows += _reject_alerts(data, market, now)
    return pd.DataFrame(rows, columns=ALERT_COLUMNS)


def _batch_alerts(data: DashboardData, market: Market, now: datetime) -> list[dict[str, Any]]:
    rows = []
    for balance in data.store.batch_balances(market.id, now - BATCH_ALERT_WINDOW, now):
        if not balance.rapid_test_passed and balance.sales > 0:
            rows.append(
                _alert(
                    "failed_on_sale",
                    balance.trace_code,
                    f"{balance.vendor} {balance.plu}: {balance.sales}",
                    balance.last_sale,
                )
            )
        if balance.sold_g > balance.quantity_g:
            rows.append(
                _alert(
                    "oversold",
                    balance.trace_code,
                    f"{balance.vendor} {balance.plu}: {balance.sold_g} g / {balance.quantity_g} g",
                    balance.last_sale,
                )
            )
    return rows


def _offline_alerts(data: DashboardData, market: Market, now: datetime) -> list[dict[str, Any]]:
    seen = data.live.device_seen(market.id)
    rows = []
    for device in market.devices.values():
        presence = seen.get(device.id)
        if device.kind is DeviceKind.SCALE:
            if presence is None or presence.online is False:
                since = None if presence is None else presence.last_seen
                rows.append(_alert("offline", device.id, device.vendor or "", since))
        elif device.kind is DeviceKind.GATE and (
            presence is None or now - presence.last_seen > GATE_SILENCE
        ):
            rows.append(
                _alert("offline", device.id, "", None if presence is None else presence.last_seen)
            )
    return rows


def _reject_alerts(data: DashboardData, market: Market, now: datetime) -> list[dict[str, Any]]:
    start = day_start(market, market_today(market, now))
    counts = data.store.reject_counts(start, now)
    return [
        _alert("rejects", device, str(count), None)
        for (market_id, device), count in sorted(counts.items())
        if market_id == market.id and count > 0
    ]


def _alert(kind: str, subject: str, detail: str, since: datetime | None) -> dict[str, Any]:
    return {"kind": kind, "subject": subject, "detail": detail, "since": since}


def turnover_by_day(data: DashboardData, market_id: str, days: int = TREND_DAYS) -> pd.DataFrame:
    """``day, turnover_fen, transactions`` for the last ``days`` local days, today included.

    From the store's hourly sale rollup: 30 days are ~400 rows, not ~2 M sales.
    Days without sales are present with zeros, so a gap in trade shows as a gap.
    """
    market = data.market(market_id)
    now = data.now()
    today = market_today(market, now)
    first = today - timedelta(days=days - 1)
    hours = data.store.sales_by_hour(market.id, day_start(market, first), now)
    frame = pd.DataFrame(
        {
            "day": [h.hour.astimezone(market.tz).date() for h in hours],
            "turnover_fen": pd.Series([h.turnover_fen for h in hours], dtype="int64"),
            "transactions": pd.Series([h.transactions for h in hours], dtype="int64"),
        }
    )
    summed = frame.groupby("day")[["turnover_fen", "transactions"]].sum()
    every_day = [first + timedelta(days=i) for i in range(days)]
    summed = summed.reindex(every_day, fill_value=0).astype("int64")
    return summed.rename_axis("day").reset_index()


# -- live prices -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoardRows:
    """The board as grid rows, and the version of the live view it was built from."""

    tag: str
    rows: tuple[dict[str, Any], ...]

    def by_plu(self) -> dict[str, dict[str, Any]]:
        return {row["plu"]: row for row in self.rows}


@dataclass(frozen=True, slots=True)
class BoardUpdate:
    """What a browser showing board version ``since`` needs to show the current one.

    Either ``rows`` (everything, when the browser's version is unknown here) or a
    grid row transaction (``add``/``update``/``remove``) with only what changed;
    both None when nothing changed.
    """

    tag: str
    rows: list[dict[str, Any]] | None
    transaction: dict[str, list[dict[str, Any]]] | None


class BoardCache:
    """Recent board versions as grid rows, so each poll sends only the rows that changed.

    The live view versions its board (:class:`api.live.ViewState`). A browser
    tells which version its grid shows; if that version is still held here the
    answer is a row transaction, otherwise the whole board. Versions are few per
    minute, so a handful per (market, language) covers every polling browser.
    """

    def __init__(self, keep: int = 8) -> None:
        self._keep = keep
        self._lock = Lock()
        self._held: dict[tuple[str, Lang], list[BoardRows]] = {}

    def update(
        self, data: DashboardData, market_id: str, lang: Lang, since: str | None
    ) -> BoardUpdate:
        current = self._current(data, market_id, lang)
        if since == current.tag:
            return BoardUpdate(current.tag, None, None)
        previous = self._find(market_id, lang, since)
        if previous is None:
            return BoardUpdate(current.tag, list(current.rows), None)
        return BoardUpdate(current.tag, None, row_transaction(previous, current))

    def _current(self, data: DashboardData, market_id: str, lang: Lang) -> BoardRows:
        market = data.market(market_id)
        board = data.live.board(market.id)
        tag = board.state.tag
        with self._lock:
            held = self._held.setdefault((market.id, lang), [])
            for rows in held:
                if rows.tag == tag:
                    return rows
        built = BoardRows(tag, tuple(board_rows(market, board.products, lang)))
        with self._lock:
            held.append(built)
            del held[: -self._keep]
        return built

    def _find(self, market_id: str, lang: Lang, tag: str | None) -> BoardRows | None:
        with self._lock:
            for rows in self._held.get((market_id, lang), []):
                if rows.tag == tag:
                    return rows
        return None


def row_transaction(old: BoardRows, new: BoardRows) -> dict[str, list[dict[str, Any]]]:
    """The grid transaction turning ``old`` rows into ``new`` ones (rows keyed by PLU)."""
    before, after = old.by_plu(), new.by_plu()
    return {
        "add": [row for plu, row in after.items() if plu not in before],
        "update": [row for plu, row in after.items() if plu in before and before[plu] != row],
        "remove": [{"plu": plu} for plu in before if plu not in after],
    }


def board_rows(market: Market, products: Sequence[Any], lang: Lang) -> list[dict[str, Any]]:
    """Grid rows of the board's product summaries (:class:`api.live.ProductSummary`).

    Sorting uses the integer fen fields; the ``*_text`` fields are what a cell shows.
    """
    rows = []
    for summary in products:
        product = market.products.get(summary.plu)
        name = summary.plu if product is None else _product_name(product, lang)
        rows.append(
            {
                "plu": summary.plu,
                "product": name,
                "category": "" if product is None else category_name(product.category.value, lang),
                "min_fen": summary.min_fen_per_kg,
                "min_text": price_text(summary.min_fen_per_kg, lang),
                "median_fen": str(summary.median_fen_per_kg),
                "median_text": price_text(summary.median_fen_per_kg, lang),
                "max_fen": summary.max_fen_per_kg,
                "max_text": price_text(summary.max_fen_per_kg, lang),
                "vendors": summary.vendors,
                "promotions": summary.promotions_active,
            }
        )
    return rows


def _product_name(product: Any, lang: Lang) -> str:
    return str(product.name_zh if lang is Lang.ZH else product.name_en)


def product_label(data: DashboardData, market_id: str, plu: str, lang: Lang) -> str:
    product = data.market(market_id).products.get(plu)
    return plu if product is None else _product_name(product, lang)


def price_history(data: DashboardData, market_id: str, plu: str, days: int) -> pd.DataFrame:
    """Regular prices in force per vendor and the market median: ``bucket_start, series, fen``.

    Hourly buckets for up to a week, daily beyond. ``series`` is a vendor id or
    ``MEDIAN``; ``fen`` is fen per kg as a Decimal (a median may be half a fen).
    """
    market = data.market(market_id)
    now = data.now()
    last = market_today(market, now)
    first = last - timedelta(days=days - 1)
    bucket = analytics.Bucket.HOUR if days <= 7 else analytics.Bucket.DAY
    starts = analytics.bucket_starts(first, last, bucket, market.tz)
    if now <= starts[0]:
        return _history_frame([])
    baseline = data.store.prices_before(market.id, starts[0], plu=plu)
    changes = data.store.price_history(market.id, starts[0], now, plu=plu)
    in_force = analytics.prices_in_force(
        analytics.price_changes([*baseline, *changes]), starts, now
    )
    records: list[tuple[datetime, str, Decimal]] = []
    for vendor, points in analytics.vendor_series(in_force).items():
        records += [(p.bucket_start, vendor, Decimal(p.price_fen_per_kg)) for p in points]
    records += [
        (p.bucket_start, MEDIAN, p.median_fen_per_kg) for p in analytics.market_median(in_force)
    ]
    return _history_frame(records)


MEDIAN = "MEDIAN"


def _history_frame(records: list[tuple[datetime, str, Decimal]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "bucket_start": pd.Series([r[0] for r in records], dtype=object),
            "series": pd.Series([r[1] for r in records], dtype=object),
            "fen": pd.Series([r[2] for r in records], dtype=object),
        }
    )


def price_spread(data: DashboardData, market_id: str, plu: str) -> pd.DataFrame:
    """What each vendor charges for ``plu`` now: ``vendor, stall, fen, promo`` by price."""
    market = data.market(market_id)
    records = []
    for vendor in market.spec.vendors:
        try:
            quotes = data.live.vendor_prices(market.id, vendor.id).quotes
        except UnknownName:
            continue  # a vendor without any price yet
        for quote in quotes:
            if quote.plu == plu:
                records.append(
                    (vendor.name, vendor.stall, quote.current_fen_per_kg, quote.promo is not None)
                )
    frame = pd.DataFrame(records, columns=["vendor", "stall", "fen", "promo"])
    return frame.astype({"fen": "int64", "promo": bool}).sort_values("fen", ignore_index=True)


# -- traceability ----------------------------------------------------------------------

_RECEIPT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_.-]{0,31})\s*[:/#]\s*([0-9]{1,19})\s*$")
_TRACE_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{3,63}$")


@dataclass(frozen=True, slots=True)
class TraceQuery:
    trace_code: str | None = None
    scale: str | None = None
    msg_id: int | None = None


def parse_trace_query(text: str | None) -> TraceQuery | None:
    """A trace code, or a receipt as ``scale:number`` (also ``scale/number``); None if neither."""
    if not text:
        return None
    receipt = _RECEIPT.match(text)
    if receipt is not None and int(receipt.group(2)) < 2**63:
        return TraceQuery(scale=receipt.group(1), msg_id=int(receipt.group(2)))
    code = text.strip()
    return TraceQuery(trace_code=code) if _TRACE_CODE.match(code) else None


@dataclass(frozen=True, slots=True)
class TraceChain:
    """A batch, every sale of it in time order, and the receipt's sale when searched by one."""

    batch: BatchRow
    sales: tuple[SaleRow, ...]
    receipt: SaleRow | None

    @property
    def balance(self) -> analytics.BatchBalance:
        return analytics.batch_balance(self.batch.quantity_g, self.sales)


def trace_chain(data: DashboardData, market_id: str, query: TraceQuery) -> TraceChain | None:
    market = data.market(market_id)
    receipt = None
    code = query.trace_code
    if query.scale is not None and query.msg_id is not None:
        receipt = data.store.sale_by_receipt(market.id, query.scale, query.msg_id)
        if receipt is None:
            return None
        code = receipt.trace_code
    if code is None:
        return None
    batch = data.store.batch(market.id, code)
    if batch is None:
        return None
    sales = sorted(data.store.sales_of_batch(market.id, code), key=lambda s: (s.ts, s.msg_id))
    return TraceChain(batch, tuple(sales), receipt)


def sales_frame(sales: Sequence[SaleRow], tz: tzinfo) -> pd.DataFrame:
    """Sales as ``ts, scale, vendor, msg_id, weight_g, total_fen, sold_g`` (sold_g cumulative).

    ``ts`` is in the market's time zone: charts show the wall-clock time of the market.
    """
    frame = pd.DataFrame(
        {
            "ts": pd.Series([s.ts.astimezone(tz) for s in sales], dtype=object),
            "scale": pd.Series([s.scale for s in sales], dtype=object),
            "vendor": pd.Series([s.vendor for s in sales], dtype=object),
            "msg_id": pd.Series([s.msg_id for s in sales], dtype="int64"),
            "weight_g": pd.Series([s.weight_g for s in sales], dtype="int64"),
            "total_fen": pd.Series([s.total_fen for s in sales], dtype="int64"),
        }
    )
    frame["sold_g"] = frame["weight_g"].cumsum()
    return frame


# -- footfall --------------------------------------------------------------------------


def footfall_day(data: DashboardData, market_id: str, day: date) -> pd.DataFrame:
    """``gate, hour, people_in, people_out`` for one local day (hours as local datetimes)."""
    market = data.market(market_id)
    start = day_start(market, day)
    end = min(start + timedelta(days=1), data.now())
    if end <= start:
        return analytics.footfall_frame([])
    frame = analytics.footfall_frame(data.store.footfall_hourly(market.id, start, end))
    return frame[frame["hour"].map(lambda h: h.astimezone(market.tz).date() == day)]


def footfall_heatmap(
    data: DashboardData, market_id: str, weeks: int = HEATMAP_WEEKS
) -> pd.DataFrame:
    """Mean people in per (weekday, local hour) over the last ``weeks`` weeks, today excluded.

    Weekday 0 is Monday. Each weekday's mean is over the dates of that weekday
    with any footfall: a store younger than ``weeks`` weeks is not diluted by
    days before it existed, and within a counted day a quiet hour is a zero.
    """
    market = data.market(market_id)
    today = market_today(market, data.now())
    first = today - timedelta(days=7 * weeks)
    rows = data.store.footfall_hourly(market.id, day_start(market, first), day_start(market, today))
    frame = analytics.footfall_frame(rows)
    local = frame["hour"].map(lambda h: h.astimezone(market.tz))
    shaped = pd.DataFrame(
        {
            "date": local.map(lambda h: h.date()),
            "weekday": local.map(lambda h: h.weekday()).astype("int64"),
            "hour": local.map(lambda h: h.hour).astype("int64"),
            "people_in": frame["people_in"],
        }
    )
    days = shaped.groupby("weekday")["date"].nunique()
    summed = shaped.groupby(["weekday", "hour"])["people_in"].sum().rename("total").reset_index()
    summed["mean_in"] = (summed["total"] / summed["weekday"].map(days)).round(1)
    return summed[["weekday", "hour", "mean_in"]]


def footfall_daily(data: DashboardData, market_id: str, days: int = TREND_DAYS) -> pd.DataFrame:
    """``day, people_in`` for the last ``days`` local days, today so far included; zeros kept."""
    market = data.market(market_id)
    now = data.now()
    today = market_today(market, now)
    first = today - timedelta(days=days - 1)
    frame = analytics.footfall_frame(
        data.store.footfall_hourly(market.id, day_start(market, first), now)
    )
    day = frame["hour"].map(lambda h: h.astimezone(market.tz).date())
    summed = frame.groupby(day)["people_in"].sum()
    every_day = [first + timedelta(days=i) for i in range(days)]
    summed = summed.reindex(every_day, fill_value=0).astype("int64")
    return summed.rename_axis("day").reset_index()


# -- vendors & devices -------------------------------------------------------------------


def vendor_table(data: DashboardData, market_id: str, lang: Lang) -> list[dict[str, Any]]:
    """One row per vendor: today's turnover, transactions, average ticket and current prices."""
    market = data.market(market_id)
    now = data.now()
    start = day_start(market, market_today(market, now))
    frame = analytics.sales_frame(data.store.sales_summary(market.id, start, now))
    figures = {f.key: f for f in analytics.sales_per_vendor(frame)}
    rows = []
    for vendor in market.spec.vendors:
        sold = figures.get(vendor.id)
        rows.append(
            {
                "vendor": vendor.id,
                "name": vendor.name,
                "stall": vendor.stall,
                "turnover_fen": 0 if sold is None else sold.turnover_fen,
                "turnover_text": money_text(0 if sold is None else sold.turnover_fen),
                "transactions": 0 if sold is None else sold.transactions,
                "avg_ticket_text": (
                    ""
                    if sold is None or sold.average_ticket_fen is None
                    else money_text(sold.average_ticket_fen)
                ),
                "prices": _current_prices_text(data, market, vendor.id, lang),
            }
        )
    return rows


def _current_prices_text(data: DashboardData, market: Market, vendor: str, lang: Lang) -> str:
    try:
        quotes = data.live.vendor_prices(market.id, vendor).quotes
    except UnknownName:
        return ""
    parts = []
    for quote in quotes:
        product = market.products.get(quote.plu)
        name = quote.plu if product is None else _product_name(product, lang)
        parts.append(f"{name} {price_text(quote.current_fen_per_kg, lang)}")
    return "，".join(parts) if lang is Lang.ZH else ", ".join(parts)


def device_table(data: DashboardData, market_id: str, lang: Lang) -> list[dict[str, Any]]:
    """Every registered device: kind, owner, online state, last seen, today's messages/rejects."""
    market = data.market(market_id)
    now = data.now()
    start = day_start(market, market_today(market, now))
    seen = data.live.device_seen(market.id)
    statuses: dict[str, ScaleStatusRow] = {s.scale: s for s in data.store.scale_status(market.id)}
    messages = data.store.message_counts(start, now)
    rejects = data.store.reject_counts(start, now)
    rows = []
    for device in market.devices.values():
        presence = seen.get(device.id)
        status = statuses.get(device.id)
        online = presence.online if presence is not None else None
        if online is None and status is not None:
            online = status.online
        last_seen = presence.last_seen if presence is not None else None
        rows.append(
            {
                "device": device.id,
                "kind": device_kind_name(device.kind.value, lang),
                "vendor": device.vendor or "",
                "status": _status_key(device.kind, online, last_seen, now),
                "last_seen": local_time_text(last_seen, market),
                "messages": messages.get((market.id, device.id), 0),
                "rejects": rejects.get((market.id, device.id), 0),
            }
        )
    return rows


def _status_key(
    kind: DeviceKind, online: bool | None, last_seen: datetime | None, now: datetime
) -> str:
    if kind is DeviceKind.SCALE and online is not None:
        return "online" if online else "offline"
    if kind is DeviceKind.GATE and last_seen is not None:
        return "online" if now - last_seen <= GATE_SILENCE else "silent"
    return "unknown" if last_seen is None else "online"


def local_time_text(moment: datetime | None, market: Market) -> str:
    if moment is None:
        return ""
    return moment.astimezone(market.tz).strftime("%Y-%m-%d %H:%M:%S")


def dead_letters(data: DashboardData, market_id: str) -> list[dict[str, Any]]:
    """Today's rejected messages for this market, newest first (at most DEAD_LETTER_ROWS)."""
    market = data.market(market_id)
    now = data.now()
    start = day_start(market, market_today(market, now))
    letters = data.store.dead_letters(start, now, market=market.id, limit=DEAD_LETTER_ROWS)
    return [
        {
            "received": local_time_text(ns_to_utc(letter.received_ns), market),
            "received_ns": letter.received_ns,
            "device": letter.device,
            "topic": letter.topic,
            "reason": letter.reason,
        }
        for letter in letters
    ]


def ns_to_utc(ns: int) -> datetime:
    """Nanoseconds since the epoch as a UTC datetime, in integers (a float loses microseconds)."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=rest // 1000)
