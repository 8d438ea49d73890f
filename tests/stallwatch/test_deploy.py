"""docker-compose.yml and deploy/: what can be checked without Docker.

Docker is not available where stallwatch is developed, so the compose file is
checked statically (references, secrets, wiring) and the Mosquitto config it
mounts is started with a real mosquitto and the generated credentials.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from paho.mqtt.enums import MQTTProtocolVersion

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
    PASSWORD_FILE_SUFFIX,
    load_device_passwords,
    write_broker_auth,
)
from stallwatch.localservices import Mosquitto, dynsec_plugin, free_port
from stallwatch.settings import Settings
from tests.conftest import REPO
from tests.stallwatch.mqttclient import Client
from tests.stallwatch.test_brokerauth import market_toml

COMPOSE_FILE = REPO / "docker-compose.yml"
MOSQUITTO_CONF = REPO / "deploy" / "mosquitto" / "mosquitto.conf"
AUTH_MOUNT = "/auth"
#: Where the eclipse-mosquitto image keeps the dynamic-security plugin.
IMAGE_DYNSEC_PLUGIN = "/usr/lib/mosquitto_dynamic_security.so"
NOT_AUTHORIZED = 0x87

#: ``${NAME:?message}``: compose refuses to start while NAME is unset or empty.
REQUIRED_VARIABLE = re.compile(r"^\$\{[A-Z][A-Z0-9_]*:\?[^}]+\}$")
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|_KEY$|APIKEY", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return loaded


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def volume_specs(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each short-syntax volume."""
    specs = []
    for spec in service.get("volumes", []):
        source, target, *_ = spec.split(":")
        specs.append((source, target))
    return specs


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair anywhere in the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key), value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


# -- static checks -----------------------------------------------------------------


def test_services_are_the_agreed_ones(compose: dict[str, Any]) -> None:
    assert set(services(compose)) == {
        "postgres",
        "market-init",
        "broker-init",
        "mosquitto",
        "influxdb",
        "ingest",
        "simulate",
        "web",
    }


def test_referenced_repository_files_exist(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        build = service.get("build")
        if build is not None:
            context = REPO / build["context"]
            assert context.is_dir(), name
            assert (context / build["dockerfile"]).is_file(), name
        for source, _ in volume_specs(service):
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source} does not exist"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = {
        source
        for service in services(compose).values()
        for source, _ in volume_specs(service)
        if not source.startswith((".", "/"))
    }
    assert used == declared


def test_no_literal_secrets(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                assert REQUIRED_VARIABLE.match(value), f"{name}: {key} must be ${{VAR:?message}}"
    for key, value in walk(compose):
        if SECRET_NAME.search(key) and not key.endswith("_FILE") and isinstance(value, str):
            assert REQUIRED_VARIABLE.match(value), f"{key}={value!r}"


def test_variables_never_have_defaults() -> None:
    """Every ${...} in the file, comments included, is required: no default secrets."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    references = re.findall(r"(?<!\$)\$\{[^}]*\}", text)
    assert references
    for reference in references:
        assert REQUIRED_VARIABLE.match(reference), reference


def test_services_start_in_order(compose: dict[str, Any]) -> None:
    svc = services(compose)
    assert svc["mosquitto"]["depends_on"] == {
        "broker-init": {"condition": "service_completed_successfully"}
    }
    seeded = {"condition": "service_completed_successfully"}
    assert svc["market-init"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert svc["broker-init"]["depends_on"] == {"market-init": seeded}
    for name in ("ingest", "web"):
        assert svc[name]["depends_on"] == {
            "mosquitto": {"condition": "service_healthy"},
            "influxdb": {"condition": "service_healthy"},
            "market-init": seeded,
        }, name
    assert svc["simulate"]["depends_on"]["mosquitto"] == {"condition": "service_healthy"}
    for name in ("mosquitto", "influxdb", "postgres"):
        assert svc[name]["healthcheck"]["test"], name


def test_every_service_shares_the_one_market_database(compose: dict[str, Any]) -> None:
    """No market file read at run time: ingest, the web app and broker-auth follow the
    database the market file seeded once."""
    svc = services(compose)
    urls = {
        name: environment(svc[name])["STALLWATCH_MARKET_DATABASE"]
        for name in ("market-init", "broker-init", "ingest", "web")
    }
    assert len(set(urls.values())) == 1, urls
    assert next(iter(urls.values())).startswith("postgresql+psycopg://stallwatch:")
    for name in ("ingest", "web"):
        assert "STALLWATCH_MARKETS" not in environment(svc[name]), name
    assert "--if-absent" in svc["market-init"]["command"]
    web = environment(svc["web"])
    admin = f"{AUTH_MOUNT}/{ADMIN_USER}{PASSWORD_FILE_SUFFIX}"
    assert web["STALLWATCH_MQTT_ADMIN_PASSWORD_FILE"] == admin
    command = f"{AUTH_MOUNT}/{COMMAND_USER}{PASSWORD_FILE_SUFFIX}"
    assert web["STALLWATCH_MQTT_COMMAND_PASSWORD_FILE"] == command


def test_broker_mounts_the_repository_config_and_the_generated_auth(
    compose: dict[str, Any],
) -> None:
    mosquitto = services(compose)["mosquitto"]
    mounts = dict(volume_specs(mosquitto))
    assert mounts["./deploy/mosquitto/mosquitto.conf"] == "/mosquitto/config/mosquitto.conf"
    assert mounts["broker-auth"] == AUTH_MOUNT
    conf = MOSQUITTO_CONF.read_text(encoding="utf-8")
    assert f"\nplugin {IMAGE_DYNSEC_PLUGIN}\n" in conf
    assert f"\nplugin_opt_config_file {AUTH_MOUNT}/{DYNSEC_FILE}\n" in conf
    assert "password_file" not in conf
    assert "acl_file" not in conf
    for setting in ("persistence true", "max_queued_messages 0", "allow_anonymous false"):
        assert f"\n{setting}\n" in conf, setting


def test_broker_init_writes_into_the_auth_volume(compose: dict[str, Any]) -> None:
    init = services(compose)["broker-init"]
    assert dict(volume_specs(init))["broker-auth"] == AUTH_MOUNT
    script = "\n".join(init["command"])
    assert f"stallwatch broker-auth --out {AUTH_MOUNT}" in script
    for user in (INGEST_USER, API_USER, ADMIN_USER, COMMAND_USER):
        assert f"{AUTH_MOUNT}/{user}{PASSWORD_FILE_SUFFIX}" in script
    assert f"chown 1883:1883 {AUTH_MOUNT}/{DYNSEC_FILE}\n" in script


def test_ingest_settings_exist_and_use_the_generated_password(compose: dict[str, Any]) -> None:
    env = environment(services(compose)["ingest"])
    known = {f"STALLWATCH_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= known, set(env) - known
    assert env["STALLWATCH_MQTT_USERNAME"] == INGEST_USER
    assert (
        env["STALLWATCH_MQTT_PASSWORD_FILE"] == f"{AUTH_MOUNT}/{INGEST_USER}{PASSWORD_FILE_SUFFIX}"
    )
    assert env["STALLWATCH_STORE"] == "influx"


def test_web_settings_exist_and_the_exposed_dashboard_has_logins(compose: dict[str, Any]) -> None:
    web = services(compose)["web"]
    env = environment(web)
    known = {f"STALLWATCH_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= known, set(env) - known
    assert web["command"][:2] == ["stallwatch", "serve"]
    assert env["STALLWATCH_MQTT_USERNAME"] == API_USER
    assert env["STALLWATCH_MQTT_PASSWORD_FILE"] == f"{AUTH_MOUNT}/{API_USER}{PASSWORD_FILE_SUFFIX}"
    # It listens on 0.0.0.0 in its container: `serve` refuses that without dashboard logins.
    assert "STALLWATCH_DASHBOARD_USERS_FILE" in env
    assert "STALLWATCH_API_TOKENS_FILE" in env


def test_image_tags_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        if "build" not in service:
            image = service["image"]
            assert ":" in image, name
            assert not image.endswith(":latest"), name


# -- the mounted Mosquitto config, on a real mosquitto --------------------------------------


def local_conf(conf: str, *, port: int, auth: Path, data: Path) -> str:
    """The deploy config with container paths and the listener moved to a test directory."""
    replaced = (
        conf.replace(f"{AUTH_MOUNT}/", f"{auth}/")
        .replace("/mosquitto/data/", f"{data}/")
        .replace("\nlistener 1883\n", f"\nlistener {port} 127.0.0.1\n")
        .replace(f"\nplugin {IMAGE_DYNSEC_PLUGIN}\n", f"\nplugin {dynsec_plugin()}\n")
    )
    assert str(auth) in replaced
    assert str(dynsec_plugin()) in replaced
    assert f"listener {port} 127.0.0.1" in replaced
    # Started as root, mosquitto would switch to the `mosquitto` user, who cannot read
    # our 0600 files; in the container the files belong to that user (broker-init).
    return replaced + f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"


@dataclass(frozen=True)
class DeployBroker:
    port: int
    ingest_password: str
    device_passwords: dict[str, str]


@contextmanager
def deploy_broker(tmp_path: Path) -> Iterator[DeployBroker]:
    """mosquitto 2.0.11 with deploy/mosquitto/mosquitto.conf and broker-auth's files."""
    market_file = tmp_path / "nanmen.toml"
    market_file.write_text(market_toml("nanmen", "A"), encoding="utf-8")
    auth = tmp_path / "auth"
    write_broker_auth(Registry([load_market(market_file)]), auth)
    port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        local_conf(MOSQUITTO_CONF.read_text(encoding="utf-8"), port=port, auth=auth, data=data)
    )
    binary = shutil.which("mosquitto", path="/usr/sbin:/usr/bin")
    assert binary is not None
    with Mosquitto("mosquitto", tmp_path, port, [binary, "-c", str(conf)]):
        yield DeployBroker(
            port,
            (auth / f"{INGEST_USER}{PASSWORD_FILE_SUFFIX}").read_text(),
            load_device_passwords(auth / CREDENTIALS_FILE),
        )


@pytest.mark.mosquitto
def test_deploy_mosquitto_conf_runs_with_generated_auth(tmp_path: Path) -> None:
    with deploy_broker(tmp_path) as broker:
        ingest_id = f"{INGEST_USER}-1"
        ingest = Client(broker.port, INGEST_USER, broker.ingest_password, client_id=ingest_id)
        password = broker.device_passwords["S-A1"]
        scale = Client(broker.port, "S-A1", password, client_id="S-A1")
        thief = Client(broker.port, "S-A1", password, client_id=ingest_id)
        try:
            assert ingest.connect().value == 0
            assert [rc.value for rc in ingest.subscribe(SUBSCRIPTION)] == [1]
            assert scale.connect().value == 0
            assert thief.connect().value == NOT_AUTHORIZED
            sale = topic_for("nanmen", DeviceKind.SCALE, "S-A1", "sale")
            assert scale.publish(sale, b"{}").value == 0
            assert ingest.next_message() == (sale, b"{}")
            assert ingest.disconnects == []
        finally:
            thief.close()
            scale.close()
            ingest.close()
    assert (tmp_path / "data" / "mosquitto.db").is_file(), "persistence is on: saved on exit"


@pytest.mark.mosquitto
@pytest.mark.parametrize(
    ("protocol", "puback_reason"),
    [
        # MQTT 5: PUBACK with reason code 0x87 Not authorized.
        (MQTTProtocolVersion.MQTTv5, NOT_AUTHORIZED),
        # MQTT 3.1.1 has no reason codes: a plain PUBACK, the same as for a delivered message.
        (MQTTProtocolVersion.MQTTv311, 0),
    ],
)
def test_refused_publish_is_acknowledged_then_the_connection_closed(
    tmp_path: Path, protocol: MQTTProtocolVersion, puback_reason: int
) -> None:
    """What mosquitto 2.0.11 with the deploy config does with a QoS 1 publish the ACL refuses.

    docs/topics.md describes exactly this. Mosquitto drops the message and still
    acknowledges it; with this config (``max_queued_messages 0``) it then closes the
    connection, which 2.0.11 does not do with its default queue limits.
    """
    with deploy_broker(tmp_path) as broker:
        password = broker.device_passwords["S-A1"]
        ingest = Client(broker.port, INGEST_USER, broker.ingest_password)
        scale = Client(broker.port, "S-A1", password, client_id="S-A1", protocol=protocol)
        try:
            assert ingest.connect().value == 0
            assert [rc.value for rc in ingest.subscribe(SUBSCRIPTION)] == [1]
            assert scale.connect().value == 0
            neighbour = topic_for("nanmen", DeviceKind.SCALE, "S-A2", "sale")
            assert scale.publish(neighbour, b"forged").value == puback_reason
            scale.wait_disconnected()
            # The forgery was dropped: the next message ingest receives is the marker.
            again = Client(broker.port, "S-A1", password, client_id="S-A1", protocol=protocol)
            try:
                assert again.connect().value == 0
                own = topic_for("nanmen", DeviceKind.SCALE, "S-A1", "sale")
                assert again.publish(own, b"marker").value == 0
                assert ingest.next_message() == (own, b"marker")
            finally:
                again.close()
        finally:
            scale.close()
            ingest.close()
