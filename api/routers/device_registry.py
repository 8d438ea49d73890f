"""Devices of a market, managed by administrators: add, disable, enable, reassign.

Adding a device registers it and, where the deployment manages the broker
(Mosquitto's dynamic-security plugin), creates its MQTT user and ACL: the answer
carries its password, the only time it is shown. Disabling one makes the broker
drop its connection at once and ingest refuse what it still sends; a replaced
scale is disabled and its successor added. Changes need an administrator token;
reading a device's record a viewer's. Its status (last seen, online) is
``GET /markets/{market}/devices``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api._exceptions import AUTH_ERRORS, error_responses
from api.deps import MarketDep
from api.editing import IfMatch, ManagementDep, set_etag
from api.security import Administrator, Viewer
from marketdb.devices import DeviceRecord
from schemas.messages import DeviceKind, Identifier
from schemas.registry import Name

router = APIRouter(tags=["device registry"], responses=AUTH_ERRORS)

_EDIT_ERRORS = error_responses(400, 409, 412, 428)
DeviceId = Annotated[Identifier, Path(description="Device id (its MQTT user name).")]


class DeviceOut(BaseModel):
    """A registered device and the version an edit of it names (its ETag)."""

    id: str
    kind: DeviceKind
    vendor: str | None = Field(description="Owner of a scale or screen.")
    name: str | None = Field(description="Name of a gate counter or intake desk.")
    enabled: bool
    version: int


class NewDevice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Identifier = Field(description="Unique across every market: its MQTT user name.")
    kind: DeviceKind
    vendor: Identifier | None = Field(default=None, description="Scales and screens: the owner.")
    name: Name | None = Field(default=None, description="Gates and intake desks: a name.")


class DeviceAddedOut(BaseModel):
    device: DeviceOut
    password: str | None = Field(
        description="The device's MQTT password, shown this once; null when the broker's "
        "users come from `stallwatch broker-auth`'s password file instead."
    )


class Replacement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Identifier = Field(description="The new device's id (its MQTT user name).")


class Assignment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vendor: Identifier | None = Field(default=None, description="Scales and screens.")
    name: Name | None = Field(default=None, description="Gates and intake desks.")


def _out(record: DeviceRecord) -> DeviceOut:
    return DeviceOut(
        id=record.id,
        kind=record.kind,
        vendor=record.vendor,
        name=record.name,
        enabled=record.enabled,
        version=record.version,
    )


@router.get("/markets/{market}/registry/devices", summary="Every registered device, enabled or not")
def list_registered_devices(
    market: MarketDep, management: ManagementDep, _viewer: Viewer
) -> list[DeviceOut]:
    return [_out(d) for d in management.devices(market.id)]


@router.get(
    "/markets/{market}/registry/devices/{device}",
    summary="A registered device, with its version as ETag",
)
def get_registered_device(
    market: MarketDep,
    device: DeviceId,
    management: ManagementDep,
    response: Response,
    _viewer: Viewer,
) -> DeviceOut:
    found = management.device(market.id, device)
    set_etag(response, found.version)
    return _out(found)


@router.post(
    "/markets/{market}/registry/devices",
    status_code=201,
    summary="Add a device and its broker user (the password is shown once)",
    responses=error_responses(400, 409, 502),
)
def add_device(
    market: MarketDep,
    body: NewDevice,
    management: ManagementDep,
    request: Request,
    response: Response,
    caller: Administrator,
) -> DeviceAddedOut:
    added = management.add_device(
        market.id, body.id, body.kind, vendor=body.vendor, name=body.name, actor=caller.name
    )
    set_etag(response, added.device.version)
    response.headers["Location"] = f"{request.url.path}/{body.id}"
    response.headers["Cache-Control"] = "no-store"  # it carries a password
    return DeviceAddedOut(device=_out(added.device), password=added.password)


def _set_enabled(
    market: str, device: str, enabled: bool, version: int, management: ManagementDep, actor: str
) -> DeviceOut:
    return _out(
        management.set_device_enabled(market, device, enabled, if_version=version, actor=actor)
    )


@router.post(
    "/markets/{market}/registry/devices/{device}/disable",
    summary="Disable a device: the broker drops it now and ingest refuses it",
    responses={**_EDIT_ERRORS, **error_responses(502)},
)
def disable_device(
    market: MarketDep,
    device: DeviceId,
    version: IfMatch,
    management: ManagementDep,
    response: Response,
    caller: Administrator,
) -> DeviceOut:
    done = _set_enabled(market.id, device, False, version, management, caller.name)
    set_etag(response, done.version)
    return done


@router.post(
    "/markets/{market}/registry/devices/{device}/enable",
    summary="Enable a disabled device again (same password)",
    responses={**_EDIT_ERRORS, **error_responses(502)},
)
def enable_device(
    market: MarketDep,
    device: DeviceId,
    version: IfMatch,
    management: ManagementDep,
    response: Response,
    caller: Administrator,
) -> DeviceOut:
    done = _set_enabled(market.id, device, True, version, management, caller.name)
    set_etag(response, done.version)
    return done


@router.post(
    "/markets/{market}/registry/devices/{device}/replacement",
    status_code=201,
    summary="Replace a device: disable it and add the new one for the same owner",
    responses={**_EDIT_ERRORS, **error_responses(502)},
)
def replace_device(
    market: MarketDep,
    device: DeviceId,
    body: Replacement,
    version: IfMatch,
    management: ManagementDep,
    request: Request,
    response: Response,
    caller: Administrator,
) -> DeviceAddedOut:
    added = management.replace_device(
        market.id, device, body.id, if_version=version, actor=caller.name
    )
    set_etag(response, added.device.version)
    response.headers["Location"] = request.url.path.rsplit("/", 2)[0] + f"/{body.id}"
    response.headers["Cache-Control"] = "no-store"
    return DeviceAddedOut(device=_out(added.device), password=added.password)


@router.put(
    "/markets/{market}/registry/devices/{device}/assignment",
    summary="Give a scale or screen to another vendor, or rename a gate or intake desk",
    responses=_EDIT_ERRORS,
)
def assign_device(
    market: MarketDep,
    device: DeviceId,
    body: Assignment,
    version: IfMatch,
    management: ManagementDep,
    response: Response,
    caller: Administrator,
) -> DeviceOut:
    done = management.assign_device(
        market.id,
        device,
        vendor=body.vendor,
        name=body.name,
        if_version=version,
        actor=caller.name,
    )
    set_etag(response, done.version)
    return _out(done)
