"""Writing readings and dead letters, the msg_id ledger, and what the store refused.

Contract tests: ``tests/storage/contract/test_writing.py``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import datetime

from storage.records import DeadLetter, Reading


class WritingStore(abc.ABC):
    """Where ingest writes readings and dead letters, and where the rejected ones are read back."""

    @abc.abstractmethod
    def write(
        self, readings: Sequence[Reading], dead_letters: Sequence[DeadLetter] = ()
    ) -> list[DeadLetter]:
        """Store readings and dead letters; idempotent per reading.

        Each sale is stored with its trace status (``storage.traceability``): its
        trace code checked against the stored batches and those in ``readings``.
        A batch turns its vendor's earlier ``unknown_batch`` sales of its product
        that name it, made within the grace window before its intake, verified.

        Returns the readings the store itself refused (for example a line InfluxDB
        answers 400 to), converted to dead letters *and already stored as such*; the
        rest of the batch is written. Raises :class:`StoreUnavailable` when nothing
        could be written and the whole call should be retried.

        One message per (market, device, msg_id), the first (``storage.msgids``):
        a reading whose key the store already holds with other content, from an
        earlier write, another ingest instance or earlier in this one, is refused
        with the reason :data:`storage.msgids.REUSED_MSG_ID`; the same content
        again is written as before (a redelivery).
        """

    @abc.abstractmethod
    def settle_rollups(self) -> int:
        """Bring the hourly rollups up to date with every write so far; returns the work done.

        Reads over whole hours (``sales_summary``, ``sales_by_hour``,
        ``footfall_hourly``, ``batch_balances``) use the rollups, so until a
        settle they lag the raw points. Idempotent and safe to call from several
        processes at once: a settle recomputes what writes marked from the raw
        points. Ingest calls it every few seconds; a write followed by a settle
        reads back exactly. Raises :class:`StoreUnavailable` like ``write``.
        """

    @abc.abstractmethod
    def forget_msg_ids(self, before: datetime) -> None:
        """Forget the msg_id ledger's entries of messages that arrived before ``before``.

        Ingest calls it hourly with its device-clock window's start
        (``STALLWATCH_MAX_AGE_S`` ago): messages older than that are rejected
        before they reach the store, so the ledger guards that window, and a
        msg_id reused longer than that after its first use is no longer caught.
        """

    @abc.abstractmethod
    def dead_letters(
        self, start: datetime, end: datetime, *, market: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        """Rejected messages received in the range, newest first."""

    @abc.abstractmethod
    def reject_counts(self, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
        """Number of rejected messages per (market, device) received in the range."""
