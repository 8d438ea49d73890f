"""Market files into the market database and out again, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from marketdb._exceptions import Conflict, NotFound
from marketdb.marketfile import dumps, export_market, import_market, load_registry
from marketdb.models import Base, DeviceRow, MarketRow, VendorRow
from schemas.registry import MarketFile, Registry, load_market
from tests.conftest import REPO

EXAMPLES = sorted((REPO / "examples" / "markets").glob("*.toml"))

MANAGED = """disabled_devices = ["S-B02-1"]

[market]
id = "managed"
name = "管理示例市场"
name_en = "Managed market"
timezone = "Asia/Shanghai"
opens = 06:30:00
closes = 18:00:00

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

[[stalls]]
id = "B01"
zone = "肉类区"
row = 2
col = 1

[[stalls]]
id = "C09"

[[vendors]]
id = "v-old"
name = "老王肉铺"
stall = "B01"
active = false
scales = ["S-OLD"]

[[vendors]]
id = "v-wang"
name = "王记肉铺"
stall = "B01"
contact = "139 0000 0001"
business_licence_no = "92320800MA1XYZ9999"
food_licence_no = "JY13208020099999"
food_licence_expires = 2027-06-30
scales = ["S-B02-1", "S-B02-2"]
screens = ["P-B02"]
products = ["2001"]
categories = ["meat", "poultry"]

[[vendors.health_certificates]]
holder = "王五"
number = "苏宿健2026-00777"
expires = 2027-02-01

[[vendors.health_certificates]]
holder = "赵六"
number = "苏宿健2026-00778"
expires = 2026-12-20

[[vendors]]
id = "v-none"
name = "无类别摊"
stall = "A07"
categories = []

[[gates]]
id = "G-M"
name = "正门"

[[intake]]
id = "IN-M"
name = "收货区"

[food_safety]
daily_test_quota = 12

[retention]
heartbeats = 14
"""


def managed_file(tmp_path: Path) -> Path:
    path = tmp_path / "managed.toml"
    path.write_text(MANAGED, encoding="utf-8")
    return path


def round_trip(session: Session, spec: MarketFile, tmp_path: Path) -> MarketFile:
    import_market(session, spec)
    session.commit()
    exported = export_market(session, spec.market.id)
    path = tmp_path / f"{spec.market.id}-exported.toml"
    path.write_text(dumps(exported), encoding="utf-8")
    return load_market(path).spec


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_market_round_trips_exactly(
    session: Session, tmp_path: Path, example: Path
) -> None:
    spec = load_market(example).spec

    again = round_trip(session, spec, tmp_path)

    assert again == spec
    assert dumps(export_market(session, spec.market.id)) == dumps(again)


def test_management_data_round_trips_exactly(session: Session, tmp_path: Path) -> None:
    spec = load_market(managed_file(tmp_path)).spec

    again = round_trip(session, spec, tmp_path)

    assert again == spec
    assert dumps(again) == MANAGED
    assert again.vendors[2].categories == ()  # declared empty, not "those of its products"
    assert again.vendors[0].categories is None


def test_the_registry_read_from_the_database_is_the_files(session: Session) -> None:
    from_files = Registry.load(EXAMPLES)
    for market in from_files:
        import_market(session, market.spec)
    session.commit()

    stored = load_registry(session)

    assert {m.id: m.spec for m in stored} == {m.id: m.spec for m in from_files}
    assert {m.id: dict(m.devices) for m in stored} == {m.id: dict(m.devices) for m in from_files}


def test_an_existing_market_is_replaced_only_when_asked(session: Session, tmp_path: Path) -> None:
    spec = load_market(managed_file(tmp_path)).spec
    import_market(session, spec)
    session.commit()
    smaller = spec.model_copy(update={"vendors": spec.vendors[1:2]})

    with pytest.raises(Conflict, match="market 'managed' exists"):
        import_market(session, smaller)
    session.rollback()
    assert export_market(session, "managed") == spec

    import_market(session, smaller, replace=True)
    session.commit()
    assert [v.id for v in export_market(session, "managed").vendors] == ["v-wang"]
    assert session.scalar(select(func.count()).select_from(VendorRow)) == 1


def test_a_device_id_of_another_market_is_refused_and_nothing_changes(
    session: Session, tmp_path: Path
) -> None:
    nanmen = load_market(REPO / "examples" / "markets" / "nanmen.toml").spec
    import_market(session, nanmen)
    session.commit()
    scale = nanmen.vendors[0].scales[0]
    clash = MANAGED.replace('scales = ["S-OLD"]', f'scales = ["{scale}"]')
    path = tmp_path / "clash.toml"
    path.write_text(clash, encoding="utf-8")

    with pytest.raises(Conflict, match=f"'{scale}' \\(nanmen\\)"):
        import_market(session, load_market(path).spec)
    session.rollback()

    assert session.scalars(select(MarketRow.id)).all() == ["nanmen"]
    assert session.get(DeviceRow, scale) is not None


def test_an_unknown_market_is_not_found(session: Session) -> None:
    with pytest.raises(NotFound, match="no market 'nowhere'"):
        export_market(session, "nowhere")


def test_the_migrations_build_exactly_the_models_schema(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
