"""The audit log: who changed what in the registry, and when, newest first, in pages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api._exceptions import AUTH_ERRORS, Forbidden
from api.editing import ManagementDep
from api.security import Viewer
from marketdb.audit import MAX_PAGE, AuditEntry
from schemas.messages import Identifier

router = APIRouter(tags=["audit"], responses=AUTH_ERRORS)


class AuditOut(BaseModel):
    id: int = Field(description="Increasing; `before` pages back from one.")
    at: datetime
    actor: str = Field(description="The user or token that made the change.")
    action: str
    market: str | None
    entity: str
    entity_id: str
    before: dict[str, Any] = Field(description="The changed fields before the change.")
    after: dict[str, Any] = Field(description="The changed fields after it.")


def _out(entry: AuditEntry) -> AuditOut:
    return AuditOut(
        id=entry.id,
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        market=entry.market,
        entity=entry.entity,
        entity_id=entry.entity_id,
        before=entry.before,
        after=entry.after,
    )


@router.get("/audit", summary="Changes to the registry, newest first")
def audit_log(
    management: ManagementDep,
    caller: Viewer,
    market: Annotated[Identifier | None, Query(description="Only this market's.")] = None,
    entity: Annotated[
        str | None,
        Query(pattern=r"^(vendor|stall|product|device)$", description="Only this kind's."),
    ] = None,
    before: Annotated[
        int | None, Query(ge=1, le=2**62, description="Cursor: entries older than this id.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> list[AuditOut]:
    if caller.market is not None and market != caller.market:
        raise Forbidden(f"this token is limited to market {caller.market!r}: pass market=")
    entries = management.audit(market_id=market, entity=entity, before_id=before, limit=limit)
    return [_out(e) for e in entries]
