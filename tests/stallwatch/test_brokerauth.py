"""Generated Mosquitto credentials and ACL, proven against a real mosquitto 2.0."""

from __future__ import annotations

import base64
import json
import os
import pwd
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from schemas.commands import command_topic
from schemas.messages import DeviceKind
from schemas.registry import Registry, load_market
from schemas.topics import SUBSCRIPTION, topic_for
from stallwatch.brokerauth import (
    ADMIN_USER,
    API_USER,
    COMMAND_USER,
    CREDENTIALS_FILE,
    DYNSEC_FILE,
    INGEST_USER,
    SERVICE_USERS,
    BrokerAuthError,
    BrokerAuthFiles,
    device_topics,
    hash_password,
    load_device_passwords,
    verify_password,
    write_broker_auth,
)
from stallwatch.localservices import Mosquitto, dynsec_plugin, mosquitto
from tests.stallwatch.mqttclient import Client

NOT_AUTHORIZED = 0x87
DISCONNECT_WITH_WILL = 0x04

#: ``mosquitto_passwd -b passwd alice s3cret`` from mosquitto 2.0.11: a known answer.
MOSQUITTO_PASSWD_LINE = (
    "alice:$7$101$ZbfsAH3Xg53galIM$UiPiGDfKqFPDIheT4keivKwmuNwxVOIutfcYYoq287orO3O/"
    "Xz5AvQtgO7V14iCpWKWhtBp/fFE6Z2Ny2ZF9Dg=="
)
#: ``mosquitto_ctrl dynsec init dynsec.json admin adminpw`` from mosquitto 2.0.11: the
#: plugin's own fields for the same kind of hash.
MOSQUITTO_CTRL_CLIENT: dict[str, Any] = {
    "username": "admin",
    "password": (
        "iz4mmpJVpUrN/M7mU8RbsquWRMVd76zZ7P84nvM3gisIc/6MVyyBMSKoNFEqreZzh/ng9KgCVO5jU9/jyi2p3g=="
    ),
    "salt": "d3TC00RJk+ZGHrXb",
    "iterations": 101,
}


def market_toml(market: str, suffix: str, *, with_intake: bool = True) -> str:
    intake = f'[[intake]]\nid = "IN-{suffix}"\nname = "收货区"\n' if with_intake else ""
    return f"""
[market]
id = "{market}"
name = "菜市场 {suffix}"
name_en = "Market {suffix}"
timezone = "Asia/Shanghai"

[[products]]
plu = "1001"
name_zh = "西红柿"
name_en = "Tomato"
category = "vegetables"

[[vendors]]
id = "v-chen"
name = "陈记蔬菜"
stall = "A01"
scales = ["S-{suffix}1", "S-{suffix}2"]
screens = ["P-{suffix}1"]

[[gates]]
id = "G-{suffix}"
name = "北门"

{intake}"""


def make_registry(directory: Path, *, with_intake: bool = True) -> Registry:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for market, suffix in (("nanmen", "A"), ("beiguan", "B")):
        path = directory / f"{market}.toml"
        path.write_text(market_toml(market, suffix, with_intake=with_intake), encoding="utf-8")
        paths.append(path)
    return Registry(load_market(path) for path in paths)


@pytest.fixture
def two_markets(tmp_path: Path) -> Registry:
    return make_registry(tmp_path / "markets")


def credentials(files: BrokerAuthFiles) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(files.credentials.read_text(encoding="utf-8"))
    return loaded


def dynsec(files: BrokerAuthFiles) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(files.dynsec.read_text(encoding="utf-8"))
    return loaded


def dynsec_clients(files: BrokerAuthFiles) -> dict[str, dict[str, Any]]:
    return {client["username"]: client for client in dynsec(files)["clients"]}


def acl_rules(files: BrokerAuthFiles) -> dict[str, list[str]]:
    """User -> ``<acltype> <topic>`` of every rule of its roles, as the plugin reads them."""
    document = dynsec(files)
    roles = {role["rolename"]: role["acls"] for role in document["roles"]}
    rules: dict[str, list[str]] = {}
    for client in document["clients"]:
        granted = [acl for ref in client["roles"] for acl in roles[ref["rolename"]]]
        rules[client["username"]] = [
            f"{'' if acl['allow'] else 'deny '}{acl['acltype']} {acl['topic']}" for acl in granted
        ]
    return rules


def encoded_hash(client: dict[str, Any]) -> str:
    return f"$7${client['iterations']}${client['salt']}${client['password']}"


# -- password hashing -------------------------------------------------------------------


def test_hash_matches_mosquitto_passwd_known_answer() -> None:
    _, encoded = MOSQUITTO_PASSWD_LINE.split(":", 1)
    salt = base64.b64decode(encoded.split("$")[3])
    assert hash_password("s3cret", salt=salt) == encoded
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret ", encoded)


def test_hash_matches_mosquitto_ctrl_dynsec_known_answer() -> None:
    salt = base64.b64decode(MOSQUITTO_CTRL_CLIENT["salt"])
    assert hash_password("adminpw", salt=salt) == encoded_hash(MOSQUITTO_CTRL_CLIENT)
    assert verify_password("adminpw", encoded_hash(MOSQUITTO_CTRL_CLIENT))


@pytest.mark.parametrize(
    "encoded",
    [
        "$6$ZbfsAH3Xg53galIM$UiPiGDfK",  # mosquitto 1.x SHA512, never reused
        "$7$101$not base64!$abc",
        "$7$0$ZbfsAH3Xg53galIM$UiPiGDfK",
        "$7$x$ZbfsAH3Xg53galIM$UiPiGDfK",
        "plaintext",
        "",
    ],
)
def test_verify_rejects_other_formats(encoded: str) -> None:
    assert not verify_password("s3cret", encoded)


def test_each_hash_has_a_fresh_salt_in_mosquitto_layout() -> None:
    first, second = hash_password("same"), hash_password("same")
    assert first != second
    for encoded in (first, second):
        _, mark, iterations, salt, digest = encoded.split("$")
        assert (mark, iterations) == ("7", "101")
        assert len(base64.b64decode(salt)) == 12
        assert len(base64.b64decode(digest)) == 64


# -- generated files ---------------------------------------------------------------------


def test_writes_private_files_for_every_user(two_markets: Registry, tmp_path: Path) -> None:
    files = write_broker_auth(two_markets, tmp_path / "auth")
    written = [files.dynsec, files.credentials, *files.service_password_files.values()]
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert (files.dynsec.name, files.credentials.name) == (DYNSEC_FILE, CREDENTIALS_FILE)
    creds = credentials(files)
    device_ids = {d for market in two_markets for d in market.devices}
    assert set(creds["devices"]) == device_ids
    assert set(creds["services"]) == {INGEST_USER, API_USER, ADMIN_USER, COMMAND_USER}
    assert files.added_devices == (
        *("G-A", "IN-A", "P-A1", "S-A1", "S-A2"),  # market file order, then id
        *("G-B", "IN-B", "P-B1", "S-B1", "S-B2"),
    )
    assert files.removed_devices == ()


def test_dynsec_holds_one_matching_hash_per_user(two_markets: Registry, tmp_path: Path) -> None:
    files = write_broker_auth(two_markets, tmp_path)
    creds = credentials(files)
    passwords = {**creds["services"], **creds["devices"]}
    clients = dynsec_clients(files)
    assert set(clients) == set(passwords)
    for user, client in clients.items():
        encoded = encoded_hash(client)
        assert re.fullmatch(r"\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==", encoded), user
        assert verify_password(passwords[user], encoded), user


def test_devices_are_pinned_to_their_id_and_services_are_not(
    two_markets: Registry, tmp_path: Path
) -> None:
    clients = dynsec_clients(write_broker_auth(two_markets, tmp_path))
    for user, client in clients.items():
        if user in SERVICE_USERS:
            assert "clientid" not in client, user
        else:
            assert client["clientid"] == user


def test_passwords_are_long_random_and_distinct(two_markets: Registry, tmp_path: Path) -> None:
    creds = credentials(write_broker_auth(two_markets, tmp_path))
    passwords = [*creds["services"].values(), *creds["devices"].values()]
    assert len(set(passwords)) == len(passwords)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", p) for p in passwords)


def test_service_password_files_hold_just_the_password(
    two_markets: Registry, tmp_path: Path
) -> None:
    files = write_broker_auth(two_markets, tmp_path)
    services = credentials(files)["services"]
    assert {u: p.read_text() for u, p in files.service_password_files.items()} == services


def test_acl_lets_devices_write_only_their_own_channels(
    two_markets: Registry, tmp_path: Path
) -> None:
    files = write_broker_auth(two_markets, tmp_path)
    assert dynsec(files)["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }
    rules = acl_rules(files)
    assert rules["S-A1"] == [
        "publishClientSend markets/nanmen/scales/S-A1/sale",
        "publishClientSend markets/nanmen/scales/S-A1/status",
        "subscribeLiteral markets/nanmen/scales/S-A1/command",
        "publishClientReceive markets/nanmen/scales/S-A1/command",
    ]
    assert rules["P-B1"] == [
        "publishClientSend markets/beiguan/screens/P-B1/price",
        "subscribeLiteral markets/beiguan/screens/P-B1/command",
        "publishClientReceive markets/beiguan/screens/P-B1/command",
    ]
    assert rules["G-A"] == ["publishClientSend markets/nanmen/gates/G-A/count"]
    assert rules["IN-B"] == [
        "publishClientSend markets/beiguan/intake/IN-B/batch",
        "publishClientSend markets/beiguan/intake/IN-B/test",
    ]
    service_rules = [
        "deny publishClientReceive markets/+/+/+/command",
        "subscribePattern markets/#",
        "subscribePattern $share/+/markets/#",
        "publishClientReceive markets/#",
    ]
    assert rules[INGEST_USER] == service_rules
    assert rules[API_USER] == service_rules
    assert rules[COMMAND_USER] == [
        "publishClientSend markets/+/scales/+/command",
        "publishClientSend markets/+/screens/+/command",
    ]
    device_rules = [
        rule
        for user, user_rules in rules.items()
        if user.startswith(("S-", "P-", "G-", "IN-"))
        for rule in user_rules
    ]
    assert device_rules
    assert all(
        rule.startswith(("publishClientSend markets/", "subscribeLiteral markets/"))
        or (rule.startswith("publishClientReceive markets/") and rule.endswith("/command"))
        for rule in device_rules
    )
    assert not any("+" in rule or "#" in rule for rule in device_rules)


def test_example_market_gets_a_user_and_acl_per_device(registry: Registry, tmp_path: Path) -> None:
    files = write_broker_auth(registry, tmp_path)
    rules = acl_rules(files)
    devices = [device for market in registry for device in market.devices.values()]
    assert devices
    for device in devices:
        assert rules[device.id][: len(device_topics(device))] == [
            f"publishClientSend {t}" for t in device_topics(device)
        ]
    assert set(rules) == set(SERVICE_USERS) | {device.id for device in devices}
    assert rules[ADMIN_USER] == [
        f"{kind} $CONTROL/dynamic-security/#"
        for kind in ("publishClientSend", "subscribePattern", "publishClientReceive")
    ]


def test_rerun_keeps_passwords_and_files_byte_for_byte(
    two_markets: Registry, tmp_path: Path
) -> None:
    first = write_broker_auth(two_markets, tmp_path)
    before = {p: p.read_bytes() for p in (first.dynsec, first.credentials)}
    second = write_broker_auth(two_markets, tmp_path)
    assert {p: p.read_bytes() for p in before} == before
    assert (second.added_devices, second.removed_devices) == ((), ())


def test_rerun_adds_new_devices_and_drops_removed_ones(tmp_path: Path) -> None:
    without_intake = make_registry(tmp_path / "v1", with_intake=False)
    first = credentials(write_broker_auth(without_intake, tmp_path / "auth"))
    with_intake = make_registry(tmp_path / "v2")
    files = write_broker_auth(with_intake, tmp_path / "auth")
    second = credentials(files)
    assert files.added_devices == ("IN-A", "IN-B")
    assert {k: second["devices"][k] for k in first["devices"]} == first["devices"]
    assert second["services"] == first["services"]

    files = write_broker_auth(without_intake, tmp_path / "auth")
    assert files.removed_devices == ("IN-A", "IN-B")
    assert "IN-A" not in credentials(files)["devices"]
    assert "IN-A" not in files.dynsec.read_text()


def test_a_disabled_device_loses_its_user_on_the_next_run(tmp_path: Path) -> None:
    write_broker_auth(make_registry(tmp_path / "v1"), tmp_path / "auth")
    disabled = tmp_path / "v2"
    disabled.mkdir()
    path = disabled / "nanmen.toml"
    path.write_text('disabled_devices = ["S-A2"]\n' + market_toml("nanmen", "A"), encoding="utf-8")

    files = write_broker_auth(Registry([load_market(path)]), tmp_path / "auth")

    assert "S-A2" in files.removed_devices
    assert "S-A2" not in credentials(files)["devices"]
    assert "S-A2" not in dynsec_clients(files)
    assert "S-A1" in dynsec_clients(files)


def test_rotate_replaces_every_password(two_markets: Registry, tmp_path: Path) -> None:
    before = credentials(write_broker_auth(two_markets, tmp_path))
    after = credentials(write_broker_auth(two_markets, tmp_path, rotate=True))
    assert set(after["devices"]) == set(before["devices"])
    for group in ("devices", "services"):
        assert all(after[group][user] != before[group][user] for user in before[group])


def test_corrupt_credentials_file_is_refused_not_regenerated(
    two_markets: Registry, tmp_path: Path
) -> None:
    files = write_broker_auth(two_markets, tmp_path)
    files.credentials.write_text('{"devices": {"S-A1": "has space"}, "services": {}}')
    with pytest.raises(BrokerAuthError, match="not a valid credentials file"):
        write_broker_auth(two_markets, tmp_path)
    files.credentials.write_text("{not json")
    with pytest.raises(BrokerAuthError, match="not a valid credentials file"):
        write_broker_auth(two_markets, tmp_path)


def test_unparsable_dynsec_file_is_rebuilt_from_the_credentials(
    two_markets: Registry, tmp_path: Path
) -> None:
    files = write_broker_auth(two_markets, tmp_path)
    files.dynsec.write_text("{not json")
    rebuilt = write_broker_auth(two_markets, tmp_path)
    passwords = credentials(rebuilt)["devices"]
    clients = dynsec_clients(rebuilt)
    assert all(verify_password(passwords[d], encoded_hash(clients[d])) for d in passwords)


def test_unwritable_output_is_a_broker_auth_error(two_markets: Registry, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(BrokerAuthError, match="cannot create"):
        write_broker_auth(two_markets, blocker / "auth")


@pytest.mark.parametrize("device_id", [INGEST_USER, API_USER, "stallwatch-ingest-2"])
def test_device_named_like_a_service_is_refused(tmp_path: Path, device_id: str) -> None:
    """The services' user names and client ids all start with ``stallwatch-``."""
    path = tmp_path / "m.toml"
    path.write_text(market_toml("nanmen", "A").replace('"G-A"', f'"{device_id}"'))
    with pytest.raises(BrokerAuthError, match="reserved for stallwatch's service users"):
        write_broker_auth(Registry([load_market(path)]), tmp_path / "auth")


def test_simulator_reads_device_passwords(two_markets: Registry, tmp_path: Path) -> None:
    files = write_broker_auth(two_markets, tmp_path)
    assert load_device_passwords(files.credentials) == credentials(files)["devices"]
    with pytest.raises(BrokerAuthError, match="run `stallwatch broker-auth`"):
        load_device_passwords(tmp_path / "missing.json")


# -- against a real mosquitto ------------------------------------------------------------


def dynsec_conf(config_file: Path) -> str:
    """Mosquitto settings that load the generated dynamic-security configuration."""
    # Started as root, mosquitto switches to the `mosquitto` user before the plugin
    # reads its file, and could not read our 0600 file; keep it as the test's own user.
    me = pwd.getpwuid(os.geteuid()).pw_name
    return (
        f"user {me}\nallow_anonymous false\n"
        f"plugin {dynsec_plugin()}\nplugin_opt_config_file {config_file}\n"
    )


@dataclass(frozen=True)
class AuthBroker:
    server: Mosquitto
    registry: Registry
    passwords: dict[str, str]


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthBroker]:
    root = tmp_path_factory.mktemp("brokerauth")
    registry = make_registry(root / "markets")
    files = write_broker_auth(registry, root / "auth")
    creds = credentials(files)
    conf = dynsec_conf(files.dynsec)
    with mosquitto(root / "mosquitto", extra_conf=conf, persistence=False) as server:
        assert isinstance(server, Mosquitto)
        yield AuthBroker(server, registry, {**creds["services"], **creds["devices"]})


Connect = Callable[..., Client]
"""``connect(user, password=None, client_id=None)``: a connected client, closed after the test.

A device connects with its id as client id, a service user with a ``<user>-test-<n>`` id,
unless ``client_id`` says otherwise.
"""

#: The client id of the ingest instance in these tests, as docker-compose.yml names it.
INGEST_CLIENT_ID = f"{INGEST_USER}-1"


@pytest.fixture
def connect(auth_broker: AuthBroker) -> Iterator[Connect]:
    clients: list[Client] = []

    def _connect(user: str, password: str | None = None, client_id: str | None = None) -> Client:
        if client_id is None and user not in SERVICE_USERS:
            client_id = user
        client = Client(
            auth_broker.server.port,
            user,
            password or auth_broker.passwords[user],
            client_id=client_id,
        )
        clients.append(client)
        assert client.connect().value == 0, f"{user} was refused"
        return client

    yield _connect
    for client in clients:
        client.close()


def sale_topic(market: str, scale: str) -> str:
    return topic_for(market, DeviceKind.SCALE, scale, "sale")


@pytest.fixture
def ingest(connect: Connect) -> Client:
    """The ingest service user on a shared subscription, as scaled-out ingest uses it."""
    client = connect(INGEST_USER, client_id=INGEST_CLIENT_ID)
    (granted,) = client.subscribe(f"$share/ingest/{SUBSCRIPTION}")
    assert granted.value == 1
    return client


@pytest.mark.mosquitto
def test_device_publishes_to_its_own_topic(connect: Connect, ingest: Client) -> None:
    scale = connect("S-A1")
    assert scale.publish(sale_topic("nanmen", "S-A1"), b"sale-1").value == 0
    assert ingest.next_message() == (sale_topic("nanmen", "S-A1"), b"sale-1")


@pytest.mark.mosquitto
def test_api_user_reads_every_market(connect: Connect) -> None:
    api = connect(API_USER)
    (granted,) = api.subscribe("markets/#")
    assert granted.value == 1
    gate = connect("G-B")
    count_topic = topic_for("beiguan", DeviceKind.GATE, "G-B", "count")
    assert gate.publish(count_topic, b"count").value == 0
    assert api.next_message() == (count_topic, b"count")


@pytest.mark.mosquitto
@pytest.mark.parametrize(
    "forbidden",
    [
        sale_topic("nanmen", "S-A2"),  # a neighbour's scale
        sale_topic("beiguan", "S-A1"),  # own id under another market
        topic_for("nanmen", DeviceKind.GATE, "S-A1", "count"),  # own id, another kind
        topic_for("nanmen", DeviceKind.SCREEN, "P-A1", "price"),  # the vendor's own screen
        command_topic("nanmen", DeviceKind.SCALE, "S-A1"),  # its own lock: never lifted by it
        "markets/nanmen/scales/S-A1/sale/extra",
        "elsewhere",
    ],
)
def test_device_cannot_publish_elsewhere(connect: Connect, ingest: Client, forbidden: str) -> None:
    scale = connect("S-A1")
    assert scale.publish(forbidden, b"forged").value == NOT_AUTHORIZED
    # Mosquitto 2.0 then drops the connection of a client that published where it may not.
    scale.wait_disconnected()
    # The forgery was refused before this marker existed, and one subscriber receives
    # messages in the order the broker routed them: the marker coming next proves the
    # forgery was never delivered.
    assert connect("S-A1").publish(sale_topic("nanmen", "S-A1"), b"marker").value == 0
    assert ingest.next_message() == (sale_topic("nanmen", "S-A1"), b"marker")


@pytest.mark.mosquitto
@pytest.mark.parametrize("topic_filter", ["markets/#", sale_topic("nanmen", "S-A1"), "#"])
def test_device_cannot_subscribe(connect: Connect, topic_filter: str) -> None:
    (granted,) = connect("S-A1").subscribe(topic_filter)
    assert granted.value == NOT_AUTHORIZED


@pytest.mark.mosquitto
def test_a_scale_gets_its_retained_command_when_it_subscribes(connect: Connect) -> None:
    topic = command_topic("nanmen", DeviceKind.SCALE, "S-A2")
    commander = connect(COMMAND_USER)
    assert commander.publish(topic, b'{"suspended": []}', retain=True).value < NOT_AUTHORIZED
    scale = connect("S-A2")  # connects after the command was published
    (granted,) = scale.subscribe(topic)
    assert granted.value == 1
    assert scale.next_message() == (topic, b'{"suspended": []}')


@pytest.mark.mosquitto
@pytest.mark.parametrize(
    "topic_filter",
    [
        command_topic("nanmen", DeviceKind.SCALE, "S-A2"),  # a neighbour's scale
        command_topic("nanmen", DeviceKind.SCREEN, "P-A1"),  # its vendor's screen
        "markets/nanmen/scales/+/command",
    ],
)
def test_a_device_reads_no_other_command_topic(connect: Connect, topic_filter: str) -> None:
    (granted,) = connect("S-A1").subscribe(topic_filter)
    assert granted.value == NOT_AUTHORIZED


@pytest.mark.mosquitto
def test_the_command_user_may_publish_only_commands(connect: Connect, ingest: Client) -> None:
    commander = connect(COMMAND_USER)
    assert commander.publish(sale_topic("nanmen", "S-A1"), b"forged").value == NOT_AUTHORIZED
    commander.wait_disconnected()
    assert connect("S-A1").publish(sale_topic("nanmen", "S-A1"), b"marker").value == 0
    assert ingest.next_message() == (sale_topic("nanmen", "S-A1"), b"marker")


@pytest.mark.mosquitto
def test_services_are_not_sent_commands(connect: Connect, ingest: Client) -> None:
    """Ingest and the live view subscribe to every device topic: a command (retained, at
    every subscription) would reach them as a message of no channel."""
    command = command_topic("nanmen", DeviceKind.SCALE, "S-A1")
    # Accepted (0x10, "no matching subscribers": none may be sent it yet).
    assert connect(COMMAND_USER).publish(command, b"{}", retain=True).value < NOT_AUTHORIZED
    assert connect("S-A1").publish(sale_topic("nanmen", "S-A1"), b"marker").value == 0
    assert ingest.next_message() == (sale_topic("nanmen", "S-A1"), b"marker")
    api = connect(API_USER)
    (granted,) = api.subscribe(SUBSCRIPTION)  # the retained command is not sent either
    assert granted.value == 1
    assert connect("S-A1").publish(sale_topic("nanmen", "S-A1"), b"marker 2").value == 0
    assert api.next_message() == (sale_topic("nanmen", "S-A1"), b"marker 2")


@pytest.mark.mosquitto
@pytest.mark.parametrize("user", [INGEST_USER, API_USER])
def test_service_users_cannot_publish(connect: Connect, ingest: Client, user: str) -> None:
    service = connect(user)
    assert service.publish(sale_topic("nanmen", "S-A1"), b"forged").value == NOT_AUTHORIZED
    service.wait_disconnected()
    assert connect("S-A1").publish(sale_topic("nanmen", "S-A1"), b"marker").value == 0
    assert ingest.next_message() == (sale_topic("nanmen", "S-A1"), b"marker")


@pytest.mark.mosquitto
@pytest.mark.parametrize(
    ("user", "password"),
    [("S-A1", "wrong-password"), ("S-A1", ""), ("nobody", "x"), (INGEST_USER, "S-A1")],
)
def test_wrong_credentials_are_refused(auth_broker: AuthBroker, user: str, password: str) -> None:
    client = Client(auth_broker.server.port, user, password, client_id=user)
    try:
        assert client.connect().value == NOT_AUTHORIZED
    finally:
        client.close()


@pytest.mark.mosquitto
def test_anonymous_clients_are_refused(auth_broker: AuthBroker) -> None:
    client = Client(auth_broker.server.port, "", None)
    client.paho.username_pw_set(None)
    try:
        assert client.connect().value == NOT_AUTHORIZED
    finally:
        client.close()


@pytest.mark.mosquitto
def test_another_devices_password_is_refused(auth_broker: AuthBroker) -> None:
    client = Client(
        auth_broker.server.port, "S-A1", auth_broker.passwords["S-A2"], client_id="S-A1"
    )
    try:
        assert client.connect().value == NOT_AUTHORIZED
    finally:
        client.close()


@pytest.mark.mosquitto
def test_scale_last_will_reaches_ingest(auth_broker: AuthBroker, ingest: Client) -> None:
    status_topic = topic_for("nanmen", DeviceKind.SCALE, "S-A1", "status")
    will = b'{"v":1,"msg_id":1,"ts":"2025-05-17T07:00:00+08:00","online":false,"will":true}'
    scale = Client(auth_broker.server.port, "S-A1", auth_broker.passwords["S-A1"], client_id="S-A1")
    scale.paho.will_set(status_topic, will, qos=1)
    assert scale.connect().value == 0
    scale.close(ReasonCode(PacketTypes.DISCONNECT, identifier=DISCONNECT_WITH_WILL))
    assert ingest.next_message() == (status_topic, will)


# -- client ids: nobody takes over another client's session -----------------------------
# Mosquitto disconnects the older of two connections with the same client id. Ingest's
# persistent session lives under its client id, so a device connecting with that id
# would knock ingest off the broker (and take its queued messages).

TAKEOVER_ATTEMPTS = 5


def assert_refused_as(auth_broker: AuthBroker, user: str, client_id: str) -> None:
    for _ in range(TAKEOVER_ATTEMPTS):
        thief = Client(
            auth_broker.server.port, user, auth_broker.passwords[user], client_id=client_id
        )
        try:
            assert thief.connect().value == NOT_AUTHORIZED, f"{user} got in as {client_id}"
        finally:
            thief.close()


@pytest.mark.mosquitto
@pytest.mark.parametrize("device", ["S-A1", "G-B"])
def test_device_cannot_take_over_ingest(
    auth_broker: AuthBroker, connect: Connect, ingest: Client, device: str
) -> None:
    assert_refused_as(auth_broker, device, INGEST_CLIENT_ID)
    # The real ingest is still connected and still receives.
    assert connect("S-A2").publish(sale_topic("nanmen", "S-A2"), b"after").value == 0
    assert ingest.next_message() == (sale_topic("nanmen", "S-A2"), b"after")
    assert ingest.disconnects == []


@pytest.mark.mosquitto
def test_device_cannot_take_over_another_device(
    auth_broker: AuthBroker, connect: Connect, ingest: Client
) -> None:
    neighbour = connect("S-A2")
    assert_refused_as(auth_broker, "S-A1", "S-A2")
    assert neighbour.publish(sale_topic("nanmen", "S-A2"), b"still-me").value == 0
    assert ingest.next_message() == (sale_topic("nanmen", "S-A2"), b"still-me")
    assert neighbour.disconnects == []


@pytest.mark.mosquitto
@pytest.mark.parametrize(
    "client_id", [f"{API_USER}-0123456789ab", "stallwatch-anything", "S-A1-spare", "s-a1"]
)
def test_device_cannot_use_any_other_id(auth_broker: AuthBroker, client_id: str) -> None:
    assert_refused_as(auth_broker, "S-A1", client_id)


@pytest.mark.mosquitto
def test_service_users_connect_with_their_own_ids(connect: Connect) -> None:
    """Two scaled-out ingest instances and the API's live view, each with its own id."""
    ingests = [connect(INGEST_USER, client_id=f"{INGEST_USER}-{n}") for n in (1, 2)]
    api = connect(API_USER, client_id=f"{API_USER}-0123456789ab")
    for client in ingests:
        assert [rc.value for rc in client.subscribe(f"$share/ingest/{SUBSCRIPTION}")] == [1]
    assert [rc.value for rc in api.subscribe("markets/#")] == [1]
    gate_topic = topic_for("nanmen", DeviceKind.GATE, "G-A", "count")
    assert connect("G-A").publish(gate_topic, b"count").value == 0
    assert api.next_message() == (gate_topic, b"count")
    assert [client.disconnects for client in (*ingests, api)] == [[], [], []]
