"""The live state follows a registry that changes while it runs (the market database):
a vendor who left has no screen and no price on the board, a new vendor at their stall
does, a new market starts empty, and every change moves the market's version."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from marketview.live import LiveState, UnknownVendor
from schemas.registry import Registry, Vendor, load_market
from storage.interfaces.prices import PriceRow
from tests.ingest.helpers import write_market

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


class Switchable:
    """A registry source a test changes."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def current(self) -> Registry:
        return self.registry


def price(vendor: str, plu: str, fen: int, msg_id: int) -> PriceRow:
    return PriceRow("tm", vendor, plu, f"P-{vendor}", fen, None, NOW, msg_id)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry([load_market(write_market(tmp_path))])


def with_vendors(registry: Registry, *vendors: Vendor) -> Registry:
    market = registry.markets["tm"]
    spec = market.spec.model_copy(update={"vendors": vendors})
    return Registry([type(market)(spec)])


def test_a_vendor_who_left_loses_screen_and_board_and_the_new_one_at_the_stall_gets_them(
    registry: Registry,
) -> None:
    source = Switchable(registry)
    live = LiveState(source, clock=lambda: NOW)
    live.merge_prices("tm", [price("V01", "1001", 398, 1), price("V02", "2001", 2_600, 1)])
    before = live.version("tm")
    v01, v02 = registry.markets["tm"].spec.vendors
    newcomer = Vendor(id="V03", name="新菜摊", stall=v01.stall, products=("1001",))

    source.registry = with_vendors(
        registry, v01.model_copy(update={"active": False}), v02, newcomer
    )

    assert live.version("tm") > before
    with pytest.raises(UnknownVendor):
        live.vendor_prices("tm", "V01")
    assert live.stall_screen("tm", v01.stall).vendor == "V03"
    assert [line.plu for line in live.board("tm").products] == ["2001"]
    live.merge_prices("tm", [price("V01", "1001", 500, 2), price("V03", "1001", 420, 1)])
    assert [q.plu for q in live.vendor_prices("tm", "V03").quotes] == ["1001"]
    (cabbage,) = [line for line in live.board("tm").products if line.plu == "1001"]
    assert cabbage.vendors == 1


def test_a_new_market_starts_empty(registry: Registry, tmp_path: Path) -> None:
    source = Switchable(registry)
    live = LiveState(source, clock=lambda: NOW)
    other = tmp_path / "other"
    other.mkdir()
    text = write_market(other).read_text(encoding="utf-8").replace('id = "tm"', 'id = "tm2"')
    text = text.replace('"S-', '"T2-S-').replace('"P-', '"T2-P-').replace('"G-N"', '"T2-G"')
    text = text.replace('"IN-1"', '"T2-IN"')
    path = other / "tm2.toml"
    path.write_text(text, encoding="utf-8")

    source.registry = Registry([*registry, load_market(path)])

    assert live.board("tm2").products == ()
    assert live.device_seen("tm2") == {}
