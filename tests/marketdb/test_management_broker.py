"""The broker follows the registry's changes, and never keeps what the registry rolled back.

The broker here is a recording stand-in at the outermost boundary (the real one, Mosquitto
with its dynamic-security plugin, is driven in tests/api/test_device_registry_live.py):
it can refuse a command, as a broker that is away or says no would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from marketdb._exceptions import BrokerRefused
from marketdb.database import open_database, session_factory
from marketdb.management import Management
from marketdb.marketfile import import_market
from schemas.registry import Device, load_market
from tests.ingest.helpers import write_market

MARKET = "tm"


class Broker:
    """Records what it was told; refuses the commands named in ``refuse``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.refuse: set[tuple[str, str]] = set()

    def _do(self, command: str, device_id: str) -> None:
        if (command, device_id) in self.refuse:
            raise BrokerRefused(f"{command} {device_id}: refused")
        self.calls.append((command, device_id))

    def add_device(self, device: Device) -> str:
        self._do("add", device.id)
        return "secret"

    def disable_device(self, device_id: str) -> None:
        self._do("disable", device_id)

    def enable_device(self, device_id: str) -> None:
        self._do("enable", device_id)


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = open_database(f"sqlite:///{tmp_path / 'market.db'}")
    factory = session_factory(engine)
    with factory() as session, session.begin():
        import_market(session, load_market(write_market(tmp_path)).spec)
    yield factory
    engine.dispose()


@pytest.fixture
def broker() -> Broker:
    return Broker()


@pytest.fixture
def management(sessions: sessionmaker[Session], broker: Broker) -> Management:
    return Management(sessions, broker=broker)


def set_active(management: Management, vendor_id: str, active: bool) -> None:
    current = management.vendor(MARKET, vendor_id)
    changed = current.vendor.model_copy(update={"active": active})
    management.update_vendor(MARKET, changed, if_version=current.version, actor="t", confirmed=True)


def test_a_vendor_back_does_not_bring_back_a_device_that_was_replaced(
    management: Management, broker: Broker
) -> None:
    scale = management.device(MARKET, "S-A01")
    management.replace_device(MARKET, "S-A01", "S-A01-2", if_version=scale.version, actor="t")
    set_active(management, "V01", False)
    broker.calls.clear()

    set_active(management, "V01", True)

    assert ("enable", "S-A01") not in broker.calls
    assert ("enable", "S-A01-2") in broker.calls


def test_a_refused_successor_leaves_the_old_device_working(
    management: Management, broker: Broker
) -> None:
    scale = management.device(MARKET, "S-A01")
    broker.refuse.add(("add", "S-A01-2"))

    with pytest.raises(BrokerRefused):
        management.replace_device(MARKET, "S-A01", "S-A01-2", if_version=scale.version, actor="t")

    assert broker.calls == [], "the old one is disabled only after the new one is added"
    assert management.device(MARKET, "S-A01").enabled
    assert all(d.id != "S-A01-2" for d in management.devices(MARKET))


def test_a_step_refused_midway_undoes_the_broker_changes_before_it(
    management: Management, broker: Broker
) -> None:
    broker.refuse.add(("disable", "P-A01"))  # V01's screen, after its scale

    with pytest.raises(BrokerRefused):
        set_active(management, "V01", False)

    assert broker.calls == [("disable", "S-A01"), ("enable", "S-A01")]
    assert management.vendor(MARKET, "V01").vendor.active, "and the registry is as it was"


def test_a_scale_given_to_a_vendor_who_left_is_refused_at_the_broker(
    management: Management, broker: Broker
) -> None:
    set_active(management, "V02", False)
    broker.calls.clear()
    scale = management.device(MARKET, "S-A01")

    management.assign_device(
        MARKET, "S-A01", vendor="V02", name=None, if_version=scale.version, actor="t"
    )

    assert broker.calls == [("disable", "S-A01")]
