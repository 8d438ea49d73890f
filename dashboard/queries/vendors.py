"""Vendors & devices: today's trade per vendor, device status, dead letters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dashboard.i18n import Lang, device_kind_name, money_text, price_text
from dashboard.queries.common import (
    DEAD_LETTER_ROWS,
    GATE_SILENCE,
    DashboardData,
    day_start,
    local_time_text,
    market_today,
    product_name,
    unverified_counts,
)
from marketview import analytics
from marketview.live import UnknownName
from schemas.messages import DeviceKind
from schemas.registry import Market
from storage.interfaces.devices import ScaleStatusRow
from storage.interfaces.sales import ScaleSalesRow
from storage.interfaces.traceability import UnverifiedSalesRow
from storage.records import DeadLetter, from_ns


@dataclass(frozen=True, slots=True)
class VendorsToday:
    """What the vendors page reads of the market's day so far, read at once."""

    now: datetime
    #: today's sales per vendor and scale
    by_scale: list[ScaleSalesRow]
    unverified: list[UnverifiedSalesRow]
    statuses: list[ScaleStatusRow]
    messages: dict[tuple[str, str], int]
    rejects: dict[tuple[str, str], int]
    letters: list[DeadLetter]


def read_vendors_today(data: DashboardData, market: Market) -> VendorsToday:
    """The page's store reads, submitted together: the page waits for the slowest
    and not for their sum. Sales come per vendor and scale (``Store.sales_by_scale``),
    a few hundred rollup series a day where per product there are thousands; they
    are the scales' sale messages too, so the message counts leave sales out."""
    now = data.now()
    start = day_start(market, market_today(market, now))
    store, submit = data.store, data.reads.submit
    by_scale = submit(store.sales_by_scale, market.id, start, now)
    unverified = submit(store.unverified_sales, market.id, start, now)
    # The live view took every scale's status in force from the store when it synced,
    # and follows them over MQTT since; device_table asks it first. The store's own
    # read (a pass over the heartbeats of a day and more) is for a view not synced yet.
    statuses = None if data.live.synced else submit(store.scale_status, market.id)
    messages = submit(store.message_counts, start, now, sales=False)
    rejects = submit(store.reject_counts, start, now)
    letters = submit(store.dead_letters, start, now, market=market.id, limit=DEAD_LETTER_ROWS)
    sold = by_scale.result()
    return VendorsToday(
        now=now,
        by_scale=sold,
        unverified=unverified.result(),
        statuses=[] if statuses is None else statuses.result(),
        messages=_with_sales(messages.result(), sold),
        rejects=rejects.result(),
        letters=letters.result(),
    )


def _with_sales(
    counts: dict[tuple[str, str], int], by_scale: list[ScaleSalesRow]
) -> dict[tuple[str, str], int]:
    """Message counts per (market, device), the scales' sales added."""
    total = dict(counts)
    for row in by_scale:
        key = (row.market, row.scale)
        total[key] = total.get(key, 0) + row.sales
    return total


def vendor_table(
    data: DashboardData, market_id: str, lang: Lang, today: VendorsToday | None = None
) -> list[dict[str, Any]]:
    """One row per vendor: today's turnover, transactions, average ticket, current prices,
    and today's sales whose trace code did not check out (``today``: read by the
    caller for all three tables, else here)."""
    market = data.market(market_id)
    today = today or read_vendors_today(data, market)
    frame = analytics.scale_sales_frame(today.by_scale)
    figures = {f.key: f for f in analytics.sales_per_vendor(frame)}
    per_vendor = unverified_counts(today.unverified, "vendor")
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
                "unverified": per_vendor.get(vendor.id, 0),
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
        name = quote.plu if product is None else product_name(product, lang)
        parts.append(f"{name} {price_text(quote.current_fen_per_kg, lang)}")
    return "，".join(parts) if lang is Lang.ZH else ", ".join(parts)


def device_table(
    data: DashboardData, market_id: str, lang: Lang, today: VendorsToday | None = None
) -> list[dict[str, Any]]:
    """Every registered device: kind, owner, online state, last seen, today's messages,
    rejects and (scales) sales whose trace code did not check out."""
    market = data.market(market_id)
    today = today or read_vendors_today(data, market)
    now = today.now
    seen = data.live.device_seen(market.id)
    statuses: dict[str, ScaleStatusRow] = {s.scale: s for s in today.statuses}
    per_scale = unverified_counts(today.unverified, "scale")
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
                "messages": today.messages.get((market.id, device.id), 0),
                "rejects": today.rejects.get((market.id, device.id), 0),
                "unverified": per_scale.get(device.id, 0),
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


def dead_letters(
    data: DashboardData, market_id: str, today: VendorsToday | None = None
) -> list[dict[str, Any]]:
    """Today's rejected messages for this market, newest first (at most DEAD_LETTER_ROWS)."""
    market = data.market(market_id)
    today = today or read_vendors_today(data, market)
    return [
        {
            "received": local_time_text(from_ns(letter.received_ns), market),
            "received_ns": letter.received_ns,
            "device": letter.device,
            "topic": letter.topic,
            "reason": letter.reason,
        }
        for letter in today.letters
    ]
