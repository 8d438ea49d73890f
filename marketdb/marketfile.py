"""Market files in and out of the market database: seed, back up, and restore a market.

``stallwatch market import FILE`` and ``stallwatch market export MARKET`` round-trip
exactly: exporting an imported file gives a file that loads as the same market
(``MarketFile`` equal), and exporting again gives the same bytes. The file is
validated as a whole before anything is written (``schemas.registry``), so a bad
file names its line's key and changes nothing.

The database keeps what a file says and how it says it where that matters to
people: order (``position``), whether a vendor's categories were declared or
follow its products, whether a stall was listed or only named by a vendor.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, time
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload

from marketdb._exceptions import Conflict, MarketDatabaseUnavailable, NotFound
from marketdb.changes import record_change
from marketdb.models import (
    DeviceRow,
    HealthCertificateRow,
    MarketRow,
    ProductRow,
    StallRow,
    VendorCategoryRow,
    VendorProductRow,
    VendorRow,
)
from schemas.foodsafety import FoodSafetyPolicy
from schemas.messages import DeviceKind
from schemas.registry import (
    Category,
    Gate,
    HealthCertificate,
    IntakeStation,
    Market,
    MarketFile,
    MarketInfo,
    Product,
    Registry,
    SaleUnit,
    Stall,
    Vendor,
    device_ids,
)
from schemas.retention import RetentionPolicy

_RETENTION_FIELDS = tuple(RetentionPolicy.model_fields)


# -- into the database -------------------------------------------------------------------


def import_market(
    session: Session, spec: MarketFile, *, replace: bool = False, actor: str = "market import"
) -> None:
    """Add the market ``spec`` declares, or with ``replace`` put it in place of the stored one.

    Raises :class:`Conflict` when the market exists and ``replace`` is not given,
    or when one of its device ids belongs to another market (device ids are MQTT
    user names, unique across the deployment). The caller commits.
    """
    market_id = spec.market.id
    existing = session.get(MarketRow, market_id)
    if existing is not None and not replace:
        raise Conflict(f"market {market_id!r} exists; pass replace to overwrite it")
    _refuse_foreign_devices(session, spec)
    if existing is not None:
        _delete(session, existing)
    row = market_row(spec)
    vendors, devices = row.vendors, row.devices
    row.vendors, row.devices = [], []
    # In the order the foreign keys need (stalls and products, vendors, devices): the
    # unit of work orders by relationships, and these tables are related by keys only.
    session.add(row)
    session.flush()
    row.vendors = vendors
    session.flush()
    row.devices = devices
    session.flush()
    record_change(
        session,
        actor=actor,
        action="replace" if existing is not None else "import",
        entity="market",
        entity_id=market_id,
        market_id=market_id,
        before=None,
        after={"vendors": len(spec.vendors), "products": len(spec.products)},
    )


def _delete(session: Session, market: MarketRow) -> None:
    """A market's rows, in the order the foreign keys need: devices, vendors, the rest."""
    for children in (market.devices, market.vendors):
        children.clear()  # orphans: deleted by the flush
        session.flush()
    session.delete(market)
    session.flush()


def _refuse_foreign_devices(session: Session, spec: MarketFile) -> None:
    ids = [device_id for device_id, _ in device_ids(spec)]
    taken = session.scalars(
        select(DeviceRow).where(DeviceRow.id.in_(ids), DeviceRow.market_id != spec.market.id)
    ).all()
    if taken:
        clashes = ", ".join(f"{row.id!r} ({row.market_id})" for row in taken)
        raise Conflict(f"device ids are used by other markets: {clashes}")


def market_row(spec: MarketFile) -> MarketRow:
    """The rows of a market file (not yet added to a session)."""
    info, market_id = spec.market, spec.market.id
    retention = {
        f"retention_{name}": getattr(spec.retention, name)
        for name in _RETENTION_FIELDS
        if name in spec.retention.model_fields_set
    }
    row = MarketRow(
        id=market_id,
        name=info.name,
        name_en=info.name_en,
        timezone=info.timezone,
        opens=info.opens,
        closes=info.closes,
        **retention,
        daily_test_quota=(
            spec.food_safety.daily_test_quota
            if "daily_test_quota" in spec.food_safety.model_fields_set
            else None
        ),
    )
    row.products = [
        ProductRow(
            market_id=market_id,
            plu=product.plu,
            position=position,
            name_zh=product.name_zh,
            name_en=product.name_en,
            category=product.category.value,
            unit=product.unit.value,
        )
        for position, product in enumerate(spec.products)
    ]
    row.stalls = list(_stall_rows(spec))
    row.vendors = [_vendor_row(market_id, position, v) for position, v in enumerate(spec.vendors)]
    names = {g.id: g.name for g in spec.gates} | {i.id: i.name for i in spec.intake}
    owners = {device: v.id for v in spec.vendors for device in (*v.scales, *v.screens)}
    row.devices = [
        DeviceRow(
            id=device_id,
            market_id=market_id,
            position=position,
            kind=kind.value,
            vendor_id=owners.get(device_id),
            name=names.get(device_id),
            enabled=device_id not in spec.disabled_devices,
        )
        for position, (device_id, kind) in enumerate(device_ids(spec))
    ]
    return row


def _stall_rows(spec: MarketFile) -> Iterable[StallRow]:
    market_id = spec.market.id
    listed = {stall.id for stall in spec.stalls}
    for position, stall in enumerate(spec.stalls):
        yield StallRow(
            market_id=market_id,
            id=stall.id,
            position=position,
            listed=True,
            zone=stall.zone,
            row=stall.row,
            col=stall.col,
        )
    named = dict.fromkeys(v.stall for v in spec.vendors if v.stall not in listed)
    for position, stall_id in enumerate(named, start=len(spec.stalls)):
        yield StallRow(market_id=market_id, id=stall_id, position=position, listed=False)


def _vendor_row(market_id: str, position: int, vendor: Vendor) -> VendorRow:
    row = VendorRow(market_id=market_id, id=vendor.id, position=position)
    apply_vendor(row, vendor)
    return row


def apply_vendor(row: VendorRow, vendor: Vendor) -> None:
    """Write ``vendor``'s fields and its categories, products and certificates into ``row``."""
    market_id, vendor_id = row.market_id, row.id
    row.name = vendor.name
    row.stall_id = vendor.stall
    row.active = vendor.active
    row.contact = vendor.contact
    row.business_licence_no = vendor.business_licence_no
    row.food_licence_no = vendor.food_licence_no
    row.food_licence_expires = vendor.food_licence_expires
    row.categories_declared = vendor.categories is not None
    row.categories = [
        VendorCategoryRow(market_id=market_id, vendor_id=vendor_id, category=c.value, position=n)
        for n, c in enumerate(vendor.categories or ())
    ]
    row.products = [
        VendorProductRow(market_id=market_id, vendor_id=vendor_id, plu=plu, position=n)
        for n, plu in enumerate(vendor.products)
    ]
    _apply_certificates(row, vendor)


def _apply_certificates(row: VendorRow, vendor: Vendor) -> None:
    """The vendor's certificates, rewriting the stored rows in place.

    Certificate rows have their own ids, so a new list of new rows would be inserted
    before the old ones are deleted, and a number kept from the old list would break
    its unique constraint in between.
    """
    kept = row.certificates[: len(vendor.health_certificates)]
    for n, certificate in enumerate(vendor.health_certificates):
        if n == len(kept):
            kept.append(HealthCertificateRow(market_id=row.market_id, vendor_id=row.id, position=n))
        kept[n].position = n
        kept[n].holder, kept[n].number = certificate.holder, certificate.number
        kept[n].expires = certificate.expires
    row.certificates = kept


# -- out of the database -----------------------------------------------------------------


def export_market(session: Session, market_id: str) -> MarketFile:
    """The stored market as a market file; :class:`NotFound` if there is none."""
    row = session.scalars(_with_everything().where(MarketRow.id == market_id)).one_or_none()
    if row is None:
        raise NotFound(f"no market {market_id!r}")
    return market_file(row)


def load_registry(session: Session) -> Registry:
    """Every stored market, as ingest, the API and the dashboard use them."""
    try:
        rows = session.scalars(_with_everything().order_by(MarketRow.id)).all()
    except SQLAlchemyError as exc:
        raise MarketDatabaseUnavailable(f"cannot read the market database: {exc}") from exc
    return Registry(Market(market_file(row)) for row in rows)


def _with_everything() -> Any:
    return select(MarketRow).options(
        selectinload(MarketRow.products),
        selectinload(MarketRow.stalls),
        selectinload(MarketRow.devices),
        selectinload(MarketRow.vendors).selectinload(VendorRow.categories),
        selectinload(MarketRow.vendors).selectinload(VendorRow.products),
        selectinload(MarketRow.vendors).selectinload(VendorRow.certificates),
    )


def market_file(row: MarketRow) -> MarketFile:
    """A market's rows as the market file that declares them (validated as a file is)."""
    devices = sorted(row.devices, key=lambda device: device.position)
    owned: dict[tuple[str, str], list[str]] = {}
    for device in devices:
        if device.vendor_id is not None:
            owned.setdefault((device.vendor_id, device.kind), []).append(device.id)
    retention = {
        name: getattr(row, f"retention_{name}")
        for name in _RETENTION_FIELDS
        if getattr(row, f"retention_{name}") is not None
    }
    fields: dict[str, Any] = {
        "market": _market_info(row),
        "products": tuple(product_of(p) for p in row.products),
        "vendors": tuple(_vendor(v, owned) for v in row.vendors),
    }
    if retention:
        fields["retention"] = RetentionPolicy(**retention)
    if row.daily_test_quota is not None:
        fields["food_safety"] = FoodSafetyPolicy(daily_test_quota=row.daily_test_quota)
    stalls = tuple(stall_of(s) for s in row.stalls if s.listed)
    if stalls:
        fields["stalls"] = stalls
    gates = tuple(
        Gate(id=d.id, name=d.name or d.id) for d in devices if d.kind == DeviceKind.GATE.value
    )
    if gates:
        fields["gates"] = gates
    desks = tuple(
        IntakeStation(id=d.id, name=d.name or d.id)
        for d in devices
        if d.kind == DeviceKind.INTAKE.value
    )
    if desks:
        fields["intake"] = desks
    disabled = frozenset(d.id for d in devices if not d.enabled)
    if disabled:
        fields["disabled_devices"] = disabled
    return MarketFile(**fields)


def _market_info(row: MarketRow) -> MarketInfo:
    return MarketInfo(
        id=row.id,
        name=row.name,
        name_en=row.name_en,
        timezone=row.timezone,
        opens=row.opens,
        closes=row.closes,
    )


def product_of(row: ProductRow) -> Product:
    return Product(
        plu=row.plu,
        name_zh=row.name_zh,
        name_en=row.name_en,
        category=Category(row.category),
        unit=SaleUnit(row.unit),
    )


def stall_of(row: StallRow) -> Stall:
    return Stall(id=row.id, zone=row.zone, row=row.row, col=row.col)


def _vendor(row: VendorRow, owned: dict[tuple[str, str], list[str]]) -> Vendor:
    optional: dict[str, Any] = {
        name: value
        for name, value in (
            ("contact", row.contact),
            ("business_licence_no", row.business_licence_no),
            ("food_licence_no", row.food_licence_no),
            ("food_licence_expires", row.food_licence_expires),
        )
        if value is not None
    }
    if row.categories_declared:
        optional["categories"] = tuple(Category(c.category) for c in row.categories)
    for name, values in (
        ("scales", owned.get((row.id, DeviceKind.SCALE.value), [])),
        ("screens", owned.get((row.id, DeviceKind.SCREEN.value), [])),
        ("products", [p.plu for p in row.products]),
    ):
        if values:
            optional[name] = tuple(values)
    if not row.active:
        optional["active"] = False
    certificates = tuple(
        HealthCertificate(holder=c.holder, number=c.number, expires=c.expires)
        for c in row.certificates
    )
    if certificates:
        optional["health_certificates"] = certificates
    return Vendor(
        id=row.id,
        name=row.name,
        stall=row.stall_id,
        **optional,
    )


# -- TOML ----------------------------------------------------------------------------------


def dumps(spec: MarketFile) -> str:
    """The market file's TOML text, written as the examples are: defaults left out, in the
    file's order, short lists inline."""
    data = spec.model_dump(mode="python", exclude_defaults=True)
    if "disabled_devices" in data:
        data["disabled_devices"] = sorted(data["disabled_devices"])
    return "\n".join(_table_lines(_plain(data), ())).lstrip("\n") + "\n"


def _table_lines(table: dict[str, Any], path: tuple[str, ...]) -> Iterable[str]:
    """A table's own keys first (TOML puts them before any header), then its tables and
    arrays of tables in the model's order: ``[market]`` first, ``[retention]`` last."""
    nested = {key for key, value in table.items() if _is_table(value) or _is_table_array(value)}
    for key, value in table.items():
        if key not in nested:
            yield f"{_key(key)} = {_value(value)}"
    for key, value in table.items():
        header = ".".join(_key(part) for part in (*path, key))
        if _is_table(value):
            yield from ("", f"[{header}]", *_table_lines(value, (*path, key)))
        elif _is_table_array(value):
            for item in value:
                yield from ("", f"[[{header}]]", *_table_lines(item, (*path, key)))


def _is_table(value: Any) -> bool:
    return isinstance(value, dict)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


_BARE_KEY = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _key(key: str) -> str:
    return key if key and set(key) <= _BARE_KEY else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    """A TOML value; JSON's string escapes are TOML basic strings' (control characters
    as ``\\uXXXX``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def _plain(value: Any) -> Any:
    """Tuples as lists, enums as their values, unset optionals left out."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items() if item is not None}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, StrEnum):
        return value.value
    return value
