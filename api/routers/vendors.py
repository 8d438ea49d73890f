"""Vendors of a market, managed: list, read, add, edit, deactivate.

Reads need a viewer token (or better); changes a manager's. A vendor is never
deleted: one who leaves is deactivated (``"active": false`` in a PUT), which
stops their devices publishing; deactivating one with stock on hand (batches of
the last days not sold out) is refused with 409 ``needs_confirmation``, naming
them, until the request says ``?confirm=true``. Scales and screens are assigned
through device management, so a PUT leaves them as they are.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel

from api._exceptions import AUTH_ERRORS, Conflict, error_responses
from api.deps import MarketDep
from api.editing import IfMatch, ManagementDep, set_etag
from api.security import Manager, Viewer
from marketdb.vendors import VersionedVendor
from schemas.messages import Identifier
from schemas.registry import Vendor

router = APIRouter(tags=["vendors"], responses=AUTH_ERRORS)

_EDIT_ERRORS = error_responses(400, 409, 412, 428)


class VendorRecord(BaseModel):
    """A vendor and the version an edit of it names (its ETag)."""

    version: int
    vendor: Vendor


def _record(found: VersionedVendor) -> VendorRecord:
    return VendorRecord(version=found.version, vendor=found.vendor)


VendorId = Annotated[Identifier, Path(description="Vendor id.", examples=["V01"])]


@router.get("/markets/{market}/vendors", summary="Every vendor of the market, active or not")
def list_vendors(
    market: MarketDep, management: ManagementDep, _viewer: Viewer
) -> list[VendorRecord]:
    return [_record(v) for v in management.vendors(market.id)]


@router.get("/markets/{market}/vendors/{vendor}", summary="A vendor, with its version as ETag")
def get_vendor(
    market: MarketDep,
    vendor: VendorId,
    management: ManagementDep,
    response: Response,
    _viewer: Viewer,
) -> VendorRecord:
    found = management.vendor(market.id, vendor)
    set_etag(response, found.version)
    return _record(found)


@router.post(
    "/markets/{market}/vendors",
    status_code=201,
    summary="Add a vendor (devices are added through device management)",
    responses=error_responses(400, 409),
)
def create_vendor(
    market: MarketDep,
    body: Vendor,
    management: ManagementDep,
    request: Request,
    response: Response,
    caller: Manager,
) -> VendorRecord:
    created = management.create_vendor(market.id, body, actor=caller.name)
    set_etag(response, created.version)
    response.headers["Location"] = f"{request.url.path}/{body.id}"
    return _record(created)


@router.put(
    "/markets/{market}/vendors/{vendor}",
    summary="Edit a vendor; If-Match must name the version edited",
    responses=_EDIT_ERRORS,
)
def update_vendor(
    market: MarketDep,
    vendor: VendorId,
    body: Vendor,
    version: IfMatch,
    management: ManagementDep,
    response: Response,
    caller: Manager,
    confirm: Annotated[
        bool, Query(description="Deactivate even with stock on hand (see 409).")
    ] = False,
) -> VendorRecord:
    if body.id != vendor:
        raise Conflict(f"the body's id {body.id!r} is not the path's {vendor!r}")
    if not {"scales", "screens"} & body.model_fields_set:
        stored = management.vendor(market.id, vendor).vendor
        body = body.model_copy(update={"scales": stored.scales, "screens": stored.screens})
    edited = management.update_vendor(
        market.id, body, if_version=version, actor=caller.name, confirmed=confirm
    )
    set_etag(response, edited.version)
    return _record(edited)
