"""Batches locked on their vendor's scales and screens: the records, and the state each
device must hold.

A batch whose latest rapid test failed is locked (``lock``): its vendor's scales must
refuse to sell it and its screens show it as suspended (暂停销售). A manager unlocks it
after a passed re-test or with a written reason (``unlock``). Both are audited; the
lock row stays after the unlock as the record of both.

What a device is told is derived, never stored: :func:`device_commands` turns the
market's open locks into each scale's and screen's whole set of suspensions
(``schemas.commands.SuspendedBatches``). Its ``msg_id`` is the time of the market's
latest lock or unlock in microseconds, so the same state always gives the same command
(a republish changes nothing on the device) and every change gives a larger one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from marketdb._exceptions import InvalidChange, MarketDatabaseError, NotFound
from marketdb.changes import Clock, record_audit, utc_now
from marketdb.management import translated_errors
from marketdb.models import BatchLockRow
from schemas.commands import COMMANDS, SuspendedBatches, Suspension, SuspensionReason
from schemas.messages import DeviceKind
from schemas.registry import Market
from storage.records import Reading

log = logging.getLogger(__name__)

#: What a lock says it was made by when no person made it (a failed test arrived).
SYSTEM_ACTOR: Final = "stallwatch"
#: A manager's reason for an unlock must say something.
MIN_REASON_CHARS: Final = 4
MAX_REASON_CHARS: Final = 200
_US_PER_S: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class BatchLock:
    id: int
    market: str
    trace_code: str
    vendor: str
    plu: str
    reason: SuspensionReason
    cause: str
    locked_at: datetime
    locked_by: str
    unlocked_at: datetime | None = None
    unlocked_by: str | None = None
    unlock_reason: str | None = None

    @property
    def open(self) -> bool:
        return self.unlocked_at is None


class LockService(Protocol):
    """What the API and the dashboard ask of the lock keeper
    (``stallwatch.lockkeeper.LockKeeper``): the locks, an unlock that is published to the
    devices, not only recorded, and a batch entered by hand (``observe``: a failed one is
    locked at once, as one arriving over MQTT is)."""

    def observe(self, reading: Reading) -> None: ...

    def locks(self, market: str, *, lifted: bool = False) -> list[BatchLock]: ...

    def of_batch(self, market: str, trace_code: str) -> list[BatchLock]: ...

    def unlock(
        self, market: str, trace_code: str, plu: str, *, actor: str, reason: str
    ) -> BatchLock: ...


def lock_if_failed(keeper: LockService, reading: Reading) -> None:
    """Hand a batch entered by hand to the keeper (a failed one is locked at once). The
    batch is stored already: if the market database fails now, it is logged, and the
    keeper's sweep locks the batch within a minute, so the entry still succeeds."""
    try:
        keeper.observe(reading)
    except MarketDatabaseError as exc:
        log.warning("batch not locked at entry (the sweep will): %s", exc)


class Locks:
    """Lock and unlock batches in the market database (thread-safe: a session per call)."""

    def __init__(self, sessions: sessionmaker[Session], *, clock: Clock = utc_now) -> None:
        self._sessions = sessions
        self._clock = clock

    def lock(
        self,
        market: str,
        trace_code: str,
        vendor: str,
        plu: str,
        *,
        reason: SuspensionReason,
        cause: str,
        actor: str = SYSTEM_ACTOR,
    ) -> tuple[BatchLock, bool]:
        """Lock the batch's product; returns the lock and whether it is new. Locking a
        batch that is locked already returns the open lock unchanged (a failed test
        delivered twice, or two failures, lock once)."""
        found = self._open(market, trace_code, plu)
        if found is not None:
            return found, False
        row = BatchLockRow(
            market_id=market,
            trace_code=trace_code,
            vendor_id=vendor,
            plu=plu,
            reason=reason.value,
            cause=cause[:MAX_REASON_CHARS],
            locked_at=self._clock(),
            locked_by=actor,
        )
        with translated_errors():
            try:
                with self._sessions.begin() as session:
                    session.add(row)
                    session.flush()
                    self._audit(session, row, "lock", None, _fields(row))
                    made = _lock_of(row)
            except IntegrityError:  # locked meanwhile (the sweep, another thread): theirs stands
                again = self._open(market, trace_code, plu)
                if again is None:
                    raise
                return again, False
        return made, True

    def unlock(
        self, market: str, trace_code: str, plu: str, *, actor: str, reason: str
    ) -> BatchLock:
        """Lift the open lock, with the manager's reason (a passed re-test, a finding)."""
        words = " ".join(reason.split())
        if not MIN_REASON_CHARS <= len(words) <= MAX_REASON_CHARS:
            raise InvalidChange(
                f"reason: say why the batch may be sold again "
                f"({MIN_REASON_CHARS} to {MAX_REASON_CHARS} characters)",
                "reason",
            )
        with translated_errors(), self._sessions.begin() as session:
            row = session.scalars(_open_lock(market, trace_code, plu).with_for_update()).first()
            if row is None:
                raise NotFound(f"no open lock of batch {trace_code!r}, product {plu!r}")
            before = _fields(row)
            row.unlocked_at, row.unlocked_by, row.unlock_reason = self._clock(), actor, words
            self._audit(session, row, "unlock", before, _fields(row))
            return _lock_of(row)

    def open_locks(self, market: str) -> list[BatchLock]:
        """The market's open locks, oldest first."""
        query = (
            select(BatchLockRow)
            .where(BatchLockRow.market_id == market, BatchLockRow.unlocked_at.is_(None))
            .order_by(BatchLockRow.locked_at, BatchLockRow.id)
        )
        with translated_errors(), self._sessions() as session:
            return [_lock_of(row) for row in session.scalars(query)]

    def all_locks(self, market: str) -> list[BatchLock]:
        """Every lock of the market, open or lifted, oldest first."""
        query = (
            select(BatchLockRow)
            .where(BatchLockRow.market_id == market)
            .order_by(BatchLockRow.locked_at, BatchLockRow.id)
        )
        with translated_errors(), self._sessions() as session:
            return [_lock_of(row) for row in session.scalars(query)]

    def of_batch(self, market: str, trace_code: str) -> list[BatchLock]:
        """Every lock the batch has had, open or lifted, oldest first."""
        query = (
            select(BatchLockRow)
            .where(BatchLockRow.market_id == market, BatchLockRow.trace_code == trace_code)
            .order_by(BatchLockRow.locked_at, BatchLockRow.id)
        )
        with translated_errors(), self._sessions() as session:
            return [_lock_of(row) for row in session.scalars(query)]

    def state_version(self, market: str) -> int:
        """Microseconds since the epoch of the market's latest lock or unlock; 0 if none."""
        with translated_errors(), self._sessions() as session:
            latest = session.execute(
                select(func.max(BatchLockRow.locked_at), func.max(BatchLockRow.unlocked_at)).where(
                    BatchLockRow.market_id == market
                )
            ).one()
        moments = [_as_utc(moment) for moment in latest if moment is not None]
        return round(max(moments).timestamp() * _US_PER_S) if moments else 0

    def _open(self, market: str, trace_code: str, plu: str) -> BatchLock | None:
        with translated_errors(), self._sessions() as session:
            row = session.scalars(_open_lock(market, trace_code, plu)).first()
            return None if row is None else _lock_of(row)

    def _audit(
        self,
        session: Session,
        row: BatchLockRow,
        action: str,
        before: dict[str, object] | None,
        after: dict[str, object],
    ) -> None:
        record_audit(
            session,
            actor=row.unlocked_by if action == "unlock" and row.unlocked_by else row.locked_by,
            action=action,
            entity="batch_lock",
            entity_id=f"{row.trace_code}/{row.plu}",
            market_id=row.market_id,
            before=before,
            after=after,
            clock=self._clock,
        )


def device_commands(
    market: Market, locks: Sequence[BatchLock], *, version: int, now: datetime
) -> dict[tuple[DeviceKind, str], SuspendedBatches]:
    """What every scale and screen of the market must hold now: its vendor's open locks
    (an empty set for a vendor with none, so a lifted lock is lifted everywhere)."""
    by_vendor: dict[str, list[Suspension]] = {}
    for lock in locks:
        if lock.open and lock.market == market.id:
            by_vendor.setdefault(lock.vendor, []).append(
                Suspension(
                    trace_code=lock.trace_code,
                    plu=lock.plu,
                    since=lock.locked_at,
                    reason=lock.reason,
                )
            )
    commands: dict[tuple[DeviceKind, str], SuspendedBatches] = {}
    for device in market.devices.values():
        if device.kind not in COMMANDS or device.vendor is None:
            continue
        commands[(device.kind, device.id)] = SuspendedBatches(
            msg_id=version, ts=now, suspended=tuple(by_vendor.get(device.vendor, ()))
        )
    return commands


def _open_lock(market: str, trace_code: str, plu: str) -> Select[BatchLockRow]:
    return select(BatchLockRow).where(
        BatchLockRow.market_id == market,
        BatchLockRow.trace_code == trace_code,
        BatchLockRow.plu == plu,
        BatchLockRow.unlocked_at.is_(None),
    )


def _fields(row: BatchLockRow) -> dict[str, object]:
    return {
        "trace_code": row.trace_code,
        "vendor": row.vendor_id,
        "plu": row.plu,
        "reason": row.reason,
        "cause": row.cause,
        "unlocked_at": row.unlocked_at,
        "unlock_reason": row.unlock_reason,
    }


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _lock_of(row: BatchLockRow) -> BatchLock:
    return BatchLock(
        id=row.id,
        market=row.market_id,
        trace_code=row.trace_code,
        vendor=row.vendor_id,
        plu=row.plu,
        reason=SuspensionReason(row.reason),
        cause=row.cause,
        locked_at=row.locked_at,
        locked_by=row.locked_by,
        unlocked_at=row.unlocked_at,
        unlocked_by=row.unlocked_by,
        unlock_reason=row.unlock_reason,
    )
