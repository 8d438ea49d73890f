"""Synthetic larger markets and writing market files."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.registry import Market, Registry, RegistryError, load_market
from schemas.retention import RetentionPolicy
from simulators.scaling import dump_market_toml, scale_market


@pytest.mark.parametrize("name", ["nanmen", "xiaohe"])
def test_example_files_round_trip_through_toml(tmp_path: Path, name: str) -> None:
    from tests.conftest import REPO

    market = load_market(REPO / "examples" / "markets" / f"{name}.toml")
    path = tmp_path / "market.toml"
    path.write_text(dump_market_toml(market, header="written by a test\nsecond line"))
    assert load_market(path).spec == market.spec


def test_a_retention_table_round_trips_through_toml(tmp_path: Path) -> None:
    from tests.conftest import REPO

    source = tmp_path / "source.toml"
    text = (REPO / "examples" / "markets" / "xiaohe.toml").read_text(encoding="utf-8")
    source.write_text(text + "\n[retention]\nheartbeats = 14\ntrace = 1825\n", encoding="utf-8")
    market = load_market(source)
    path = tmp_path / "market.toml"
    path.write_text(dump_market_toml(market), encoding="utf-8")
    assert load_market(path).retention == RetentionPolicy(heartbeats=14, trace=1825)


def test_example_markets_form_one_deployment(example_market: Market, xiaohe_market: Market) -> None:
    registry = Registry([example_market, xiaohe_market])
    assert set(registry.markets) == {"nanmen", "xiaohe"}
    assert len(example_market.spec.vendors) == 40
    assert all(3 <= len(vendor.products) <= 12 for vendor in example_market.spec.vendors)
    assert all(len(v.scales) == len(v.screens) == 1 for v in example_market.spec.vendors)


def test_scaling_clones_vendors_with_unique_ids(example_market: Market, tmp_path: Path) -> None:
    scaled = scale_market(example_market, vendors=300)
    vendors = scaled.spec.vendors
    assert len(vendors) == 300
    assert vendors[:40] == example_market.spec.vendors
    assert vendors[40].id == "V-A01.2"
    assert vendors[40].scales == ("S-A01.2",)
    assert len(scaled.devices) == 300 * 2 + 4 + 2
    path = tmp_path / "big.toml"
    path.write_text(dump_market_toml(scaled))
    assert load_market(path).spec == scaled.spec


def test_scaling_down_keeps_the_first_vendors(example_market: Market) -> None:
    assert scale_market(example_market, vendors=5).spec.vendors == example_market.spec.vendors[:5]


def test_scaling_reports_clashing_ids(example_market: Market) -> None:
    clash = example_market.spec.vendors[1].model_copy(update={"id": "V-A01.2"})
    market = Market(
        example_market.spec.model_copy(update={"vendors": (example_market.spec.vendors[0], clash)})
    )
    with pytest.raises(RegistryError, match="cannot scale"):
        scale_market(market, vendors=4)


def test_strings_are_escaped_for_toml(example_market: Market, tmp_path: Path) -> None:
    odd = example_market.spec.market.model_copy(update={"name": 'He said "hi" \\ \x7f'})
    market = Market(example_market.spec.model_copy(update={"market": odd}))
    path = tmp_path / "odd.toml"
    path.write_text(dump_market_toml(market))
    assert load_market(path).spec.market.name == 'He said "hi" \\ \x7f'
