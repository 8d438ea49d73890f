"""The market file: loading, cross-references and deployment-wide uniqueness of device ids."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from schemas.messages import DeviceKind
from schemas.registry import Category, Device, Registry, RegistryError, SaleUnit, load_market
from schemas.retention import DEFAULT_DAYS, DataKind, RetentionPolicy
from tests.conftest import EXAMPLE_MARKET, REPO

PRODUCTS = """
[[products]]
plu = "1001"
name_zh = "西红柿"
name_en = "Tomato"
category = "vegetables"

[[products]]
plu = "2001"
name_zh = "五花肉"
name_en = "Pork belly"
category = "meat"
unit = "kg"
"""


def market_toml(
    market_id: str = "nanmen",
    *,
    timezone: str = "Asia/Shanghai",
    opens: str = "06:00:00",
    scales: str = '["S-A01-1", "S-A01-2"]',
    vendor_products: str = '["1001", "2001"]',
    gate: str = "G-north",
    extra_vendor: str = "",
    extra_market_key: str = "",
) -> str:
    return f"""
[market]
id = "{market_id}"
name = "南门菜市场"
name_en = "Nanmen Market"
timezone = "{timezone}"
opens = {opens}
closes = 19:00:00
{extra_market_key}
{PRODUCTS}
[[vendors]]
id = "v-chen"
name = "陈记蔬菜"
stall = "A01"
scales = {scales}
screens = ["P-A01"]
products = {vendor_products}
{extra_vendor}
[[gates]]
id = "{gate}"
name = "北门"

[[intake]]
id = "IN-1"
name = "收货区"
"""


def write(tmp_path: Path, text: str, name: str = "market.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_market_file_loads_with_every_device_indexed(tmp_path: Path) -> None:
    market = load_market(write(tmp_path, market_toml()))
    assert market.id == "nanmen"
    assert market.tz == ZoneInfo("Asia/Shanghai")
    assert market.spec.market.opens == time(6, 0)
    assert dict(market.devices) == {
        "S-A01-1": Device("nanmen", "S-A01-1", DeviceKind.SCALE, "v-chen"),
        "S-A01-2": Device("nanmen", "S-A01-2", DeviceKind.SCALE, "v-chen"),
        "P-A01": Device("nanmen", "P-A01", DeviceKind.SCREEN, "v-chen"),
        "G-north": Device("nanmen", "G-north", DeviceKind.GATE, None),
        "IN-1": Device("nanmen", "IN-1", DeviceKind.INTAKE, None),
    }


def test_products_and_vendors_are_indexed(tmp_path: Path) -> None:
    market = load_market(write(tmp_path, market_toml()))
    assert market.products["1001"].unit is SaleUnit.JIN  # the default
    assert market.products["2001"].unit is SaleUnit.KG
    assert market.products["2001"].category is Category.MEAT
    assert market.vendors["v-chen"].stall == "A01"


def test_registry_finds_devices_per_market(tmp_path: Path) -> None:
    first = write(tmp_path, market_toml("nanmen"), "nanmen.toml")
    second = write(
        tmp_path,
        market_toml("beiguan", scales='["S-B01-1"]', gate="G-south")
        .replace('"P-A01"', '"P-B01"')
        .replace('"IN-1"', '"IN-2"'),
        "beiguan.toml",
    )
    registry = Registry.load([first, second])
    assert [m.id for m in registry] == ["nanmen", "beiguan"]
    assert registry.device("beiguan", "S-B01-1") == Device(
        "beiguan", "S-B01-1", DeviceKind.SCALE, "v-chen"
    )
    assert registry.device("nanmen", "S-B01-1") is None
    assert registry.device("nowhere", "S-A01-1") is None


def test_device_id_used_by_two_markets_is_rejected(tmp_path: Path) -> None:
    """Device ids are MQTT user names, so they must be unique across the deployment."""
    first = write(tmp_path, market_toml("nanmen"), "nanmen.toml")
    second = write(tmp_path, market_toml("beiguan"), "beiguan.toml")
    with pytest.raises(RegistryError, match="device id 'S-A01-1' is used by markets"):
        Registry.load([first, second])


def test_market_declared_twice_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, market_toml())
    with pytest.raises(RegistryError, match="market 'nanmen' is declared twice"):
        Registry([load_market(path), load_market(path)])


def test_vendor_listing_an_unknown_product_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, market_toml(vendor_products='["1001", "9999"]'))
    with pytest.raises(RegistryError, match=r"vendor v-chen lists unknown products \['9999'\]"):
        load_market(path)


def test_stall_categories_default_to_those_of_the_vendors_products(tmp_path: Path) -> None:
    market = load_market(write(tmp_path, market_toml(vendor_products='["1001"]')))
    assert market.stall_categories == {"v-chen": frozenset({Category.VEGETABLES})}
    assert market.outside_categories("v-chen", "2001")
    assert not market.outside_categories("v-chen", "1001")


def test_declared_stall_categories_are_used(tmp_path: Path) -> None:
    declared = market_toml(vendor_products='["1001"]').replace(
        'products = ["1001"]', 'products = ["1001"]\ncategories = ["vegetables", "meat"]'
    )
    market = load_market(write(tmp_path, declared))
    assert market.stall_categories["v-chen"] == {Category.VEGETABLES, Category.MEAT}
    assert not market.outside_categories("v-chen", "2001")


def test_a_vendor_without_products_or_categories_is_not_checked(tmp_path: Path) -> None:
    market = load_market(write(tmp_path, market_toml(vendor_products="[]")))
    assert "v-chen" not in market.stall_categories
    assert not market.outside_categories("v-chen", "2001")


def test_products_outside_the_declared_categories_are_rejected(tmp_path: Path) -> None:
    declared = market_toml().replace(
        'products = ["1001", "2001"]', 'products = ["1001", "2001"]\ncategories = ["vegetables"]'
    )
    with pytest.raises(RegistryError, match=r"products \['2001'\] outside its categories"):
        load_market(write(tmp_path, declared))


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "Asia/Shanghai ", "../../etc/passwd", ""])
def test_unknown_time_zone_is_rejected(tmp_path: Path, zone: str) -> None:
    with pytest.raises(RegistryError, match="unknown time zone"):
        load_market(write(tmp_path, market_toml(timezone=zone)))


def test_market_must_open_before_it_closes(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="opens must be before closes"):
        load_market(write(tmp_path, market_toml(opens="20:00:00")))


def test_scale_owned_by_two_vendors_is_rejected(tmp_path: Path) -> None:
    second_vendor = """
[[vendors]]
id = "v-li"
name = "李记"
stall = "A02"
scales = ["S-A01-1"]
"""
    with pytest.raises(RegistryError, match="duplicate device id 'S-A01-1'"):
        load_market(write(tmp_path, market_toml(extra_vendor=second_vendor)))


def test_device_ids_are_unique_across_kinds(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="duplicate device id 'S-A01-1'"):
        load_market(write(tmp_path, market_toml(gate="S-A01-1")))


def test_two_vendors_on_one_stall_are_rejected(tmp_path: Path) -> None:
    second_vendor = """
[[vendors]]
id = "v-li"
name = "李记"
stall = "A01"
"""
    with pytest.raises(RegistryError, match="duplicate stall of an active vendor 'A01'"):
        load_market(write(tmp_path, market_toml(extra_vendor=second_vendor)))


def test_duplicate_product_plu_is_rejected(tmp_path: Path) -> None:
    text = market_toml().replace('plu = "2001"', 'plu = "1001"')
    with pytest.raises(RegistryError, match="duplicate product PLU '1001'"):
        load_market(write(tmp_path, text))


@pytest.mark.parametrize("device", ["S/A01", "S+", "S#1", "S A01", "", "x" * 33])
def test_device_ids_cannot_contain_topic_syntax(tmp_path: Path, device: str) -> None:
    """A device id becomes a topic level and a user name: no separators or wildcards."""
    with pytest.raises(RegistryError, match="scales"):
        load_market(write(tmp_path, market_toml(scales=f'["{device}"]')))


def test_unknown_keys_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="Extra inputs are not permitted"):
        load_market(write(tmp_path, market_toml(extra_market_key='currency = "CNY"')))


def test_unreadable_file_is_a_registry_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read market file"):
        load_market(tmp_path / "missing.toml")


def test_invalid_toml_is_a_registry_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="not valid TOML"):
        load_market(write(tmp_path, "[market\nid = 1"))


def test_error_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, market_toml(timezone="Nowhere/Land"))
    with pytest.raises(RegistryError, match=str(path)):
        load_market(path)


def test_example_market_loads_with_every_kind_of_device() -> None:
    market = load_market(EXAMPLE_MARKET)
    registry = Registry([market])
    assert market.id == "nanmen"
    assert market.devices
    kinds = {device.kind for device in market.devices.values()}
    assert kinds == set(DeviceKind)
    for device in market.devices.values():
        assert registry.device(market.id, device.id) == device


def test_documented_example_is_a_valid_market_file(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "market-file.md").read_text(encoding="utf-8")
    found = re.search(r"```toml\n(.*?)```", doc, re.DOTALL)
    assert found is not None
    market = load_market(write(tmp_path, found.group(1)))
    assert market.id == "nanmen"
    assert {d.id: d.kind for d in market.devices.values()} == {
        "S-A01-1": DeviceKind.SCALE,
        "S-A01-2": DeviceKind.SCALE,
        "P-A01": DeviceKind.SCREEN,
        "S-B03-1": DeviceKind.SCALE,
        "G-north": DeviceKind.GATE,
        "IN-1": DeviceKind.INTAKE,
    }


# -- [retention] ---------------------------------------------------------------


def with_retention(table: str) -> str:
    return market_toml() + f"\n[retention]\n{table}\n"


def test_retention_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    market = load_market(write(tmp_path, market_toml()))
    assert {kind: market.retention.days(kind) for kind in DataKind} == {
        DataKind.TRACE: 1095,
        DataKind.PRICES: 730,
        DataKind.HEARTBEATS: 30,
        DataKind.GATE_COUNTS: 90,
        DataKind.DEAD_LETTERS: 90,
        DataKind.ROLLUPS: 3650,
    }
    assert {kind: market.retention.days(kind) for kind in DataKind} == DEFAULT_DAYS


def test_retention_is_set_per_kind_and_per_market(tmp_path: Path) -> None:
    nanmen = write(tmp_path, with_retention("heartbeats = 7\ntrace = 1825"), "nanmen.toml")
    other = write(
        tmp_path,
        market_toml("beiguan", scales='["S-B01-1"]', gate="G-south")
        .replace('"P-A01"', '"P-B01"')
        .replace('"IN-1"', '"IN-2"'),
        "beiguan.toml",
    )
    registry = Registry.load([nanmen, other])
    policies = registry.retention()
    assert (policies["nanmen"].heartbeats, policies["nanmen"].trace) == (7, 1825)
    assert policies["nanmen"].prices == DEFAULT_DAYS[DataKind.PRICES]
    assert policies["beiguan"] == RetentionPolicy()


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ("trace = 365", "trace records .* must be kept at least 730 days"),
        ("heartbeats = 0", "heartbeats\n.*greater than or equal to 1"),
        ("prices = -5", "prices\n.*greater than or equal to 1"),
        ('gate_counts = "90"', "gate_counts\n.*valid integer"),
        ("dead_letters = 1.5", "dead_letters\n.*valid integer"),
        ("rollups = 40000", "rollups\n.*less than or equal to 36500"),
        ("rollups = 365", r"retention.rollups \(365 days\) is shorter than retention.trace"),
        ("gate_counts = 4000", r"shorter than retention.gate_counts \(4000 days\)"),
        ("logs = 30", "logs\n.*Extra inputs are not permitted"),
    ],
)
def test_bad_retention_is_rejected_with_the_key(tmp_path: Path, table: str, error: str) -> None:
    with pytest.raises(RegistryError, match=re.compile(error, re.DOTALL)):
        load_market(write(tmp_path, with_retention(table)))


def test_the_cutoff_is_floored_to_the_utc_hour() -> None:
    now = datetime(2027, 3, 1, 10, 42, 7, tzinfo=ZoneInfo("Asia/Kolkata"))  # 05:12:07 UTC
    policy = RetentionPolicy(heartbeats=30)
    assert policy.cutoff(DataKind.HEARTBEATS, now) == datetime(2027, 1, 30, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        policy.cutoff(DataKind.HEARTBEATS, now.replace(tzinfo=None))


# -- management data: stalls, vendor records, inactive vendors, disabled devices ------------

VENDOR_RECORDS = """active = true
contact = "138 0000 0000"
business_licence_no = "92320800MA1XYZ1234"
food_licence_no = "JY13208020012345"
food_licence_expires = 2027-03-31

[[vendors.health_certificates]]
holder = "陈大"
number = "苏宿健2026-00123"
expires = 2027-01-15
"""

STALLS = """
[[stalls]]
id = "A01"
zone = "蔬菜区"
row = 1
col = 3
"""


def test_stalls_and_vendor_records_load(tmp_path: Path) -> None:
    text = market_toml(extra_vendor=VENDOR_RECORDS).replace("[[vendors]]", STALLS + "[[vendors]]")
    market = load_market(write(tmp_path, text))
    (stall,) = market.spec.stalls
    assert (stall.id, stall.zone, stall.row, stall.col) == ("A01", "蔬菜区", 1, 3)
    vendor = market.vendors["v-chen"]
    assert vendor.food_licence_expires == date(2027, 3, 31)
    (certificate,) = vendor.health_certificates
    assert (certificate.holder, certificate.number) == ("陈大", "苏宿健2026-00123")


def test_a_vendor_who_left_keeps_the_stall_a_new_vendor_takes(tmp_path: Path) -> None:
    left = (
        '\n[[vendors]]\nid = "v-old"\nname = "老王"\nstall = "A01"\n'
        'active = false\nscales = ["S-OLD"]\n'
    )
    market = load_market(write(tmp_path, market_toml(extra_vendor=left)))
    assert [vendor.id for vendor in market.active_vendors] == ["v-chen"]
    assert market.devices["S-OLD"].refused_because == (
        "device 'S-OLD' belongs to vendor 'v-old', who is inactive"
    )
    assert market.devices["S-A01-1"].enabled


def test_a_disabled_device_is_refused_and_an_unknown_one_may_not_be_disabled(
    tmp_path: Path,
) -> None:
    market = load_market(write(tmp_path, 'disabled_devices = ["S-A01-2"]\n' + market_toml()))
    assert market.devices["S-A01-2"].refused_because == "device 'S-A01-2' is disabled"
    with pytest.raises(RegistryError, match=r"disabled_devices names unknown devices \['S-X'\]"):
        load_market(write(tmp_path, 'disabled_devices = ["S-X"]\n' + market_toml()))


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ('food_licence_no = "JY 123"', "food_licence_no"),
        ("food_licence_expires = 2027-02-30", "not valid TOML"),
        ('contact = ""', "contact"),
    ],
)
def test_bad_vendor_records_are_rejected_with_the_field(
    tmp_path: Path, line: str, error: str
) -> None:
    with pytest.raises(RegistryError, match=error):
        load_market(write(tmp_path, market_toml(extra_vendor=line)))


def test_a_stall_off_the_floor_plan_is_rejected(tmp_path: Path) -> None:
    text = market_toml().replace(
        "[[vendors]]", STALLS.replace("row = 1", "row = 0") + "[[vendors]]"
    )
    with pytest.raises(RegistryError, match=r"stalls\.0\.row"):
        load_market(write(tmp_path, text))
