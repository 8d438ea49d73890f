"""Synthetic larger markets, and writing a market back to a TOML market file.

``scale_market(market, vendors=300)`` clones the example market's vendors (with
their scales and screens) until it has the requested number, so benchmarks can
load a year of a 300-vendor market. Clones get the suffix ``.N`` on their vendor
id, stall and device ids (``V-A01`` → ``V-A01.2``, ``S-A01`` → ``S-A01.2``). The
market keeps its id, gates and intake stations: a scaled market replaces the
original in a deployment, it does not sit beside it.

``dump_market_toml`` writes a market file that ``schemas.registry.load_market``
reads back to an equal market, so ingest and the API can load the same registry
the simulator used.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import time

from pydantic import ValidationError

from schemas.registry import Market, MarketFile, RegistryError, SaleUnit, Vendor


def scale_market(market: Market, vendors: int = 300) -> Market:
    """``market`` with exactly ``vendors`` vendors: the first ones, then numbered clones."""
    if vendors < 1:
        raise ValueError("a market needs at least one vendor")
    originals = market.spec.vendors
    if not originals:
        raise RegistryError(f"market {market.id} has no vendors to clone")
    chosen = [
        originals[i]
        if i < len(originals)
        else _clone(originals[i % len(originals)], i // len(originals) + 1)
        for i in range(vendors)
    ]
    try:
        spec = MarketFile.model_validate(
            {**market.spec.model_dump(), "vendors": [v.model_dump() for v in chosen]}
        )
    except ValidationError as exc:
        raise RegistryError(f"cannot scale market {market.id} to {vendors} vendors: {exc}") from exc
    return Market(spec)


def _clone(vendor: Vendor, copy: int) -> Vendor:
    suffix = f".{copy}"
    return vendor.model_copy(
        update={
            "id": vendor.id + suffix,
            "stall": vendor.stall + suffix,
            "scales": tuple(s + suffix for s in vendor.scales),
            "screens": tuple(s + suffix for s in vendor.screens),
        }
    )


def dump_market_toml(market: Market | MarketFile, *, header: str = "") -> str:
    """The market file for ``market`` as TOML text."""
    spec = market.spec if isinstance(market, Market) else market
    info = spec.market
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    if lines:
        lines.append("")
    lines += [
        "[market]",
        _pair("id", info.id),
        _pair("name", info.name),
        _pair("name_en", info.name_en),
        _pair("timezone", info.timezone),
        f"opens = {_time(info.opens)}",
        f"closes = {_time(info.closes)}",
    ]
    for product in spec.products:
        lines += [
            "",
            "[[products]]",
            _pair("plu", product.plu),
            _pair("name_zh", product.name_zh),
            _pair("name_en", product.name_en),
            _pair("category", product.category.value),
        ]
        if product.unit is not SaleUnit.JIN:
            lines.append(_pair("unit", product.unit.value))
    for vendor in spec.vendors:
        lines += [
            "",
            "[[vendors]]",
            _pair("id", vendor.id),
            _pair("name", vendor.name),
            _pair("stall", vendor.stall),
            f"scales = {_array(vendor.scales)}",
            f"screens = {_array(vendor.screens)}",
            f"products = {_array(vendor.products)}",
        ]
        if vendor.categories is not None:
            lines.append(f"categories = {_array(c.value for c in vendor.categories)}")
    for table, entries in (("gates", spec.gates), ("intake", spec.intake)):
        for entry in entries:
            lines += ["", f"[[{table}]]", _pair("id", entry.id), _pair("name", entry.name)]
    food_safety = spec.food_safety.model_dump(exclude_defaults=True)
    if food_safety:
        lines += ["", "[food_safety]", *(f"{key} = {value}" for key, value in food_safety.items())]
    retention = spec.retention.model_dump(exclude_defaults=True)
    if retention:
        lines += ["", "[retention]", *(f"{kind} = {days}" for kind, days in retention.items())]
    return "\n".join(lines) + "\n"


def _pair(key: str, value: str) -> str:
    return f"{key} = {_string(value)}"


def _string(value: str) -> str:
    # JSON's escapes (\" \\ \n \uXXXX …) are valid TOML basic-string escapes; TOML also
    # requires DEL escaped, which JSON leaves alone
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _array(values: Iterable[str]) -> str:
    return "[" + ", ".join(_string(v) for v in values) + "]"


def _time(value: time) -> str:
    return value.isoformat(timespec="seconds" if value.microsecond == 0 else "microseconds")
