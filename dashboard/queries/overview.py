"""The overview: today's figures against last week, alerts, the turnover trend."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from dashboard.queries.common import (
    BATCH_ALERT_WINDOW,
    GATE_SILENCE,
    TREND_DAYS,
    DashboardData,
    day_start,
    is_open,
    market_today,
    unverified_today,
)
from marketview import analytics
from marketview.documents import DocumentExpiry, expiring_documents
from marketview.recall import sold_while_locked
from schemas.messages import DeviceKind
from schemas.registry import Market


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
    # The market's hours, not its (vendor, product) sums: only the totals show here.
    hours = data.store.sales_by_hour(market.id, start, now)
    online, total = vendors_online(data, market)
    return Overview(
        footfall_today=analytics.footfall_totals(today)[0],
        footfall_last_week=analytics.footfall_totals(last_week)[0],
        occupancy=analytics.occupancy(today),
        turnover_fen=sum(hour.turnover_fen for hour in hours),
        transactions=sum(hour.transactions for hour in hours),
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

    ``kind`` is one of ``locked_sale``, ``failed_on_sale``, ``oversold``, ``unverified_sales``,
    ``document_expired``, ``offline``, ``rejects``, ``document_expiring``; ``since`` is a
    UTC timestamp or None.
    """
    market = data.market(market_id)
    now = data.now()
    documents = expiring_documents(market, market_today(market, now))
    rows: list[dict[str, Any]] = []
    rows += _locked_sale_alerts(data, market, now)
    rows += _batch_alerts(data, market, now)
    rows += _unverified_alerts(data, market, now)
    rows += [_document_alert(doc) for doc in documents if doc.expired]
    if is_open(market, now):
        rows += _offline_alerts(data, market, now)
    rows += _reject_alerts(data, market, now)
    rows += [_document_alert(doc) for doc in documents if not doc.expired]
    return pd.DataFrame(rows, columns=ALERT_COLUMNS)


def _batch_alerts(data: DashboardData, market: Market, now: datetime) -> list[dict[str, Any]]:
    rows = []
    for balance in data.store.batch_alerts(market.id, now - BATCH_ALERT_WINDOW, now):
        if balance.failed_on_sale:
            rows.append(
                _alert(
                    "failed_on_sale",
                    balance.trace_code,
                    f"{balance.vendor} {balance.plu}: {balance.sales}",
                    balance.last_sale,
                )
            )
        if balance.oversold:
            rows.append(
                _alert(
                    "oversold",
                    balance.trace_code,
                    f"{balance.vendor} {balance.plu}: {balance.sold_g} g / {balance.quantity_g} g",
                    balance.last_sale,
                )
            )
    return rows


def _locked_sale_alerts(data: DashboardData, market: Market, now: datetime) -> list[dict[str, Any]]:
    """A locked batch sold anyway (the scale ignored its lock): ``subject`` the trace code,
    ``detail`` ``"<vendor> <name> <plu>: <sales>"``, ``since`` the first such sale."""
    if data.lock_keeper is None:
        return []
    since = now - BATCH_ALERT_WINDOW
    locks = [
        lock
        for lock in data.lock_keeper.locks(market.id, lifted=True)
        if lock.unlocked_at is None or lock.unlocked_at >= since
    ]
    rows = []
    for recall in sold_while_locked(data.store, locks, since):
        lock = recall.lock
        vendor = market.vendors.get(lock.vendor)
        name = "" if vendor is None else f" {vendor.name}"
        detail = f"{lock.vendor}{name} {lock.plu}: {len(recall.while_locked)}"
        rows.append(_alert("locked_sale", lock.trace_code, detail, recall.while_locked[0].ts))
    return rows


def _unverified_alerts(data: DashboardData, market: Market, now: datetime) -> list[dict[str, Any]]:
    """Scales that sold today under a trace code that did not check out (one alert per scale).

    ``detail`` is ``"<vendor>: <count> <status>, …"``, statuses as ``TraceStatus`` values.
    """
    per_scale: dict[tuple[str, str], list[str]] = {}
    for row in unverified_today(data, market, now):
        per_scale.setdefault((row.scale, row.vendor), []).append(
            f"{row.sales} {row.trace_status.value}"
        )
    return [
        _alert("unverified_sales", scale, f"{vendor}: {', '.join(parts)}", None)
        for (scale, vendor), parts in sorted(per_scale.items())
    ]


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


def _document_alert(doc: DocumentExpiry) -> dict[str, Any]:
    """``subject``: the vendor; ``detail``: ``"<kind> <number> [<holder>] <expiry date>"``."""
    holder = f" {doc.holder}" if doc.holder else ""
    detail = f"{doc.kind.value} {doc.number}{holder} {doc.expires.isoformat()}"
    kind = "document_expired" if doc.expired else "document_expiring"
    return _alert(kind, f"{doc.vendor} {doc.vendor_name}", detail, None)


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
