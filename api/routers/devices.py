"""Devices: who is online, how much each sends and has rejected, and the dead letters.

* ``GET /markets/{market}/devices`` (screen or manager token): every registered
  device with last seen, online, readings and rejects over a window. A token
  scoped to a vendor sees that vendor's devices only.
* ``GET /dead-letters`` (viewer, manager or administrator token): rejected messages,
  newest first, with the raw payload (base64, plus the text when it is UTF-8), in pages.
"""

from __future__ import annotations

import base64
import codecs
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field

from api._exceptions import AUTH_ERRORS, Forbidden, UnknownMarket
from api.deps import LiveDep, MarketDep, RegistryDep, StoreDep
from api.security import Principal, ScreenOrManager, Viewer
from marketview.live import DeviceSeen
from schemas.messages import DeviceKind
from schemas.registry import Device, Market
from storage.interfaces.devices import ScaleStatusRow
from storage.interfaces.traceability import UnverifiedSalesRow
from storage.records import UNREGISTERED, DeadLetter, from_ns, to_ns
from storage.traceability import TraceStatus

router = APIRouter(tags=["devices"], responses=AUTH_ERRORS)

#: Times outside these years are refused (422) rather than passed to a store that
#: cannot represent them (InfluxDB's timestamps end in 2262). The year is the one
#: written, whatever the offset, so the pattern in the OpenAPI document says exactly
#: which times are accepted.
_FIRST_YEAR, _END_YEAR = 2000, 2200
_LATEST = datetime(_END_YEAR, 1, 1, tzinfo=UTC)
_LATEST_US = to_ns(_LATEST) // 1_000
_MOMENT_PATTERN = r"^2[01][0-9]{2}-"
MAX_PAGE = 1000
DEFAULT_DEAD_LETTER_DAYS = 30


def _in_supported_range(moment: datetime) -> datetime:
    if not _FIRST_YEAR <= moment.year < _END_YEAR:
        raise ValueError(f"must be in the years {_FIRST_YEAR} to {_END_YEAR - 1}")
    return moment


Moment = Annotated[
    AwareDatetime,
    AfterValidator(_in_supported_range),
    Field(json_schema_extra={"pattern": _MOMENT_PATTERN}),
]


# -- device list ---------------------------------------------------------------------


class ScaleHealth(BaseModel):
    """What the scale's latest status message reported."""

    reported_at: datetime
    zero_ok: bool | None
    seal_intact: bool | None
    calibration_due: date | None


class DeviceOut(BaseModel):
    id: str
    kind: DeviceKind
    vendor: str | None = Field(description="Owning vendor (scales and screens).")
    last_seen: datetime | None = Field(
        description="When the last message from or about the device arrived (arrival time, "
        "not the device's clock)."
    )
    online: bool | None = Field(
        description="From the scale's status and Last Will; null for devices without a "
        "status channel (screens, gates, intake) or not heard from yet."
    )
    readings: int = Field(description="Readings stored during the window.")
    rejects: int = Field(description="Messages rejected during the window.")
    unverified_sales: dict[TraceStatus, int] = Field(
        default_factory=dict,
        description="Scales: sales during the window whose trace code did not check out, per "
        "trace status (`unknown_batch`, `other_vendor`, `product_mismatch`, "
        "`outside_categories`); empty when all were verified.",
    )
    scale_status: ScaleHealth | None = None


class DeviceList(BaseModel):
    market: str
    window_start: datetime
    window_end: datetime
    devices: list[DeviceOut]


@router.get("/markets/{market}/devices", summary="Devices of a market with presence and counts")
def list_devices(
    market: MarketDep,
    store: StoreDep,
    live: LiveDep,
    caller: ScreenOrManager,
    hours: Annotated[
        int, Query(ge=1, le=168, description="Window for readings and rejects, in hours.")
    ] = 24,
) -> DeviceList:
    end = datetime.now(UTC)
    start = end - timedelta(hours=hours)
    statuses = {row.scale: row for row in store.scale_status(market.id)}
    readings = store.message_counts(start, end)
    rejects = store.reject_counts(start, end)
    unverified = _unverified_by_scale(store.unverified_sales(market.id, start, end))
    seen = live.device_seen(market.id)
    devices = [
        _device_out(
            device,
            seen.get(device.id),
            statuses.get(device.id),
            readings,
            rejects,
            unverified.get(device.id, {}),
        )
        for device in _visible_devices(market, caller)
    ]
    return DeviceList(market=market.id, window_start=start, window_end=end, devices=devices)


def _unverified_by_scale(
    rows: Sequence[UnverifiedSalesRow],
) -> dict[str, dict[TraceStatus, int]]:
    by_scale: dict[str, dict[TraceStatus, int]] = {}
    for row in rows:
        counts = by_scale.setdefault(row.scale, {})
        counts[row.trace_status] = counts.get(row.trace_status, 0) + row.sales
    return by_scale


def _visible_devices(market: Market, caller: Principal) -> list[Device]:
    visible = (d for d in market.devices.values() if caller.may_see_vendor(d.vendor))
    return sorted(visible, key=lambda d: (d.kind.value, d.id))


def _device_out(
    device: Device,
    seen: DeviceSeen | None,
    status: ScaleStatusRow | None,
    readings: Mapping[tuple[str, str], int],
    rejects: Mapping[tuple[str, str], int],
    unverified: dict[TraceStatus, int],
) -> DeviceOut:
    key = (device.market, device.id)
    return DeviceOut(
        id=device.id,
        kind=device.kind,
        vendor=device.vendor,
        # Presence is on arrival time, as in the live view; a status's ts is the scale's clock.
        last_seen=_latest(seen.last_seen if seen else None, status.received if status else None),
        online=_online(seen, status),
        readings=readings.get(key, 0),
        rejects=rejects.get(key, 0),
        unverified_sales=unverified,
        scale_status=None if status is None else _health(status),
    )


def _latest(*moments: datetime | None) -> datetime | None:
    known = [moment for moment in moments if moment is not None]
    return max(known) if known else None


def _online(seen: DeviceSeen | None, status: ScaleStatusRow | None) -> bool | None:
    # The live view merges the store's statuses with live ones, newest first, so
    # when it knows it is at least as recent as the store's row.
    if seen is not None and seen.online is not None:
        return seen.online
    return None if status is None else status.online


def _health(status: ScaleStatusRow) -> ScaleHealth:
    return ScaleHealth(
        reported_at=status.ts,
        zero_ok=status.zero_ok,
        seal_intact=status.seal_intact,
        calibration_due=status.calibration_due,
    )


# -- dead letters ---------------------------------------------------------------------


class DeadLetterOut(BaseModel):
    received_at: datetime
    received_ns: int = Field(description="Arrival time, nanoseconds since the epoch.")
    market: str = Field(description=f"Market id, or {UNREGISTERED!r} if it is not registered.")
    device: str = Field(description=f"Device id, or {UNREGISTERED!r} if it is not registered.")
    topic: str
    reason: str = Field(description="Why the message was rejected.")
    payload_size: int = Field(description="Size of the message as received, bytes.")
    truncated: bool = Field(description="Only the first KiB of an oversized payload is kept.")
    payload_base64: str = Field(description="The payload bytes kept, base64.")
    payload_text: str | None = Field(description="The payload as text, if it is UTF-8.")


class DeadLetterPage(BaseModel):
    items: list[DeadLetterOut]
    next_before: int | None = Field(
        description="Pass as `before` to get the next (older) page; null on the last page."
    )


MarketFilter = Annotated[
    str | None,
    Query(
        pattern=rf"^({UNREGISTERED}|[A-Za-z0-9][A-Za-z0-9_.-]{{0,31}})$",
        description=f"Only this market's dead letters ({UNREGISTERED!r}: unknown markets).",
    ),
]


@router.get("/dead-letters", summary="Rejected messages, newest first")
def list_dead_letters(
    store: StoreDep,
    registry: RegistryDep,
    caller: Viewer,
    market: MarketFilter = None,
    start: Annotated[
        Moment | None,
        Query(description=f"Received at or after (default: {DEFAULT_DEAD_LETTER_DAYS} days ago)."),
    ] = None,
    end: Annotated[Moment | None, Query(description="Received before (default: now).")] = None,
    before: Annotated[
        int | None,
        Query(ge=0, le=_LATEST_US, description="Cursor: `next_before` of the previous page."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> DeadLetterPage:
    _check_market_filter(market, registry.markets, caller)
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=DEFAULT_DEAD_LETTER_DAYS)
    if before is not None:
        end = min(end, from_ns(before * 1_000))
    # An empty range (end not after start) is an empty page: a rule between two parameters
    # cannot be stated in the OpenAPI document, so it is not made an error.
    letters = [] if start >= end else store.dead_letters(start, end, market=market, limit=limit + 1)
    items, next_before = _page(letters, limit)
    return DeadLetterPage(items=[_dead_letter_out(d) for d in items], next_before=next_before)


def _check_market_filter(
    market: str | None, registered: Mapping[str, Market], caller: Principal
) -> None:
    if caller.market is not None and market != caller.market:
        raise Forbidden(f"this token is limited to market {caller.market!r}; pass market=")
    if market is not None and market != UNREGISTERED and market not in registered:
        raise UnknownMarket(market)


def _page(letters: Sequence[DeadLetter], limit: int) -> tuple[Sequence[DeadLetter], int | None]:
    """Cut ``limit + 1`` newest-first letters to a page and the cursor of the next one.

    The cursor is a microsecond (the store's time resolution for range bounds).
    Letters sharing the page's last microsecond are held back for the next page,
    unless they fill the whole page; then the rest of that microsecond is skipped.
    """
    if len(letters) <= limit:
        return letters, None
    page = letters[:limit]
    boundary_us = page[-1].received_ns // 1_000
    if letters[limit].received_ns // 1_000 != boundary_us:
        return page, boundary_us
    complete = [letter for letter in page if letter.received_ns // 1_000 > boundary_us]
    if complete:
        return complete, boundary_us + 1
    return page, boundary_us


def _dead_letter_out(letter: DeadLetter) -> DeadLetterOut:
    truncated = letter.payload_size > len(letter.payload)
    return DeadLetterOut(
        received_at=from_ns(letter.received_ns),
        received_ns=letter.received_ns,
        market=letter.market,
        device=letter.device,
        topic=letter.topic,
        reason=letter.reason,
        payload_size=letter.payload_size,
        truncated=truncated,
        payload_base64=base64.b64encode(letter.payload).decode("ascii"),
        payload_text=_as_text(letter.payload, truncated=truncated),
    )


def _as_text(payload: bytes, *, truncated: bool) -> str | None:
    # A truncated payload may end inside a multi-byte character; only then is an
    # incomplete tail forgiven.
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        return decoder.decode(payload, final=not truncated)
    except UnicodeDecodeError:
        return None
