"""Reading the audit log: who changed what and when, newest first, a page at a time."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from marketdb.models import AuditRow

#: The most entries one page holds.
MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change: its fields before and after (only those that changed)."""

    id: int
    at: datetime
    actor: str
    action: str
    market: str | None
    entity: str
    entity_id: str
    before: dict[str, Any]
    after: dict[str, Any]


def audit_entries(
    session: Session,
    *,
    market_id: str | None = None,
    entity: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """The newest ``limit`` entries (older than ``before_id``, for the next page)."""
    query = select(AuditRow).order_by(AuditRow.id.desc()).limit(max(1, min(limit, MAX_PAGE)))
    if market_id is not None:
        query = query.where(AuditRow.market_id == market_id)
    if entity is not None:
        query = query.where(AuditRow.entity == entity)
    if before_id is not None:
        query = query.where(AuditRow.id < before_id)
    return [_entry(row) for row in session.scalars(query)]


def _entry(row: AuditRow) -> AuditEntry:
    detail = json.loads(row.detail)
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        market=row.market_id,
        entity=row.entity,
        entity_id=row.entity_id,
        before=detail.get("before", {}),
        after=detail.get("after", {}),
    )
