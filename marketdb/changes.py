"""What every change to the registry does besides itself: an audit row and a new revision.

Both are written in the change's own transaction, so a change that rolls back leaves
neither, and a process that sees the new revision sees the change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from marketdb.models import AuditRow, RegistryRevisionRow

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def record_change(
    session: Session,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: str,
    market_id: str | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    clock: Clock = utc_now,
) -> None:
    """Audit the change (the fields that differ, before and after) and bump the revision."""
    session.add(
        AuditRow(
            at=clock(),
            actor=actor,
            action=action,
            market_id=market_id,
            entity=entity,
            entity_id=entity_id,
            detail=json.dumps(_difference(before, after), ensure_ascii=False, default=str),
        )
    )
    bump_revision(session)


def _difference(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """``{"before": {...}, "after": {...}}`` of the fields that changed (all of a new or
    removed thing's)."""
    old, new = before or {}, after or {}
    changed = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
    return {
        "before": {key: old[key] for key in changed if key in old},
        "after": {key: new[key] for key in changed if key in new},
    }


def bump_revision(session: Session) -> int:
    """Count one more change; returns the new revision. The row lock (PostgreSQL) orders
    concurrent changes."""
    session.execute(
        update(RegistryRevisionRow)
        .where(RegistryRevisionRow.id == 1)
        .values(revision=RegistryRevisionRow.revision + 1)
    )
    return revision(session)


def revision(session: Session) -> int:
    """The registry's revision: how many changes it has seen."""
    found = session.scalar(select(RegistryRevisionRow.revision).where(RegistryRevisionRow.id == 1))
    return 0 if found is None else found
