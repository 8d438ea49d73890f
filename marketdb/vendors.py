"""Managing vendors: read, add, edit, deactivate; what the dashboard's forms and the API call.

A change is checked twice, as a market file is: the vendor itself by its model
(``schemas.registry.Vendor``: the same limits as the file, the form and the API),
then the whole market with the change in it (a stall another active vendor holds, a
product the market does not sell, …). Either refusal changes nothing.

Every edit names the version it was made on; if the vendor changed since, the edit
is refused (:class:`StaleEdit`) rather than silently overwriting the other change.
A vendor who leaves is deactivated, never deleted: history and traces keep naming
them. Their devices stay assigned and may not publish.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from marketdb._exceptions import Conflict, InvalidChange, NotFound
from marketdb.changes import (
    Clock,
    check_market,
    flush_edit,
    record_change,
    require_version,
    utc_now,
)
from marketdb.marketfile import apply_vendor, export_market
from marketdb.models import (
    MarketRow,
    StallRow,
    VendorRow,
)
from schemas.registry import Vendor

ENTITY = "vendor"


@dataclass(frozen=True, slots=True)
class VersionedVendor:
    """A vendor as stored, and the version an edit of it must name."""

    vendor: Vendor
    version: int


def get_vendor(session: Session, market_id: str, vendor_id: str) -> VersionedVendor:
    spec = export_market(session, market_id)
    found = next((v for v in spec.vendors if v.id == vendor_id), None)
    if found is None:
        raise NotFound(f"no vendor {vendor_id!r} in market {market_id!r}")
    return VersionedVendor(found, _row(session, market_id, vendor_id).version)


def list_vendors(session: Session, market_id: str) -> list[VersionedVendor]:
    """Every vendor of the market, active or not, in order."""
    spec = export_market(session, market_id)
    rows = session.execute(
        select(VendorRow.id, VendorRow.version).where(VendorRow.market_id == market_id)
    )
    versions = {vendor_id: version for vendor_id, version in rows}
    return [VersionedVendor(v, versions[v.id]) for v in spec.vendors]


def create_vendor(
    session: Session, market_id: str, vendor: Vendor, *, actor: str, clock: Clock = utc_now
) -> VersionedVendor:
    """Add ``vendor``; its devices are assigned through device management, not here."""
    if session.get(VendorRow, (market_id, vendor.id)) is not None:
        raise Conflict(f"vendor {vendor.id!r} exists in market {market_id!r}")
    if vendor.scales or vendor.screens:
        raise InvalidChange("scales and screens are added through device management", "scales")
    spec = export_market(session, market_id)
    check_market(spec, vendors=(*spec.vendors, vendor))
    market = session.get(MarketRow, market_id)
    assert market is not None  # export_market found it
    row = VendorRow(market_id=market_id, id=vendor.id, position=len(market.vendors), version=1)
    _ensure_stall(session, market, vendor.stall)
    apply_vendor(row, vendor)
    market.vendors.append(row)
    session.flush()
    record_change(
        session,
        actor=actor,
        action="create",
        entity=ENTITY,
        entity_id=vendor.id,
        market_id=market_id,
        before=None,
        after=_fields(vendor),
        clock=clock,
    )
    return VersionedVendor(vendor, row.version)


def update_vendor(
    session: Session,
    market_id: str,
    vendor: Vendor,
    *,
    if_version: int,
    actor: str,
    clock: Clock = utc_now,
) -> VersionedVendor:
    """Replace the stored vendor ``vendor.id`` with ``vendor``, if it is still at ``if_version``.

    Its scales and screens must be the stored ones (devices are reassigned through
    device management).
    """
    current = get_vendor(session, market_id, vendor.id)
    require_version(ENTITY, vendor.id, current.version, if_version)
    if (vendor.scales, vendor.screens) != (current.vendor.scales, current.vendor.screens):
        raise InvalidChange("scales and screens are reassigned through device management", "scales")
    spec = export_market(session, market_id)
    check_market(spec, vendors=tuple(vendor if v.id == vendor.id else v for v in spec.vendors))
    market = session.get(MarketRow, market_id)
    assert market is not None
    row = _row(session, market_id, vendor.id)
    _ensure_stall(session, market, vendor.stall)
    apply_vendor(row, vendor)
    row.version = if_version + 1
    flush_edit(session, ENTITY, vendor.id, if_version)
    record_change(
        session,
        actor=actor,
        action="update",
        entity=ENTITY,
        entity_id=vendor.id,
        market_id=market_id,
        before=_fields(current.vendor),
        after=_fields(vendor),
        clock=clock,
    )
    return VersionedVendor(vendor, row.version)


def set_vendor_active(
    session: Session,
    market_id: str,
    vendor_id: str,
    active: bool,
    *,
    if_version: int,
    actor: str,
    clock: Clock = utc_now,
) -> VersionedVendor:
    """Deactivate a vendor who left (their devices may no longer publish), or take them back."""
    current = get_vendor(session, market_id, vendor_id)
    changed = current.vendor.model_copy(update={"active": active})
    return update_vendor(
        session, market_id, changed, if_version=if_version, actor=actor, clock=clock
    )


# -- helpers -----------------------------------------------------------------------------


def _row(session: Session, market_id: str, vendor_id: str) -> VendorRow:
    row = session.get(VendorRow, (market_id, vendor_id))
    if row is None:
        raise NotFound(f"no vendor {vendor_id!r} in market {market_id!r}")
    return row


def _ensure_stall(session: Session, market: MarketRow, stall_id: str) -> None:
    """A stall named by a vendor and not yet known becomes one, as in a market file."""
    if session.get(StallRow, (market.id, stall_id)) is None:
        market.stalls.append(
            StallRow(
                market_id=market.id,
                id=stall_id,
                position=len(market.stalls),
                listed=False,
                version=1,
            )
        )
        session.flush()


def _fields(vendor: Vendor) -> dict[str, Any]:
    return vendor.model_dump(mode="json")
