"""The simulators follow the registry while a day plays: a vendor added at noon starts
selling (their batches registered at the intake desk first), and a scale disabled at noon
falls silent. A real Mosquitto, the market database on SQLite followed as ingest follows
it, and a virtual clock that makes the change when the played day reaches noon."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, time
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from marketdb.database import open_database, session_factory
from marketdb.devices import add_device, get_device, set_device_enabled
from marketdb.follow import RegistryFollower
from marketdb.marketfile import import_market
from marketdb.vendors import create_vendor
from schemas.messages import DeviceKind
from schemas.registry import Market, Vendor
from simulators.clock import Pacer, Pump, VirtualClock
from simulators.run import run_markets
from stallwatch.localservices import Mosquitto
from tests.simulators.conftest import DAY, Subscriber

pytestmark = pytest.mark.mosquitto

NEWCOMER = Vendor(
    id="XH-V99",
    name="新来的菜摊",
    stall="XH99",
    products=("1001", "1002"),
    categories=("vegetables",),
)


@pytest.fixture
def sessions(xiaohe_market: Market, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = open_database(f"sqlite:///{tmp_path / 'market.db'}")
    factory = session_factory(engine)
    with factory() as session, session.begin():
        import_market(session, xiaohe_market.spec)
    yield factory
    engine.dispose()


class ChangeAtNoon(VirtualClock):
    """Waiting takes no time; the first wait past market noon makes ``change`` once."""

    def __init__(self, noon_ms: int, change: Callable[[], None]) -> None:
        super().__init__()
        self.pacer: Pacer | None = None
        self._noon_ms = noon_ms
        self._change: Callable[[], None] | None = change

    def wait(self, seconds: float, pump: Pump) -> None:
        super().wait(seconds, pump)
        due = self.pacer is not None and self.pacer.market_ms() >= self._noon_ms
        if self._change is not None and due:
            self._change()
            self._change = None


def test_a_vendor_added_at_noon_sells_and_a_scale_disabled_at_noon_falls_silent(
    xiaohe_market: Market,
    sessions: sessionmaker[Session],
    mosquitto_server: Mosquitto,
    subscribe: Callable[..., Subscriber],
) -> None:
    noon = datetime.combine(DAY, time(12, 0), xiaohe_market.tz)
    market = xiaohe_market.id

    def change() -> None:
        with sessions() as session, session.begin():
            create_vendor(session, market, NEWCOMER, actor="manager:test")
            add_device(session, market, "XH-S99", DeviceKind.SCALE, vendor="XH-V99", actor="t")
            add_device(session, market, "XH-P99", DeviceKind.SCREEN, vendor="XH-V99", actor="t")
            scale = get_device(session, "XH-S01")
            set_device_enabled(session, "XH-S01", False, if_version=scale.version, actor="t")

    clock = ChangeAtNoon(int(noon.timestamp() * 1000), change)
    subscriber = subscribe("markets/#")
    summary = run_markets(
        [xiaohe_market],
        mosquitto_server.url,
        seed=9,
        speed=60,
        date=DAY,
        clock=clock,
        on_playing=lambda pacer: setattr(clock, "pacer", pacer),
        progress_every_s=3600,
        follow=RegistryFollower(sessions, poll_s=0),
    )
    received = subscriber.wait_for(summary.total)

    def times(device_topic: str) -> list[datetime]:
        return [
            datetime.fromisoformat(json.loads(m.payload)["ts"])
            for m in received
            if device_topic in m.topic
        ]

    newcomer_sales = times("/scales/XH-S99/sale")
    assert newcomer_sales, "the vendor added at noon sells"
    assert min(newcomer_sales) >= noon
    assert times("/screens/XH-P99/"), "and shows prices"
    batches = [json.loads(m.payload) for m in received if m.topic.endswith("/batch")]
    newcomers = [b for b in batches if b["vendor"] == "XH-V99"]
    assert newcomers, "their batches are registered at the intake desk"
    ids = [(m.topic, json.loads(m.payload)["msg_id"]) for m in received]
    assert len(ids) == len(set(ids)), "no device sends one message id twice"
    silenced = times("/scales/XH-S01/")
    assert silenced, "the scale sold in the morning"
    assert max(silenced) < noon, "and sent nothing after it was disabled at noon"
