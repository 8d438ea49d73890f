"""Batch locks in the market database (both backends), and the state each device is told."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from marketdb._exceptions import InvalidChange, NotFound
from marketdb.database import session_factory
from marketdb.locks import SYSTEM_ACTOR, BatchLock, Locks, device_commands
from marketdb.models import AuditRow
from schemas.commands import SuspensionReason
from schemas.messages import DeviceKind
from schemas.registry import Market

T0 = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
FAILED = SuspensionReason.RAPID_TEST_FAILED


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def locks(engine: Engine) -> Locks:
    return Locks(session_factory(engine), clock=Clock())


def _vendor_with_devices(market: Market) -> str:
    return next(v.id for v in market.spec.vendors if v.scales and v.screens)


def test_a_lock_is_made_once_and_lifted_with_a_reason(locks: Locks, engine: Engine) -> None:
    first, made = locks.lock("nanmen", "BATCH-1", "V-A01", "1001", reason=FAILED, cause="61.5%")
    again, made_again = locks.lock("nanmen", "BATCH-1", "V-A01", "1001", reason=FAILED, cause="x")
    assert (made, made_again) == (True, False)
    assert again == first
    assert first.open
    assert first.locked_by == SYSTEM_ACTOR
    assert locks.open_locks("nanmen") == [first]

    lifted = locks.unlock("nanmen", "BATCH-1", "1001", actor="manager", reason="re-test  passed")
    assert (lifted.open, lifted.unlocked_by, lifted.unlock_reason) == (
        False,
        "manager",
        "re-test passed",
    )
    assert locks.open_locks("nanmen") == []
    relocked, made = locks.lock("nanmen", "BATCH-1", "V-A01", "1001", reason=FAILED, cause="55%")
    assert made
    assert relocked.id != first.id
    assert [lock.open for lock in locks.of_batch("nanmen", "BATCH-1")] == [False, True]
    with session_factory(engine)() as session:
        audited = session.scalars(select(AuditRow).order_by(AuditRow.id)).all()
    assert [(row.action, row.actor, row.entity_id) for row in audited] == [
        ("lock", SYSTEM_ACTOR, "BATCH-1/1001"),
        ("unlock", "manager", "BATCH-1/1001"),
        ("lock", SYSTEM_ACTOR, "BATCH-1/1001"),
    ]


def test_an_unlock_needs_an_open_lock_and_words(locks: Locks) -> None:
    with pytest.raises(NotFound):
        locks.unlock("nanmen", "BATCH-9", "1001", actor="manager", reason="re-test passed")
    locks.lock("nanmen", "BATCH-9", "V-A01", "1001", reason=FAILED, cause="61.5%")
    with pytest.raises(InvalidChange) as refused:
        locks.unlock("nanmen", "BATCH-9", "1001", actor="manager", reason="  ok ")
    assert refused.value.field == "reason"
    assert locks.open_locks("nanmen")[0].open  # nothing changed


def test_the_state_version_grows_with_every_change(locks: Locks) -> None:
    assert locks.state_version("nanmen") == 0
    locks.lock("nanmen", "BATCH-1", "V-A01", "1001", reason=FAILED, cause="61.5%")
    after_lock = locks.state_version("nanmen")
    locks.lock("nanmen", "BATCH-1", "V-A01", "1001", reason=FAILED, cause="again")
    assert locks.state_version("nanmen") == after_lock  # the same state, the same version
    locks.unlock("nanmen", "BATCH-1", "1001", actor="manager", reason="re-test passed")
    assert locks.state_version("nanmen") > after_lock
    assert locks.state_version("beiguan") == 0


def test_every_scale_and_screen_is_told_its_vendors_locks(
    locks: Locks, example_market: Market
) -> None:
    vendor = _vendor_with_devices(example_market)
    spec = example_market.spec.vendors
    own = next(v for v in spec if v.id == vendor)
    locks.lock(example_market.id, "BATCH-1", vendor, "1001", reason=FAILED, cause="61.5%")
    locks.lock(example_market.id, "BATCH-2", "someone-else", "1002", reason=FAILED, cause="50%")
    version = locks.state_version(example_market.id)

    commands = device_commands(
        example_market, locks.open_locks(example_market.id), version=version, now=T0
    )

    commanded = {
        device.id
        for device in example_market.devices.values()
        if device.kind in (DeviceKind.SCALE, DeviceKind.SCREEN) and device.vendor is not None
    }
    assert {device for _kind, device in commands} == commanded
    for scale in own.scales:
        command = commands[(DeviceKind.SCALE, scale)]
        assert [(s.trace_code, s.plu) for s in command.suspended] == [("BATCH-1", "1001")]
        assert command.msg_id == version
    for screen in own.screens:
        assert [s.trace_code for s in commands[(DeviceKind.SCREEN, screen)].suspended] == [
            "BATCH-1"
        ]
    others = [c for (_k, d), c in commands.items() if d not in (*own.scales, *own.screens)]
    assert others
    assert all(c.suspended == () for c in others)


class _RacedLocks(Locks):
    """Locks whose first look for an open lock misses one made meanwhile (by the sweep on
    the keeper's thread while an API thread locks the same batch)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.looks = 0

    def _open(self, market: str, trace_code: str, plu: str) -> BatchLock | None:
        self.looks += 1
        return None if self.looks == 1 else super()._open(market, trace_code, plu)


def test_a_lock_made_meanwhile_by_another_thread_stands_and_nothing_fails(
    locks: Locks, engine: Engine
) -> None:
    theirs, _ = locks.lock("nanmen", "BATCH-9", "V-A01", "1001", reason=FAILED, cause="61.5%")
    raced = _RacedLocks(session_factory(engine), clock=Clock())

    mine, made = raced.lock("nanmen", "BATCH-9", "V-A01", "1001", reason=FAILED, cause="61.5%")

    assert (mine, made, raced.looks) == (theirs, False, 2)  # the insert hit the open lock
    assert locks.open_locks("nanmen") == [theirs]
