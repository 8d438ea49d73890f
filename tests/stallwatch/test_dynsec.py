"""Devices' broker users while Mosquitto runs (its dynamic-security plugin, Debian's 2.0.11):
added with a password shown once, pinned to their client id and their own topics, disabled
at once and let back in."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mqttedge import EdgeOptions
from schemas.messages import DeviceKind
from schemas.registry import Device, Market, MarketFile, Registry
from schemas.topics import SUBSCRIPTION, topic_for
from stallwatch.brokerauth import ADMIN_USER, INGEST_USER, write_broker_auth
from stallwatch.dynsec import DynsecControl, DynsecError
from stallwatch.localservices import Mosquitto, mosquitto
from tests.stallwatch.mqttclient import Client
from tests.stallwatch.test_brokerauth import credentials, dynsec_conf, make_registry

pytestmark = pytest.mark.mosquitto

NEW_SCALE = Device("nanmen", "S-NEW", DeviceKind.SCALE, "v-chen")


@dataclass(frozen=True)
class Broker:
    server: Mosquitto
    registry: Registry
    passwords: dict[str, str]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    registry = make_registry(tmp_path / "markets")
    files = write_broker_auth(registry, tmp_path / "auth")
    creds = credentials(files)
    conf = dynsec_conf(files.dynsec)
    with mosquitto(tmp_path / "mosquitto", extra_conf=conf, persistence=False) as server:
        assert isinstance(server, Mosquitto)
        yield Broker(server, registry, {**creds["services"], **creds["devices"]})


@pytest.fixture
def control(broker: Broker) -> Iterator[DynsecControl]:
    options = EdgeOptions(
        "127.0.0.1",
        broker.server.port,
        f"{ADMIN_USER}-test",
        username=ADMIN_USER,
        password=broker.passwords[ADMIN_USER],
    )
    with DynsecControl(options) as opened:
        yield opened


def connected(broker: Broker, user: str, password: str, client_id: str | None) -> Client:
    client = Client(broker.server.port, user, password, client_id=client_id)
    assert client.connect().value == 0, f"{user} was refused"
    return client


def sale_topic(scale: str) -> str:
    return topic_for("nanmen", DeviceKind.SCALE, scale, "sale")


def test_an_added_device_publishes_its_own_topics_only(
    broker: Broker, control: DynsecControl
) -> None:
    password = control.add_device(NEW_SCALE)
    ingest = connected(broker, INGEST_USER, broker.passwords[INGEST_USER], f"{INGEST_USER}-t")
    ingest.subscribe(SUBSCRIPTION)
    scale = connected(broker, "S-NEW", password, "S-NEW")
    try:
        assert scale.publish(sale_topic("S-NEW"), b"mine").value == 0
        assert ingest.next_message() == (sale_topic("S-NEW"), b"mine")
        assert scale.publish(sale_topic("S-A1"), b"forged").value == 0x87  # not authorized
    finally:
        scale.close()
        ingest.close()
    other_id = Client(broker.server.port, "S-NEW", password, client_id="someone-else")
    assert other_id.connect().value != 0, "the user is pinned to its client id"


def test_a_disabled_device_is_disconnected_at_once_and_let_back_in_when_enabled(
    broker: Broker, control: DynsecControl
) -> None:
    password = control.add_device(NEW_SCALE)
    scale = connected(broker, "S-NEW", password, "S-NEW")

    control.disable_device("S-NEW")

    assert scale.wait_disconnected() is not None
    again = Client(broker.server.port, "S-NEW", password, client_id="S-NEW")
    assert again.connect().value != 0
    control.enable_device("S-NEW")
    connected(broker, "S-NEW", password, "S-NEW").close()


def test_adding_a_device_again_gives_it_a_new_password(
    broker: Broker, control: DynsecControl
) -> None:
    first = control.add_device(NEW_SCALE)
    second = control.add_device(NEW_SCALE)
    assert first != second
    refused = Client(broker.server.port, "S-NEW", first, client_id="S-NEW")
    assert refused.connect().value != 0
    connected(broker, "S-NEW", second, "S-NEW").close()


def test_a_refused_command_is_an_error_naming_it(control: DynsecControl) -> None:
    with pytest.raises(DynsecError, match="disableClient: Client not found"):
        control.disable_device("S-NOBODY")


def test_broker_auth_run_again_keeps_a_device_added_while_the_broker_ran(
    broker: Broker, control: DynsecControl, tmp_path: Path
) -> None:
    """The plugin saves a live addition into its file; ``broker-auth`` re-run over the
    registry that now names the device keeps that hash, so its password still works after
    the broker restarts (it has no password in credentials.json: shown once, kept nowhere)."""
    password = control.add_device(NEW_SCALE)
    nanmen = broker.registry.markets["nanmen"].spec
    chen = nanmen.vendors[0]
    grown = chen.model_copy(update={"scales": (*chen.scales, NEW_SCALE.id)})
    registry = Registry(
        [
            Market(MarketFile(**{**dict(nanmen), "vendors": (grown, *nanmen.vendors[1:])})),
            broker.registry.markets["beiguan"],
        ]
    )

    files = write_broker_auth(registry, tmp_path / "auth")

    assert NEW_SCALE.id not in credentials(files)["devices"]
    assert NEW_SCALE.id not in files.added_devices
    conf = dynsec_conf(files.dynsec)
    with mosquitto(tmp_path / "restarted", extra_conf=conf, persistence=False) as restarted:
        assert isinstance(restarted, Mosquitto)
        scale = Client(restarted.port, NEW_SCALE.id, password, client_id=NEW_SCALE.id)
        assert scale.connect().value == 0, "its password works after broker-auth and a restart"
        scale.close()
