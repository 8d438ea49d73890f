"""A lock keeper as ``stallwatch serve`` runs it, for tests that need one beside an app:
the market database's locks, the followed registry's markets, and a command publisher on
a test broker without access rules."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from marketdb.follow import RegistryFollower
from marketdb.locks import Locks
from mqttedge.client import EdgeOptions
from mqttedge.publisher import RetainedPublisher
from stallwatch.lockkeeper import LockKeeper


def start_lock_keeper(
    sessions: sessionmaker[Session],
    follower: RegistryFollower,
    port: int,
    client_id: str = "stallwatch-command-test",
) -> tuple[LockKeeper, RetainedPublisher]:
    """The keeper, and its started publisher (the caller closes it)."""
    publisher = RetainedPublisher(EdgeOptions("127.0.0.1", port, client_id))
    publisher.start()
    keeper = LockKeeper(
        Locks(sessions),
        lambda: follower.current().markets,
        publisher,
        clock=lambda: datetime.now(UTC),
    )
    return keeper, publisher
