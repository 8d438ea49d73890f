"""A failed rapid test locks the batch on its vendor's scale and screen, through a real
Mosquitto with the generated access rules, as the devices receive it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from marketdb.database import open_database, session_factory
from marketdb.locks import Locks
from marketdb.management import Management
from marketview.live_mqtt import LiveView
from mqttedge.client import EdgeOptions
from mqttedge.publisher import CommandNotSent, RetainedPublisher
from schemas.commands import command_topic
from schemas.messages import DeviceKind, RapidTest, RapidTestReport, RapidTestResult
from schemas.registry import Market, Registry
from schemas.topics import topic_for
from stallwatch.brokerauth import COMMAND_USER, write_broker_auth
from stallwatch.localservices import Mosquitto, mosquitto
from stallwatch.lockkeeper import LockKeeper
from stallwatch.options import live_mqtt_options
from stallwatch.settings import Settings
from stallwatch.webapp import open_lock_keeper
from storage.records import Reading
from storage.sqlite import SQLiteStore
from tests.conftest import EXAMPLE_MARKET
from tests.ingest.helpers import wait_until
from tests.stallwatch.mqttclient import Client
from tests.stallwatch.test_brokerauth import dynsec_conf

NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
FAIL = RapidTest(result=RapidTestResult.FAIL, inhibition_pct=Decimal("61.5"))


@dataclass(frozen=True)
class Broker:
    server: Mosquitto
    passwords: dict[str, str]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, example_market: Market) -> Iterator[Broker]:
    root = tmp_path_factory.mktemp("lockkeeper")
    files = write_broker_auth(Registry([example_market]), root / "auth")
    creds = json.loads(files.credentials.read_text())
    with mosquitto(root / "mosquitto", extra_conf=dynsec_conf(files.dynsec)) as server:
        assert isinstance(server, Mosquitto)
        yield Broker(server, {**creds["services"], **creds["devices"]})


@pytest.fixture
def publisher(broker: Broker) -> Iterator[RetainedPublisher]:
    options = EdgeOptions(
        "127.0.0.1",
        broker.server.port,
        f"{COMMAND_USER}-test",
        username=COMMAND_USER,
        password=broker.passwords[COMMAND_USER],
    )
    publisher = RetainedPublisher(options)
    publisher.start()
    yield publisher
    publisher.close()


@pytest.fixture
def keeper(database_url: str, example_market: Market, publisher: RetainedPublisher) -> LockKeeper:
    locks = Locks(session_factory(open_database(database_url)))
    return LockKeeper(locks, lambda: {example_market.id: example_market}, publisher, clock=_now)


def _now() -> datetime:
    return datetime.now(UTC)


def _vendor(market: Market) -> Any:
    return next(v for v in market.spec.vendors if v.scales and v.screens and v.products)


def _device(broker: Broker, device: str) -> Client:
    client = Client(broker.server.port, device, broker.passwords[device], client_id=device)
    assert client.connect().value == 0
    return client


def _command(client: Client) -> dict[str, Any]:
    _topic, payload = client.next_message()
    return dict(json.loads(payload))


def _failed_report(market: Market, vendor: Any, code: str, *, ts: datetime = NOW) -> Reading:
    report = RapidTestReport(
        msg_id=1, ts=ts, trace_code=code, vendor=vendor.id, plu=vendor.products[0], rapid_test=FAIL
    )
    return Reading(market.id, market.spec.intake[0].id, 0, report)


def test_a_failed_test_locks_on_the_vendors_scale_and_screen_until_unlocked(
    broker: Broker, keeper: LockKeeper, example_market: Market
) -> None:
    vendor = _vendor(example_market)
    code = f"LOCK-{vendor.id}-1"
    keeper.observe(_failed_report(example_market, vendor, code))
    keeper.observe(_failed_report(example_market, vendor, code))  # delivered twice: one lock

    # The scale was offline: it connects after the lock, and the broker hands it over.
    scale = _device(broker, vendor.scales[0])
    (granted,) = scale.subscribe(
        command_topic(example_market.id, DeviceKind.SCALE, vendor.scales[0])
    )
    assert granted.value == 1
    locked = _command(scale)
    assert [(s["trace_code"], s["plu"], s["reason"]) for s in locked["suspended"]] == [
        (code, vendor.products[0], "rapid_test_failed")
    ]
    screen = _device(broker, vendor.screens[0])
    screen.subscribe(command_topic(example_market.id, DeviceKind.SCREEN, vendor.screens[0]))
    assert _command(screen)["suspended"] == locked["suspended"]

    keeper.unlock(
        example_market.id, code, vendor.products[0], actor="manager", reason="re-test passed"
    )
    released = _command(scale)  # connected: it gets the new state at once
    assert released["suspended"] == []
    assert released["msg_id"] > locked["msg_id"]


def test_publish_all_tells_every_scale_and_screen_of_the_market(
    broker: Broker, keeper: LockKeeper, example_market: Market
) -> None:
    other = next(
        v for v in example_market.spec.vendors if v.scales and v != _vendor(example_market)
    )
    sent = keeper.publish_all(example_market.id)
    commanded = [
        d
        for d in example_market.devices.values()
        if d.kind in (DeviceKind.SCALE, DeviceKind.SCREEN) and d.vendor is not None
    ]
    assert sent == len(commanded)
    scale = _device(broker, other.scales[0])
    scale.subscribe(command_topic(example_market.id, DeviceKind.SCALE, other.scales[0]))
    assert _command(scale)["suspended"] == []


def test_a_command_the_broker_refuses_is_not_taken_for_sent(
    broker: Broker, example_market: Market
) -> None:
    # The API's user may not publish commands: the broker's PUBACK says so.
    options = EdgeOptions(
        "127.0.0.1",
        broker.server.port,
        "stallwatch-api-test",
        username="stallwatch-api",
        password=broker.passwords["stallwatch-api"],
    )
    publisher = RetainedPublisher(options)
    publisher.start()
    try:
        with pytest.raises(CommandNotSent, match="refused"):
            publisher.publish(
                command_topic(example_market.id, DeviceKind.SCALE, "any"), b'{"suspended": []}'
            )
    finally:
        publisher.close()


def test_serve_locks_a_batch_whose_report_fails_over_mqtt(
    tmp_path: Path, example_market: Market
) -> None:
    """The loop as ``stallwatch serve`` wires it: intake desk → broker → live view →
    keeper → market database → retained command → the vendor's scale."""
    vendor = _vendor(example_market)
    registry = Registry([example_market])
    with (
        mosquitto(tmp_path / "mosquitto", persistence=False) as server,
        SQLiteStore(tmp_path / "store.db") as store,
    ):
        settings = Settings(mqtt_url=server.url, markets=(EXAMPLE_MARKET,))
        management = Management(
            session_factory(open_database(f"sqlite:///{tmp_path / 'market.db'}"))
        )
        with open_lock_keeper(settings, management, registry, store) as keeper:
            assert keeper is not None
            live = LiveView(registry, store, live_mqtt_options(settings), on_reading=keeper.observe)
            live.start()
            try:
                wait_until(lambda: live.connected, timeout=20, what="live view subscribed")
                scale = Client(server.port, "scale", None, client_id=vendor.scales[0])
                assert scale.connect().value == 0
                scale.subscribe(
                    command_topic(example_market.id, DeviceKind.SCALE, vendor.scales[0])
                )
                assert _command(scale)["suspended"] == []  # told its state at start

                desk = example_market.spec.intake[0].id
                report = _failed_report(example_market, vendor, "LOOP-0001", ts=_now()).message
                intake = Client(server.port, "desk", None, client_id=desk)
                assert intake.connect().value == 0
                topic = topic_for(example_market.id, DeviceKind.INTAKE, desk, "test")
                intake.publish(topic, report.model_dump_json().encode())

                locked = _command(scale)
                assert [s["trace_code"] for s in locked["suspended"]] == ["LOOP-0001"]
            finally:
                live.stop()


def test_the_sweep_locks_a_failed_test_the_live_view_missed_once(
    keeper: LockKeeper, example_market: Market, tmp_path: Path
) -> None:
    vendor = _vendor(example_market)
    missed = _failed_report(example_market, vendor, "MISSED-0001", ts=_now())
    with SQLiteStore(tmp_path / "store.db") as store:
        store.write([missed])  # ingest stored it; the live view was reconnecting

        keeper.sweep(store)
        keeper.sweep(store)  # the next sweep finds it locked

        (lock,) = keeper.locks(example_market.id)
        assert (lock.trace_code, lock.vendor) == ("MISSED-0001", vendor.id)
        keeper.unlock(example_market.id, "MISSED-0001", lock.plu, actor="m", reason="re-test ok")
        keeper.sweep(store)  # a lock a manager lifted is not made again by the same test
        assert keeper.locks(example_market.id) == []


def test_the_sweep_locks_a_failed_re_test_after_a_lift_that_nothing_locked(
    database_url: str, example_market: Market, publisher: RetainedPublisher, tmp_path: Path
) -> None:
    clock = _SetClock(_now() - timedelta(hours=2))
    keeper = LockKeeper(
        Locks(session_factory(open_database(database_url)), clock=clock),
        lambda: {example_market.id: example_market},
        publisher,
        clock=clock,
    )
    vendor = _vendor(example_market)
    first = _failed_report(example_market, vendor, "RETEST-0001", ts=clock.now)
    keeper.observe(first)  # locked two hours ago, lifted after a passed re-test
    (lock,) = keeper.locks(example_market.id)
    keeper.unlock(example_market.id, "RETEST-0001", lock.plu, actor="m", reason="re-test ok")
    clock.now = _now()
    retest = _failed_report(example_market, vendor, "RETEST-0001", ts=clock.now)
    retest = replace(retest, message=retest.message.model_copy(update={"msg_id": 2}))
    with SQLiteStore(tmp_path / "store.db") as store:
        store.write([first, retest])  # the re-test failed while the live view reconnected

        keeper.sweep(store)

    (again,) = keeper.locks(example_market.id)
    assert again.id != lock.id
    assert [one.open for one in keeper.locks(example_market.id, lifted=True)] == [False, True]


class _SetClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now
