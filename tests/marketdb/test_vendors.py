"""Managing vendors in the market database, on SQLite and PostgreSQL: versions, audit,
the market's rules, deactivation."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from marketdb._exceptions import Conflict, InvalidChange, StaleEdit
from marketdb.changes import revision
from marketdb.database import session_factory
from marketdb.marketfile import export_market, import_market, load_registry
from marketdb.models import AuditRow
from marketdb.vendors import create_vendor, get_vendor, set_vendor_active, update_vendor
from schemas.registry import HealthCertificate, Vendor, load_market
from tests.conftest import REPO

XIAOHE = REPO / "examples" / "markets" / "xiaohe.toml"
NOW = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)


@pytest.fixture
def seeded(session: Session) -> Session:
    import_market(session, load_market(XIAOHE).spec)
    session.commit()
    return session


def newcomer(**changes: object) -> Vendor:
    fields: dict[str, object] = {
        "id": "XH-V09",
        "name": "新来的豆腐坊",
        "stall": "D01",
        "products": (),
        "contact": "137 0000 0009",
        "food_licence_no": "JY13208020000009",
        "food_licence_expires": date(2027, 5, 1),
        "health_certificates": (
            HealthCertificate(holder="孙九", number="苏宿健2026-00909", expires=date(2027, 4, 1)),
        ),
    }
    return Vendor(**(fields | changes))  # type: ignore[arg-type]


def audit(session: Session) -> list[AuditRow]:
    return list(session.scalars(select(AuditRow).order_by(AuditRow.id)))


def test_a_new_vendor_is_stored_whole_audited_and_counted(seeded: Session) -> None:
    before = revision(seeded)

    created = create_vendor(seeded, "xiaohe", newcomer(), actor="manager:li", clock=lambda: NOW)
    seeded.commit()

    assert created.version == 1
    assert get_vendor(seeded, "xiaohe", "XH-V09") == created
    assert export_market(seeded, "xiaohe").vendors[-1] == newcomer()
    assert revision(seeded) == before + 1
    last = audit(seeded)[-1]
    assert (last.actor, last.action, last.entity, last.entity_id) == (
        "manager:li",
        "create",
        "vendor",
        "XH-V09",
    )
    assert last.at == NOW
    assert json.loads(last.detail)["after"]["food_licence_no"] == "JY13208020000009"


def test_an_edit_names_its_version_and_the_audit_keeps_what_changed(seeded: Session) -> None:
    stored = get_vendor(seeded, "xiaohe", "XH-V01")
    renamed = stored.vendor.model_copy(update={"name": "陈记新鲜蔬菜", "contact": "138 1"})

    saved = update_vendor(seeded, "xiaohe", renamed, if_version=stored.version, actor="manager:li")
    seeded.commit()

    assert saved.version == stored.version + 1
    assert get_vendor(seeded, "xiaohe", "XH-V01").vendor == renamed
    detail = json.loads(audit(seeded)[-1].detail)
    assert detail == {
        "before": {"contact": None, "name": stored.vendor.name},
        "after": {"contact": "138 1", "name": "陈记新鲜蔬菜"},
    }


def test_a_stale_edit_is_refused_and_the_other_edit_kept(engine: Engine, seeded: Session) -> None:
    first = get_vendor(seeded, "xiaohe", "XH-V01")
    seeded.commit()
    with session_factory(engine)() as other:
        theirs = first.vendor.model_copy(update={"name": "他们的改动"})
        update_vendor(other, "xiaohe", theirs, if_version=first.version, actor="manager:wang")
        other.commit()
    mine = first.vendor.model_copy(update={"name": "我的改动"})

    with pytest.raises(StaleEdit, match="changed by someone else since you read version 1"):
        update_vendor(seeded, "xiaohe", mine, if_version=first.version, actor="manager:li")
    seeded.rollback()

    assert get_vendor(seeded, "xiaohe", "XH-V01").vendor.name == "他们的改动"


def test_a_stall_another_active_vendor_holds_is_refused_on_the_stall_field(
    seeded: Session,
) -> None:
    taken = get_vendor(seeded, "xiaohe", "XH-V02").vendor.stall
    before = revision(seeded)

    with pytest.raises(InvalidChange) as refused:
        create_vendor(seeded, "xiaohe", newcomer(stall=taken), actor="manager:li")
    seeded.rollback()

    assert refused.value.field == "stall"
    assert f"'{taken}'" in str(refused.value)
    assert [v.id for v in export_market(seeded, "xiaohe").vendors][-1] != "XH-V09"
    assert revision(seeded) == before


def test_devices_are_not_assigned_through_the_vendor(seeded: Session) -> None:
    with pytest.raises(InvalidChange, match="device management"):
        create_vendor(seeded, "xiaohe", newcomer(scales=("XH-S99",)), actor="manager:li")
    with pytest.raises(Conflict, match="exists"):
        create_vendor(seeded, "xiaohe", newcomer(id="XH-V01"), actor="manager:li")


def test_a_deactivated_vendor_frees_the_stall_and_its_devices_may_not_publish(
    seeded: Session,
) -> None:
    leaving = get_vendor(seeded, "xiaohe", "XH-V01")
    scale = leaving.vendor.scales[0]

    set_vendor_active(
        seeded, "xiaohe", "XH-V01", False, if_version=leaving.version, actor="manager:li"
    )
    create_vendor(seeded, "xiaohe", newcomer(stall=leaving.vendor.stall), actor="manager:li")
    seeded.commit()

    market = load_registry(seeded).markets["xiaohe"]
    assert market.devices[scale].refused_because == (
        f"device '{scale}' belongs to vendor 'XH-V01', who is inactive"
    )
    assert "XH-V01" not in [v.id for v in market.active_vendors]
    assert market.vendors["XH-V09"].stall == leaving.vendor.stall
