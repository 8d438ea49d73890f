"""Stalls of a market, managed: their zone and place on the floor plan.

Reads need a viewer token (or better); changes a manager's. A stall an active
vendor holds cannot be removed (409 names the vendor).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field

from api._exceptions import AUTH_ERRORS, Conflict, error_responses
from api.deps import MarketDep
from api.editing import IfMatch, ManagementDep, set_etag
from api.security import Manager, Viewer
from marketdb.stalls import VersionedStall
from schemas.messages import Identifier
from schemas.registry import Stall

router = APIRouter(tags=["stalls"], responses=AUTH_ERRORS)

_EDIT_ERRORS = error_responses(400, 409, 412, 428)
StallId = Annotated[Identifier, Path(description="Stall id.", examples=["A01"])]


class StallRecord(BaseModel):
    """A stall, the active vendor trading there, and the version an edit of it names."""

    version: int
    stall: Stall
    vendor: str | None = Field(description="The active vendor at this stall, if any.")


def _record(found: VersionedStall) -> StallRecord:
    return StallRecord(version=found.version, stall=found.stall, vendor=found.vendor)


@router.get("/markets/{market}/stalls", summary="Every stall of the market")
def list_stalls(market: MarketDep, management: ManagementDep, _viewer: Viewer) -> list[StallRecord]:
    return [_record(s) for s in management.stalls(market.id)]


@router.get("/markets/{market}/stalls/{stall}", summary="A stall, with its version as ETag")
def get_stall(
    market: MarketDep,
    stall: StallId,
    management: ManagementDep,
    response: Response,
    _viewer: Viewer,
) -> StallRecord:
    found = management.stall(market.id, stall)
    set_etag(response, found.version)
    return _record(found)


@router.post(
    "/markets/{market}/stalls",
    status_code=201,
    summary="Add a stall",
    responses=error_responses(400, 409),
)
def create_stall(
    market: MarketDep,
    body: Stall,
    management: ManagementDep,
    request: Request,
    response: Response,
    caller: Manager,
) -> StallRecord:
    created = management.create_stall(market.id, body, actor=caller.name)
    set_etag(response, created.version)
    response.headers["Location"] = f"{request.url.path}/{body.id}"
    return _record(created)


@router.put(
    "/markets/{market}/stalls/{stall}",
    summary="Edit a stall's zone or place; If-Match must name the version edited",
    responses=_EDIT_ERRORS,
)
def update_stall(
    market: MarketDep,
    stall: StallId,
    body: Stall,
    version: IfMatch,
    management: ManagementDep,
    response: Response,
    caller: Manager,
) -> StallRecord:
    if body.id != stall:
        raise Conflict(f"the body's id {body.id!r} is not the path's {stall!r}")
    edited = management.update_stall(market.id, body, if_version=version, actor=caller.name)
    set_etag(response, edited.version)
    return _record(edited)


@router.delete(
    "/markets/{market}/stalls/{stall}",
    status_code=204,
    summary="Remove a stall nobody trades at",
    responses=_EDIT_ERRORS,
)
def remove_stall(
    market: MarketDep,
    stall: StallId,
    version: IfMatch,
    management: ManagementDep,
    caller: Manager,
) -> Response:
    management.remove_stall(market.id, stall, if_version=version, actor=caller.name)
    return Response(status_code=204)
