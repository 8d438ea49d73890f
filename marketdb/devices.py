"""Managing devices: add a scale, screen, gate counter or intake desk, disable or enable one.

Device ids are the devices' MQTT user names, unique across every market. A device
is never deleted (its readings name it); a replaced or lost one is disabled and may
no longer publish. Scales and screens belong to a vendor, gates and intake desks
have a name. Each change is checked with the whole market, as a market file is.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from marketdb._exceptions import Conflict, InvalidChange, NotFound
from marketdb.changes import Clock, flush_edit, record_change, require_version, utc_now
from marketdb.marketfile import market_file
from marketdb.models import DeviceRow, MarketRow, VendorRow
from schemas.messages import DeviceKind, Identifier
from schemas.registry import Name

ENTITY = "device"
_OWNED = frozenset({DeviceKind.SCALE, DeviceKind.SCREEN})
# The market file's field types, so a device added here meets the file's limits.
_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)
_NAME: TypeAdapter[str] = TypeAdapter(Name)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device as managers see it, and the version an edit of it must name."""

    id: str
    market: str
    kind: DeviceKind
    vendor: str | None
    name: str | None
    enabled: bool
    version: int


def get_device(session: Session, device_id: str) -> DeviceRecord:
    row = session.get(DeviceRow, device_id)
    if row is None:
        raise NotFound(f"no device {device_id!r}")
    return _record(row)


def add_device(
    session: Session,
    market_id: str,
    device_id: str,
    kind: DeviceKind,
    *,
    vendor: str | None = None,
    name: str | None = None,
    actor: str,
    clock: Clock = utc_now,
) -> DeviceRecord:
    """Register a device: a scale or screen of ``vendor``, or a gate or intake desk ``name``."""
    _check_identity(device_id, kind, vendor, name)
    taken = session.get(DeviceRow, device_id)
    if taken is not None:
        raise Conflict(f"device id {device_id!r} is used in market {taken.market_id!r}")
    market = session.get(MarketRow, market_id)
    if market is None:
        raise NotFound(f"no market {market_id!r}")
    if vendor is not None and session.get(VendorRow, (market_id, vendor)) is None:
        raise InvalidChange(f"no vendor {vendor!r} in market {market_id!r}", "vendor")
    row = DeviceRow(
        id=device_id,
        market_id=market_id,
        position=len(market.devices),
        kind=kind.value,
        vendor_id=vendor,
        name=name,
        enabled=True,
        version=1,
    )
    market.devices.append(row)
    _check_market(session, market)
    session.flush()
    record = _record(row)
    record_change(
        session,
        actor=actor,
        action="create",
        entity=ENTITY,
        entity_id=device_id,
        market_id=market_id,
        before=None,
        after=_fields(record),
        clock=clock,
    )
    return record


def set_device_enabled(
    session: Session,
    device_id: str,
    enabled: bool,
    *,
    if_version: int,
    actor: str,
    clock: Clock = utc_now,
) -> DeviceRecord:
    """Disable a device (it may no longer publish) or enable it again."""
    row = session.get(DeviceRow, device_id)
    if row is None:
        raise NotFound(f"no device {device_id!r}")
    before = _record(row)
    require_version(ENTITY, device_id, before.version, if_version)
    row.enabled = enabled
    row.version = if_version + 1
    flush_edit(session, ENTITY, device_id, if_version)
    after = _record(row)
    record_change(
        session,
        actor=actor,
        action="enable" if enabled else "disable",
        entity=ENTITY,
        entity_id=device_id,
        market_id=row.market_id,
        before=_fields(before),
        after=_fields(after),
        clock=clock,
    )
    return after


def list_devices(session: Session, market_id: str) -> list[DeviceRecord]:
    market = session.get(MarketRow, market_id)
    if market is None:
        raise NotFound(f"no market {market_id!r}")
    return [_record(row) for row in market.devices]


def assign_device(
    session: Session,
    device_id: str,
    *,
    vendor: str | None,
    name: str | None,
    if_version: int,
    actor: str,
    clock: Clock = utc_now,
) -> DeviceRecord:
    """Give a scale or screen to another vendor, or a gate or intake desk another name.

    Its broker user stays: a device's topics name the device, not its vendor.
    """
    row = session.get(DeviceRow, device_id)
    if row is None:
        raise NotFound(f"no device {device_id!r}")
    before = _record(row)
    require_version(ENTITY, device_id, before.version, if_version)
    _check_identity(device_id, before.kind, vendor, name)
    if vendor is not None and session.get(VendorRow, (row.market_id, vendor)) is None:
        raise InvalidChange(f"no vendor {vendor!r} in market {row.market_id!r}", "vendor")
    row.vendor_id, row.name = vendor, name
    row.version = if_version + 1
    flush_edit(session, ENTITY, device_id, if_version)
    market = session.get(MarketRow, row.market_id)
    assert market is not None
    _check_market(session, market)  # a transaction that fails here is rolled back whole
    after = _record(row)
    record_change(
        session,
        actor=actor,
        action="assign",
        entity=ENTITY,
        entity_id=device_id,
        market_id=row.market_id,
        before=_fields(before),
        after=_fields(after),
        clock=clock,
    )
    return after


def _check_identity(device_id: str, kind: DeviceKind, vendor: str | None, name: str | None) -> None:
    """The same limits as a market file's: an id fit for a topic, a vendor or a name."""
    try:
        _IDENTIFIER.validate_python(device_id)
    except ValidationError as exc:
        raise InvalidChange(f"device id: {exc.errors()[0]['msg']}", "id") from exc
    if kind in _OWNED and vendor is None:
        raise InvalidChange(f"a {kind.value} belongs to a vendor", "vendor")
    if kind not in _OWNED:
        if vendor is not None:
            raise InvalidChange(f"a {kind.value} belongs to no vendor", "vendor")
        try:
            _NAME.validate_python(name)
        except ValidationError as exc:
            raise InvalidChange(f"name: {exc.errors()[0]['msg']}", "name") from exc


def _check_market(session: Session, market: MarketRow) -> None:
    """The market with the change, checked as a market file (the vendor exists, …)."""
    session.flush()
    try:
        market_file(market)
    except ValidationError as exc:
        message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise InvalidChange(message, "id" if "device id" in message else None) from exc


def _record(row: DeviceRow) -> DeviceRecord:
    return DeviceRecord(
        id=row.id,
        market=row.market_id,
        kind=DeviceKind(row.kind),
        vendor=row.vendor_id,
        name=row.name,
        enabled=row.enabled,
        version=row.version,
    )


def _fields(record: DeviceRecord) -> dict[str, object]:
    return {
        "market": record.market,
        "kind": record.kind.value,
        "vendor": record.vendor,
        "name": record.name,
        "enabled": record.enabled,
    }
