"""Managing stalls: list, add, edit (zone, floor-plan place), remove one nobody trades at.

A stall a vendor names without listing it exists all the same (as in a market
file); adding it lists it. A stall an active vendor holds cannot be removed (the
refusal names them); one only inactive vendors name stays, unlisted, so their
history still says where they traded.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from marketdb._exceptions import Conflict, NotFound
from marketdb.changes import (
    Clock,
    check_market,
    flush_edit,
    record_change,
    require_version,
    utc_now,
)
from marketdb.marketfile import export_market, stall_of
from marketdb.models import MarketRow, StallRow
from schemas.registry import Stall

ENTITY = "stall"


@dataclass(frozen=True, slots=True)
class VersionedStall:
    """A stall as stored, the vendor trading there (if any), and the version an edit names."""

    stall: Stall
    #: the active vendor at this stall, if any
    vendor: str | None
    version: int


def list_stalls(session: Session, market_id: str) -> list[VersionedStall]:
    """Every stall of the market, listed or only named by a vendor, in order."""
    market = _market(session, market_id)
    holders = _holders(session, market_id)
    return [_versioned(row, holders) for row in market.stalls]


def get_stall(session: Session, market_id: str, stall_id: str) -> VersionedStall:
    return _versioned(_row(session, market_id, stall_id), _holders(session, market_id))


def create_stall(
    session: Session, market_id: str, stall: Stall, *, actor: str, clock: Clock = utc_now
) -> VersionedStall:
    """List a new stall, or one so far only named by a vendor."""
    market = _market(session, market_id)
    row = session.get(StallRow, (market_id, stall.id))
    if row is not None and row.listed:
        raise Conflict(f"stall {stall.id!r} exists in market {market_id!r}")
    _check(session, market_id, stall)
    if row is None:
        row = StallRow(market_id=market_id, id=stall.id, position=len(market.stalls), version=1)
        market.stalls.append(row)
    else:
        row.version += 1
    _apply(row, stall)
    row.listed = True
    session.flush()
    record_change(
        session,
        actor=actor,
        action="create",
        entity=ENTITY,
        entity_id=stall.id,
        market_id=market_id,
        before=None,
        after=stall.model_dump(mode="json"),
        clock=clock,
    )
    return get_stall(session, market_id, stall.id)


def update_stall(
    session: Session,
    market_id: str,
    stall: Stall,
    *,
    if_version: int,
    actor: str,
    clock: Clock = utc_now,
) -> VersionedStall:
    row = _row(session, market_id, stall.id)
    require_version(ENTITY, stall.id, row.version, if_version)
    _check(session, market_id, stall)
    before = stall_of(row).model_dump(mode="json")
    _apply(row, stall)
    row.listed = True
    row.version = if_version + 1
    flush_edit(session, ENTITY, stall.id, if_version)
    record_change(
        session,
        actor=actor,
        action="update",
        entity=ENTITY,
        entity_id=stall.id,
        market_id=market_id,
        before=before,
        after=stall.model_dump(mode="json"),
        clock=clock,
    )
    return get_stall(session, market_id, stall.id)


def remove_stall(
    session: Session,
    market_id: str,
    stall_id: str,
    *,
    if_version: int,
    actor: str,
    clock: Clock = utc_now,
) -> None:
    """Remove a stall no active vendor holds (:class:`Conflict` names the one who does)."""
    row = _row(session, market_id, stall_id)
    require_version(ENTITY, stall_id, row.version, if_version)
    spec = export_market(session, market_id)
    named_by = [v for v in spec.vendors if v.stall == stall_id]
    active = [v for v in named_by if v.active]
    if active:
        holder = active[0]
        raise Conflict(
            f"stall {stall_id!r} is held by vendor {holder.id!r} ({holder.name}): move or "
            "deactivate the vendor first"
        )
    before = stall_of(row).model_dump(mode="json")
    if named_by:  # keep the row: former vendors' records still say they traded here
        row.listed, row.zone, row.row, row.col = False, None, None, None
        row.version = if_version + 1
        flush_edit(session, ENTITY, stall_id, if_version)
    else:
        session.delete(row)
        flush_edit(session, ENTITY, stall_id, if_version)  # a concurrent edit refuses it
    record_change(
        session,
        actor=actor,
        action="remove",
        entity=ENTITY,
        entity_id=stall_id,
        market_id=market_id,
        before=before,
        after=None,
        clock=clock,
    )


# -- helpers -----------------------------------------------------------------------------


def _market(session: Session, market_id: str) -> MarketRow:
    market = session.get(MarketRow, market_id)
    if market is None:
        raise NotFound(f"no market {market_id!r}")
    return market


def _row(session: Session, market_id: str, stall_id: str) -> StallRow:
    row = session.get(StallRow, (market_id, stall_id))
    if row is None:
        raise NotFound(f"no stall {stall_id!r} in market {market_id!r}")
    return row


def _apply(row: StallRow, stall: Stall) -> None:
    row.zone, row.row, row.col = stall.zone, stall.row, stall.col


def _holders(session: Session, market_id: str) -> dict[str, str]:
    spec = export_market(session, market_id)
    return {v.stall: v.id for v in spec.vendors if v.active}


def _versioned(row: StallRow, holders: dict[str, str]) -> VersionedStall:
    return VersionedStall(stall_of(row), holders.get(row.id), row.version)


def _check(session: Session, market_id: str, stall: Stall) -> None:
    """The market's listed stalls with ``stall`` in them, checked as a file's are (one
    stall to a floor-plan square)."""
    spec = export_market(session, market_id)
    others = tuple(s for s in spec.stalls if s.id != stall.id)
    check_market(spec, stalls=(*others, stall))
