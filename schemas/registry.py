"""Market registry: the market file that declares a market, its vendors, products and devices.

The file is TOML (see ``docs/market-file.md`` and ``examples/markets/``). One
deployment loads several files, one per market. Device ids are unique across
the whole deployment because they are also the devices' MQTT user names.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, time
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.foodsafety import FoodSafetyPolicy
from schemas.messages import DeviceKind, Identifier, JsonInt, Plu
from schemas.retention import RetentionPolicy


class Category(StrEnum):
    VEGETABLES = "vegetables"
    MEAT = "meat"
    POULTRY = "poultry"
    SEAFOOD = "seafood"
    FRUIT = "fruit"
    EGGS = "eggs"
    TOFU = "tofu"
    GRAIN = "grain"
    OTHER = "other"


class SaleUnit(StrEnum):
    """How a product is priced on screens: by weight in 斤 (500 g) or kg."""

    JIN = "jin"
    KG = "kg"


Name = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
#: A licence or certificate number as issued: letters, digits and a few separators.
DocumentNo = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z\u4e00-\u9fff()（）/-]+$"),
]
#: A floor-plan row or column of a stall (1-based).
PlanIndex = Annotated[int, Field(strict=True, ge=1, le=999), JsonInt]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MarketInfo(_Strict):
    id: Identifier
    name: Name
    name_en: Name
    timezone: str = Field(description="IANA zone; market days are local days in it.")
    opens: time = time(6, 0)
    closes: time = time(19, 0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _opens_before_closing(self) -> MarketInfo:
        if self.opens >= self.closes:
            raise ValueError("opens must be before closes")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Product(_Strict):
    plu: Plu
    name_zh: Name
    name_en: Name
    category: Category
    unit: SaleUnit = SaleUnit.JIN


#: "Both row and col, or neither", as JSON Schema says it: either one present makes both
#: required, and both whole numbers or both null, so generated documents never split a place.
_WHOLE_PLACE: dict[str, JsonValue] = {
    "required": ["row", "col"],
    "oneOf": [
        {"properties": {"row": {"type": "integer"}, "col": {"type": "integer"}}},
        {"properties": {"row": {"type": "null"}, "col": {"type": "null"}}},
    ],
}


class Stall(_Strict):
    """A stall: its zone and its place on the floor plan (row, column) for the public maps.

    A stall a vendor names but the file does not list exists all the same, with
    none of these.
    """

    model_config = ConfigDict(
        json_schema_extra={"dependentSchemas": {"row": _WHOLE_PLACE, "col": _WHOLE_PLACE}}
    )

    id: Identifier
    zone: Name | None = None
    row: PlanIndex | None = None
    col: PlanIndex | None = None

    @model_validator(mode="after")
    def _placed_whole(self) -> Stall:
        if (self.row is None) != (self.col is None):
            raise ValueError("a stall's place on the floor plan needs both row and col")
        return self

    @property
    def place(self) -> tuple[int, int] | None:
        """(row, col) on the floor plan, if the stall has one."""
        return None if self.row is None or self.col is None else (self.row, self.col)


class HealthCertificate(_Strict):
    """A staff member's health certificate (健康证)."""

    holder: Name
    number: DocumentNo
    expires: date


class Vendor(_Strict):
    id: Identifier
    name: Name
    stall: Identifier = Field(
        description="The stall it trades at (or last traded at, if inactive)."
    )
    active: bool = Field(
        default=True,
        description="A vendor who left is inactive, not removed: history keeps naming them.",
    )
    contact: Name | None = None
    business_licence_no: DocumentNo | None = Field(default=None, description="营业执照号")
    food_licence_no: DocumentNo | None = Field(default=None, description="食品经营许可证号")
    food_licence_expires: date | None = None
    health_certificates: tuple[HealthCertificate, ...] = ()
    scales: tuple[Identifier, ...] = ()
    screens: tuple[Identifier, ...] = ()
    products: tuple[Plu, ...] = Field(default=(), description="PLUs this vendor usually sells.")
    categories: tuple[Category, ...] | None = Field(
        default=None,
        description="Categories the stall is registered to sell; by default those of its "
        "products. A sale of a product outside them is flagged (its origin is not verified).",
    )


class Gate(_Strict):
    id: Identifier
    name: Name


class IntakeStation(_Strict):
    id: Identifier
    name: Name


class MarketFile(_Strict):
    """The parsed market file, validated as a whole."""

    market: MarketInfo
    products: tuple[Product, ...]
    stalls: tuple[Stall, ...] = ()
    vendors: tuple[Vendor, ...]
    gates: tuple[Gate, ...] = ()
    intake: tuple[IntakeStation, ...] = ()
    disabled_devices: frozenset[Identifier] = Field(
        default=frozenset(),
        description="Devices that may not publish (replaced, lost): their readings are refused.",
    )
    food_safety: FoodSafetyPolicy = Field(
        default_factory=FoodSafetyPolicy,
        description="The daily rapid-test quota (schemas.foodsafety).",
    )
    retention: RetentionPolicy = Field(
        default_factory=RetentionPolicy,
        description="Days each kind of data is kept (schemas.retention); safe defaults.",
    )

    @model_validator(mode="after")
    def _references_resolve(self) -> MarketFile:
        _require_unique("product PLU", (p.plu for p in self.products))
        _require_unique("stall id", (s.id for s in self.stalls))
        _require_unique(
            "stall place (row, col)",
            (f"{s.place[0]},{s.place[1]}" for s in self.stalls if s.place is not None),
        )
        _require_unique("vendor id", (v.id for v in self.vendors))
        _require_unique("stall of an active vendor", (v.stall for v in self.vendors if v.active))
        _require_unique("device id", (d for d, _ in device_ids(self)))
        unknown_devices = sorted(set(self.disabled_devices) - {d for d, _ in device_ids(self)})
        if unknown_devices:
            raise ValueError(f"disabled_devices names unknown devices {unknown_devices}")
        known = {p.plu: p for p in self.products}
        for vendor in self.vendors:
            unknown = sorted(set(vendor.products) - known.keys())
            if unknown:
                raise ValueError(f"vendor {vendor.id} lists unknown products {unknown}")
            if vendor.categories is not None:
                outside = sorted(
                    plu for plu in vendor.products if known[plu].category not in vendor.categories
                )
                if outside:
                    raise ValueError(
                        f"vendor {vendor.id} lists products {outside} outside its categories"
                    )
        return self


def device_ids(market: MarketFile) -> Iterator[tuple[str, DeviceKind]]:
    """Every device the file declares with its kind, in file order (vendors' first)."""
    for vendor in market.vendors:
        yield from ((s, DeviceKind.SCALE) for s in vendor.scales)
        yield from ((s, DeviceKind.SCREEN) for s in vendor.screens)
    yield from ((g.id, DeviceKind.GATE) for g in market.gates)
    yield from ((i.id, DeviceKind.INTAKE) for i in market.intake)


def _require_unique(what: str, values: Iterable[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}")
        seen.add(value)


@dataclass(frozen=True, slots=True)
class Device:
    """A registered device: who it is, what it is, and which vendor owns it (if any)."""

    market: str
    id: str
    kind: DeviceKind
    vendor: str | None
    #: Why the device may not publish (disabled, or its vendor left); None if it may.
    refused_because: str | None = None

    @property
    def enabled(self) -> bool:
        return self.refused_because is None


class RegistryError(ValueError):
    """A market file is unreadable or inconsistent."""


@dataclass(frozen=True)
class Market:
    """One market, indexed for the lookups ingest does per message."""

    spec: MarketFile

    @property
    def id(self) -> str:
        return self.spec.market.id

    @property
    def tz(self) -> ZoneInfo:
        return self.spec.market.tz

    @property
    def retention(self) -> RetentionPolicy:
        return self.spec.retention

    @property
    def food_safety(self) -> FoodSafetyPolicy:
        return self.spec.food_safety

    @cached_property
    def devices(self) -> Mapping[str, Device]:
        owners = {s: v for v in self.spec.vendors for s in (*v.scales, *v.screens)}
        disabled = set(self.spec.disabled_devices)
        devices = {}
        for device_id, kind in device_ids(self.spec):
            owner = owners.get(device_id)
            refused = None
            if device_id in disabled:
                refused = f"device {device_id!r} is disabled"
            elif owner is not None and not owner.active:
                refused = f"device {device_id!r} belongs to vendor {owner.id!r}, who is inactive"
            devices[device_id] = Device(
                self.id, device_id, kind, None if owner is None else owner.id, refused
            )
        return devices

    @cached_property
    def active_vendors(self) -> tuple[Vendor, ...]:
        """The vendors trading here now, in file order (those who left are inactive)."""
        return tuple(vendor for vendor in self.spec.vendors if vendor.active)

    @cached_property
    def products(self) -> Mapping[str, Product]:
        return {p.plu: p for p in self.spec.products}

    @cached_property
    def vendors(self) -> Mapping[str, Vendor]:
        return {v.id: v for v in self.spec.vendors}

    @cached_property
    def stall_categories(self) -> Mapping[str, frozenset[Category]]:
        """The categories each vendor's stall may sell, by vendor id.

        Its ``categories``, or else the categories of its ``products``; a vendor
        with neither is absent (its sales are not checked by category).
        """
        allowed: dict[str, frozenset[Category]] = {}
        for vendor in self.spec.vendors:
            if vendor.categories is not None:
                allowed[vendor.id] = frozenset(vendor.categories)
            elif vendor.products:
                allowed[vendor.id] = frozenset(
                    self.products[plu].category for plu in vendor.products
                )
        return allowed

    def outside_categories(self, vendor: str, plu: str) -> bool:
        """Whether the vendor's stall is not registered for this product's category."""
        allowed = self.stall_categories.get(vendor)
        product = self.products.get(plu)
        return allowed is not None and product is not None and product.category not in allowed


class Registry:
    """Every market this deployment serves."""

    def __init__(self, markets: Iterable[Market]) -> None:
        self.markets: dict[str, Market] = {}
        owner_of_device: dict[str, str] = {}
        for market in markets:
            if market.id in self.markets:
                raise RegistryError(f"market {market.id!r} is declared twice")
            for device_id in market.devices:
                if device_id in owner_of_device:
                    raise RegistryError(
                        f"device id {device_id!r} is used by markets "
                        f"{owner_of_device[device_id]!r} and {market.id!r}; "
                        "device ids are MQTT user names and must be unique"
                    )
                owner_of_device[device_id] = market.id
            self.markets[market.id] = market

    @classmethod
    def load(cls, paths: Iterable[Path]) -> Registry:
        return cls(load_market(path) for path in paths)

    def device(self, market: str, device_id: str) -> Device | None:
        found = self.markets.get(market)
        return None if found is None else found.devices.get(device_id)

    def __iter__(self) -> Iterator[Market]:
        return iter(self.markets.values())

    def retention(self) -> dict[str, RetentionPolicy]:
        """Each market's retention policy, by market id: what a store's retention pass takes."""
        return {market.id: market.retention for market in self}


class RegistrySource(Protocol):
    """Where a process gets the registry: fixed market files, or the market database
    (``marketdb.follow.RegistryFollower``), which changes while it runs."""

    def current(self) -> Registry: ...


class FixedRegistry:
    """A registry that does not change while the process runs (market files)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def current(self) -> Registry:
        return self._registry


def load_market(path: Path) -> Market:
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text)
    except OSError as exc:
        raise RegistryError(f"cannot read market file {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return Market(MarketFile.model_validate(raw))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        line = line_of(text, errors[0]["loc"]) if errors else None
        where = f"{path}: line {line}" if line is not None else str(path)
        raise RegistryError(f"{where}: {exc}") from exc


def line_of(text: str, loc: tuple[int | str, ...]) -> int | None:
    """The line (1-based) of a market file's TOML that an error at ``loc`` is about:
    ``("products", 38, "unit")`` is the ``unit`` key of the 39th ``[[products]]`` table,
    or that table's header when the key is missing. None for the file as a whole."""
    if not loc or not isinstance(loc[0], str):
        return None
    table, rest = loc[0], loc[1:]
    index = rest[0] if rest and isinstance(rest[0], int) else None
    key = next((part for part in rest if isinstance(part, str)), None)
    header = f"[[{table}]]" if index is not None else f"[{table}]"
    seen = -1
    start: int | None = None if index is not None or rest else 0
    lines = text.splitlines()
    for number, raw_line in enumerate(lines):
        stripped = raw_line.strip()
        if stripped == header:
            seen += 1
            if index is None or seen == index:
                start = number
                break
    if start is None:
        return None
    wanted = key if (index is not None or rest) else table
    for number in range(start + (1 if rest else 0), len(lines)):
        stripped = lines[number].strip()
        if rest and number > start and stripped.startswith("["):
            break  # the next table: the key is missing from this one
        if wanted is not None and stripped.split("=", 1)[0].strip() == wanted:
            return number + 1
    return start + 1 if rest else None
