"""Mosquitto users, client ids and access rules generated from the market registry.

Every device gets its own MQTT user, named by its device id, with a random
password, and is pinned to the client id equal to that name: the broker refuses
a device's credentials under any other client id. A device therefore cannot
take over another client's session (Mosquitto disconnects the older of two
connections with the same client id), neither ingest's nor another device's.
Its role lets it publish only to its own topics (exactly the channels of its
kind in :data:`schemas.topics.CHANNELS`) and read nothing, so a stolen scale
password cannot forge another stall's sales or read the market's traffic.

Two service users read ``markets/#``: ``stallwatch-ingest`` and
``stallwatch-api``. They are not pinned, because every ingest instance and every
API process needs a client id of its own under the one user; instead the client
id prefix ``stallwatch-`` is theirs: no device id may start with it. A third,
``stallwatch-admin``, may only talk to the plugin's control topic: the web app
uses it to add, disable and enable devices' users while the broker runs
(``stallwatch.dynsec``). A fourth, ``stallwatch-command``, may only publish to the
devices' command topics (``schemas.commands``): what locks a failed batch on a scale
and its vendor's screen.

Scales and screens may also subscribe to their own command topic, and receive only
that. The services' role does not receive command topics at all: ingest and the live
view subscribe to every topic under ``markets/`` and would otherwise be sent every
retained command at each subscription.

All of this is one configuration file of Mosquitto's dynamic-security plugin,
which, unlike a password file and ACL, can bind a user to a client id.

Output files, all mode 0600, in one directory:

* ``credentials.json`` - the plaintext passwords; the source of truth. Re-running
  keeps every existing password (new devices get new ones, devices no longer in
  the registry are dropped) unless ``rotate`` is set.
* ``dynamic-security.json`` - the plugin's configuration: users with their
  PBKDF2-SHA512 password hashes and client ids, and their roles.
* ``<service user>.password`` - one file per service user, for
  ``STALLWATCH_MQTT_PASSWORD_FILE``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, ValidationError

from schemas.commands import COMMAND_CHANNEL, COMMANDED_KINDS, COMMANDS, command_topic
from schemas.credentials import CREDENTIALS_FILE, CredentialsFile
from schemas.registry import Device, Registry
from schemas.topics import CHANNELS, ROOT, topic_for
from storage.privatefiles import PrivateFileError, read_private, write_private

INGEST_USER = "stallwatch-ingest"
API_USER = "stallwatch-api"
ADMIN_USER = "stallwatch-admin"
COMMAND_USER = "stallwatch-command"
SERVICE_USERS = (INGEST_USER, API_USER, ADMIN_USER, COMMAND_USER)
#: Client ids starting with this belong to the services; device ids must not.
SERVICE_CLIENT_ID_PREFIX = "stallwatch-"
#: Topic filter both service users may read.
SERVICE_READ_FILTER = f"{ROOT}/#"
#: The same, as a shared subscription of any group: Mosquitto checks a SUBSCRIBE's
#: filter as sent, ``$share/<group>/`` included.
SERVICE_SHARED_FILTER = f"$share/+/{SERVICE_READ_FILTER}"
SERVICE_ROLE = "stallwatch-service"
ADMIN_ROLE = "stallwatch-broker-admin"
COMMAND_ROLE = "stallwatch-commander"
#: Every device's command topic, of each kind that takes commands.
COMMAND_FILTERS = tuple(topic_for("+", kind, "+", COMMAND_CHANNEL) for kind in COMMANDED_KINDS)
#: Command topics the services' role must not be sent (above its ``markets/#``).
_ANY_COMMAND_FILTER = f"{ROOT}/+/+/+/{COMMAND_CHANNEL}"
#: The dynamic-security plugin's control topics (commands, and responses under them).
DYNSEC_CONTROL_FILTER = "$CONTROL/dynamic-security/#"
_ROLE_OF_SERVICE = {
    INGEST_USER: SERVICE_ROLE,
    API_USER: SERVICE_ROLE,
    ADMIN_USER: ADMIN_ROLE,
    COMMAND_USER: COMMAND_ROLE,
}

DYNSEC_FILE = "dynamic-security.json"
PASSWORD_FILE_SUFFIX = ".password"  # noqa: S105 (a file name suffix)

#: What ``mosquitto_passwd`` 2.0 writes: ``$7$<iterations>$<base64 salt>$<base64 hash>``.
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12
HASH_BYTES = 64
PASSWORD_BYTES = 32  # token_urlsafe(32): 43 characters, 256 bits
_PBKDF2_MARK = "7"


class BrokerAuthError(RuntimeError):
    """The broker credentials cannot be generated or the existing ones cannot be read."""


class _DynsecRoleRef(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    rolename: str


class _DynsecClient(BaseModel):
    """One user in the dynamic-security plugin's file: a PBKDF2-SHA512 hash in three fields."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    username: str
    #: Set for devices: the plugin refuses the user under any other client id.
    clientid: str | None = None
    password: str
    salt: str
    iterations: int
    roles: tuple[_DynsecRoleRef, ...] = ()

    @classmethod
    def from_hash(cls, user: str, encoded: str, role: str, *, client_id: str | None) -> Self:
        _, _, iterations, salt, digest = encoded.split("$")
        return cls(
            username=user,
            clientid=client_id,
            password=digest,
            salt=salt,
            iterations=int(iterations),
            roles=(_DynsecRoleRef(rolename=role),),
        )

    def encoded_hash(self) -> str:
        """The same hash as ``mosquitto_passwd`` writes it, for :func:`verify_password`."""
        return f"${_PBKDF2_MARK}${self.iterations}${self.salt}${self.password}"


class _DynsecFile(BaseModel):
    """What this module reads back from an earlier ``dynamic-security.json``: the hashes."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    clients: tuple[_DynsecClient, ...] = ()


@dataclass(frozen=True, slots=True)
class BrokerAuthFiles:
    """What :func:`write_broker_auth` wrote, and which devices it added or dropped."""

    dynsec: Path
    credentials: Path
    service_password_files: Mapping[str, Path]
    added_devices: tuple[str, ...]
    removed_devices: tuple[str, ...]


# -- password hashing ----------------------------------------------------------------


def hash_password(
    password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """A Mosquitto 2 password hash: PBKDF2-HMAC-SHA512 over the UTF-8 password."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    return f"${_PBKDF2_MARK}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True if ``encoded`` is a ``$7$`` hash of ``password``; other formats never match."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != _PBKDF2_MARK or not parts[2].isdigit():
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except binascii.Error:
        return False
    iterations = int(parts[2])
    if not 0 < iterations <= 1_000_000:
        return False
    actual = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(expected))
    return hmac.compare_digest(actual, expected)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


# -- what each user may do ---------------------------------------------------------------


def registered_devices(registry: Registry) -> list[Device]:
    """Every enabled device of every market, in a stable order (market file order, then id).

    A disabled device, or one of a vendor who left, gets no broker user.
    """
    devices = [
        device
        for market in registry
        for device in sorted(market.devices.values(), key=_by_id)
        if device.enabled
    ]
    clashes = sorted(d.id for d in devices if d.id.startswith(SERVICE_CLIENT_ID_PREFIX))
    if clashes:
        raise BrokerAuthError(
            f"device ids {clashes} start with {SERVICE_CLIENT_ID_PREFIX!r}, which is reserved "
            "for stallwatch's service users and client ids"
        )
    return devices


def _by_id(device: Device) -> str:
    return device.id


def device_topics(device: Device) -> list[str]:
    """The topics a device may publish to: its kind's channels under its own id."""
    return [
        topic_for(device.market, kind, device.id, channel)
        for kind, channel in CHANNELS
        if kind == device.kind
    ]


def device_role(device_id: str) -> str:
    return f"device-{device_id}"


def device_acls(device: Device) -> list[dict[str, object]]:
    """A device's role: publish to its own topics; a scale or screen also subscribes to,
    and receives, its own command topic. Nothing else."""
    acls = [_acl("publishClientSend", topic) for topic in device_topics(device)]
    if device.kind in COMMANDS:
        topic = command_topic(device.market, device.kind, device.id)
        acls += [_acl("subscribeLiteral", topic), _acl("publishClientReceive", topic)]
    return acls


def _acl(acltype: str, topic: str, *, allow: bool = True, priority: int = 0) -> dict[str, object]:
    acl: dict[str, object] = {"acltype": acltype, "topic": topic, "allow": allow}
    if priority:
        acl["priority"] = priority  # checked before the role's other rules (higher first)
    return acl


def _roles(devices: list[Device]) -> list[dict[str, object]]:
    service_acls = [
        _acl("publishClientReceive", _ANY_COMMAND_FILTER, allow=False, priority=1),
        _acl("subscribePattern", SERVICE_READ_FILTER),
        _acl("subscribePattern", SERVICE_SHARED_FILTER),
        _acl("publishClientReceive", SERVICE_READ_FILTER),
    ]
    admin_acls = [
        _acl("publishClientSend", DYNSEC_CONTROL_FILTER),
        _acl("subscribePattern", DYNSEC_CONTROL_FILTER),
        _acl("publishClientReceive", DYNSEC_CONTROL_FILTER),
    ]
    command_acls = [_acl("publishClientSend", topic) for topic in COMMAND_FILTERS]
    roles: list[dict[str, object]] = [
        {"rolename": SERVICE_ROLE, "acls": service_acls},
        {"rolename": ADMIN_ROLE, "acls": admin_acls},
        {"rolename": COMMAND_ROLE, "acls": command_acls},
    ]
    for device in devices:
        roles.append({"rolename": device_role(device.id), "acls": device_acls(device)})
    return roles


def _kept_hash(user: str, password: str, previous_hashes: Mapping[str, str]) -> str:
    """The user's previous hash while it still matches (so re-runs change nothing)."""
    previous = previous_hashes.get(user)
    if previous is not None and verify_password(password, previous):
        return previous
    return hash_password(password)


def render_dynsec(
    registry: Registry,
    services: Mapping[str, str],
    devices: Mapping[str, str],
    previous_hashes: Mapping[str, str],
) -> str:
    """The dynamic-security plugin's configuration for these users and passwords.

    Nothing is allowed by default: services may subscribe to and receive
    ``markets/#`` but its command topics, the command user may publish to command
    topics, each device may publish to its own topics (a scale or screen also read its
    command topic) and must connect with its id as client id.
    """
    registered = registered_devices(registry)
    clients = [
        _DynsecClient.from_hash(
            user,
            _kept_hash(user, password, previous_hashes),
            _ROLE_OF_SERVICE[user],
            client_id=None,
        )
        for user, password in services.items()
    ] + [
        _DynsecClient.from_hash(
            device.id,
            # No password here: added while the broker ran, its saved hash stands.
            previous_hashes[device.id]
            if device.id not in devices
            else _kept_hash(device.id, devices[device.id], previous_hashes),
            device_role(device.id),
            client_id=device.id,
        )
        for device in registered
    ]
    document = {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": [client.model_dump(exclude_none=True) for client in clients],
        "groups": [],
        "roles": _roles(registered),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# -- files -------------------------------------------------------------------------------


def _read_dynsec_hashes(path: Path) -> dict[str, str]:
    """User -> ``$7$`` hash from an existing plugin configuration, to keep unchanged hashes.

    The hashes are derived from ``credentials.json``: an unparsable file is simply
    replaced with fresh ones.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise BrokerAuthError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        loaded = _DynsecFile.model_validate_json(raw)
    except ValidationError:
        return {}
    return {client.username: client.encoded_hash() for client in loaded.clients}


def _read_credentials(path: Path) -> CredentialsFile | None:
    # A damaged file is an error, never regenerated: that would lock every deployed device out.
    try:
        return read_private(path, CredentialsFile, "credentials file")
    except PrivateFileError as exc:
        raise BrokerAuthError(str(exc)) from exc


def _write_private(path: Path, text: str) -> None:
    try:
        write_private(path, text)
    except OSError as exc:
        raise BrokerAuthError(f"cannot write {path}: {exc.strerror}") from exc


def _fsync_directory(directory: Path) -> None:
    """Make the renames durable: a crash must not bring back the old files."""
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise BrokerAuthError(f"cannot sync {directory}: {exc.strerror}") from exc


def _keep_or_create(
    names: list[str], previous: Mapping[str, str], *, rotate: bool
) -> dict[str, str]:
    return {
        name: new_password() if rotate or name not in previous else previous[name] for name in names
    }


def _credentials_json(devices: Mapping[str, str], services: Mapping[str, str]) -> str:
    document = CredentialsFile(devices=dict(devices), services=dict(services))
    return json.dumps(document.model_dump(), indent=2, ensure_ascii=False) + "\n"


@dataclass(frozen=True, slots=True)
class _Paths:
    dynsec: Path
    credentials: Path
    service_password_files: Mapping[str, Path]


def _paths(out_dir: Path) -> _Paths:
    return _Paths(
        dynsec=out_dir / DYNSEC_FILE,
        credentials=out_dir / CREDENTIALS_FILE,
        service_password_files={u: out_dir / f"{u}{PASSWORD_FILE_SUFFIX}" for u in SERVICE_USERS},
    )


def write_broker_auth(
    registry: Registry, out_dir: Path, *, rotate: bool = False
) -> BrokerAuthFiles:
    """Write credentials and the dynamic-security configuration for ``registry`` into ``out_dir``.

    Existing passwords in ``out_dir/credentials.json`` are kept unless ``rotate``.
    The credentials are written first: if anything fails later, re-running
    rebuilds the plugin's configuration from them.

    A device the web app added while the broker ran (``stallwatch.dynsec``) has a
    hash in the plugin's file, which the plugin saved, and no password here: its
    password was shown once and kept nowhere. Its hash is kept as it is (unless
    ``rotate``), so re-running after such additions locks nobody out.
    """
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise BrokerAuthError(f"cannot create {out_dir}: {exc.strerror}") from exc
    paths = _paths(out_dir)
    previous = _read_credentials(paths.credentials)
    previous_devices = {} if previous is None else previous.devices
    previous_services = {} if previous is None else previous.services

    previous_hashes = _read_dynsec_hashes(paths.dynsec)
    device_ids = [device.id for device in registered_devices(registry)]
    added_live = (
        set()
        if rotate
        else {d for d in device_ids if d not in previous_devices and d in previous_hashes}
    )
    devices = _keep_or_create(
        [d for d in device_ids if d not in added_live], previous_devices, rotate=rotate
    )
    services = _keep_or_create(list(SERVICE_USERS), previous_services, rotate=rotate)
    _write_private(paths.credentials, _credentials_json(devices, services))
    for user, path in paths.service_password_files.items():
        _write_private(path, services[user])
    _write_private(paths.dynsec, render_dynsec(registry, services, devices, previous_hashes))
    _fsync_directory(out_dir)

    return BrokerAuthFiles(
        dynsec=paths.dynsec,
        credentials=paths.credentials,
        service_password_files=paths.service_password_files,
        added_devices=tuple(
            d for d in device_ids if d not in previous_devices and d not in added_live
        ),
        removed_devices=tuple(sorted(set(previous_devices) - set(device_ids))),
    )


def load_device_passwords(credentials_file: Path) -> dict[str, str]:
    """Device id -> password from a ``credentials.json`` (for the simulator)."""
    loaded = _read_credentials(credentials_file)
    if loaded is None:
        raise BrokerAuthError(f"{credentials_file} does not exist; run `stallwatch broker-auth`")
    return dict(loaded.devices)
