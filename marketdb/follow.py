"""Following the market database: the registry a process uses, reloaded when it changes.

Every change bumps the registry's revision (``marketdb.changes``). A follower asks
for that number at most once per ``poll_s`` (one indexed row; a second by default,
so a change reaches every process within about a second and far inside the 5 s the
market asked for) and reloads the whole registry only when it moved. Callers ask for
:meth:`RegistryFollower.current` as often as they like (ingest: once per batch).

When the database cannot be read, the follower keeps the registry it has: one
warning for the outage and one line for the recovery, as the store's writers log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from marketdb._exceptions import MarketDatabaseError
from marketdb.changes import revision
from marketdb.marketfile import load_registry
from schemas.registry import Registry

log = logging.getLogger(__name__)

#: How often a follower asks whether the registry changed.
POLL_S = 1.0


class RegistryFollower:
    """The market database's registry, as fresh as ``poll_s`` allows (thread-safe)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        poll_s: float = POLL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._poll_s = poll_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._failing = False
        with sessions() as session:
            self._revision = revision(session)
            self._registry = load_registry(session)
        self._checked = monotonic()

    @property
    def revision(self) -> int:
        return self._revision

    def current(self) -> Registry:
        """The registry; reloaded first if ``poll_s`` has passed and the revision moved."""
        if self._monotonic() - self._checked < self._poll_s:
            return self._registry
        with self._lock:
            if self._monotonic() - self._checked >= self._poll_s:
                self._refresh()
        return self._registry

    def _refresh(self) -> None:
        self._checked = self._monotonic()
        try:
            with self._sessions() as session:
                latest = revision(session)
                if latest != self._revision:
                    self._registry = load_registry(session)
                    log.info("registry revision %d → %d: reloaded", self._revision, latest)
                    self._revision = latest
        except (SQLAlchemyError, MarketDatabaseError) as exc:
            if not self._failing:
                log.warning("cannot read the market database (%s); keeping the registry", exc)
            self._failing = True
            return
        if self._failing:
            log.info("market database readable again")
            self._failing = False
