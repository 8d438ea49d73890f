"""What every change to the registry does besides itself: an audit row and a new revision.

Both are written in the change's own transaction, so a change that rolls back leaves
neither, and a process that sees the new revision sees the change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from marketdb._exceptions import InvalidChange, StaleEdit
from marketdb.models import AuditRow, RegistryRevisionRow
from schemas.registry import MarketFile

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
    record_audit(
        session,
        actor=actor,
        action=action,
        entity=entity,
        entity_id=entity_id,
        market_id=market_id,
        before=before,
        after=after,
        clock=clock,
    )
    bump_revision(session)


def record_audit(
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
    """Audit a change that is not the registry's (a login or token): no new revision."""
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


# -- checks every edit makes ---------------------------------------------------------------


def stale_edit(entity: str, entity_id: str, yours: int, stored: int | None) -> StaleEdit:
    """The refusal of an edit made on version ``yours`` of something now at ``stored``."""
    now = "" if stored is None else f" (now version {stored})"
    return StaleEdit(
        f"{entity} {entity_id!r} was changed by someone else since you read version {yours}"
        f"{now}: reload it and make your change again"
    )


def require_version(entity: str, entity_id: str, stored: int, yours: int) -> None:
    if stored != yours:
        raise stale_edit(entity, entity_id, yours, stored)


def flush_edit(session: Session, entity: str, entity_id: str, yours: int) -> None:
    """Write the edit; another transaction's edit that landed since the read refuses it."""
    try:
        session.flush()
    except StaleDataError as exc:
        raise stale_edit(entity, entity_id, yours, None) from exc


#: The field of a whole-market rule's message, for a form to show it next to.
_FIELDS_IN_MESSAGES = ("stall", "categories", "products", "category")


def check_market(spec: MarketFile, **replaced: object) -> None:
    """The whole market with ``replaced`` parts, checked as a market file is."""
    try:
        MarketFile(**{**dict(spec), **replaced})
    except ValidationError as exc:
        message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        field = next((f for f in _FIELDS_IN_MESSAGES if f in message), None)
        raise InvalidChange(message, field) from exc
