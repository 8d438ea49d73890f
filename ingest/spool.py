"""The local spool: where a message becomes durable before the broker gets its PUBACK.

SQLite in WAL mode with ``synchronous=FULL``: a committed transaction has been
fsynced, so once :meth:`Spool.append` returns, the messages survive SIGKILL and
power loss. Appends are group-committed (one transaction per batch of
messages), which is what lets one fsync cover hundreds of acknowledgements.

One spool file belongs to one ingest instance (one MQTT client id), used by
one receiver and one forwarder, which may be threads of one process or two
processes. Each role takes an exclusive ``flock`` on a sidecar lock file, so a
second instance cannot use the same spool by accident; scale out by giving each
instance its own client id and therefore its own spool.

The spool also remembers which deliveries were dead-lettered (a digest of topic
and payload, with the arrival time), for as long as the broker may redeliver
them: a message that was spooled but not acknowledged when ingest died comes
again, flagged as a redelivery (MQTT DUP), and must not be dead-lettered twice.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

#: A drained spool with more free pages than this (4 MiB of SQLite's 4 KiB pages) is
#: compacted, so the file does not keep a backlog's peak size once the backlog is gone.
SHRINK_FROM_FREE_PAGES = 1024


class SpoolError(RuntimeError):
    """The spool cannot be opened or written; ingest must stop acknowledging."""


class SpoolLocked(SpoolError):
    """Another process holds this spool."""


#: ``(seq, topic, payload, received_ns, redelivered)``: a plain tuple, because the
#: forwarder reads thousands per batch and a class per row measured as a fifth of its time.
SpooledMessage = tuple[int, str, bytes, int, bool]
#: ``(topic, payload, received_ns, redelivered)``, what the receiver appends.
ArrivedMessage = tuple[str, bytes, int, bool]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    received_ns INTEGER NOT NULL,
    redelivered INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dead_lettered (
    digest BLOB PRIMARY KEY,
    received_ns INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dead_lettered_by_time ON dead_lettered (received_ns);
"""


class Spool:
    """Durable FIFO of raw messages, shared by the receiving and the forwarding thread."""

    def __init__(self, path: Path, role: str = "receiver", *, lock_timeout_s: float = 0.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock_file = _lock_exclusively(
            path.with_suffix(f"{path.suffix}.{role}.lock"), lock_timeout_s
        )
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._connection().executescript(_SCHEMA)
        _add_redelivered_column(self._connection())

    def _connection(self) -> sqlite3.Connection:
        """One connection per thread: the writer never waits on a reader's transaction."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            # After a checkpoint the WAL is cut back to 4 MiB instead of keeping its peak size.
            conn.execute("PRAGMA journal_size_limit=4194304")
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def append(self, messages: Sequence[ArrivedMessage]) -> None:
        """Make ``(topic, payload, received_ns, redelivered)`` rows durable in one fsync."""
        if not messages:
            return
        conn = self._connection()
        try:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO spool (topic, payload, received_ns, redelivered)"
                    " VALUES (?, ?, ?, ?)",
                    messages,
                )
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot append to spool {self.path}: {exc}") from exc

    def peek(self, limit: int) -> list[SpooledMessage]:
        """The oldest ``limit`` messages (see :data:`SpooledMessage`), not removed."""
        rows = self._connection().execute(
            "SELECT seq, topic, payload, received_ns, redelivered = 1 FROM spool"
            " ORDER BY seq LIMIT ?",
            (limit,),
        )
        return rows.fetchall()

    def remove_through(
        self,
        seq: int,
        dead_lettered: Sequence[tuple[bytes, int]] = (),
        *,
        forget_before_ns: int | None = None,
    ) -> None:
        """Forget every message up to and including ``seq``: they are in the store now.

        In the same transaction, remember the ``(digest, received_ns)`` of the
        deliveries among them that were dead-lettered, and forget those
        remembered from before ``forget_before_ns``.
        """
        conn = self._connection()
        try:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("DELETE FROM spool WHERE seq <= ?", (seq,))
                conn.executemany(
                    "INSERT OR REPLACE INTO dead_lettered (digest, received_ns) VALUES (?, ?)",
                    dead_lettered,
                )
                if forget_before_ns is not None:
                    conn.execute(
                        "DELETE FROM dead_lettered WHERE received_ns < ?", (forget_before_ns,)
                    )
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot trim spool {self.path}: {exc}") from exc
        if self.pending() == 0:
            self._give_space_back(conn)

    def _give_space_back(self, conn: sqlite3.Connection) -> None:
        """Compact a drained spool that a backlog had grown: VACUUM of an empty file is cheap."""
        free_pages = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        if free_pages < SHRINK_FROM_FREE_PAGES:
            return
        try:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            # Nothing is lost, the file only stays large: try again after the next drain.
            log.warning(
                "cannot compact spool %s (%s); it keeps %d free pages", self.path, exc, free_pages
            )

    def dead_lettered(self, digests: Iterable[bytes]) -> set[bytes]:
        """Which of these delivery digests were dead-lettered (and are still remembered)."""
        conn = self._connection()
        return {
            digest
            for digest in digests
            if conn.execute("SELECT 1 FROM dead_lettered WHERE digest = ?", (digest,)).fetchone()
        }

    def pending(self) -> int:
        # Only prefixes are ever removed, so seq is contiguous: O(log n) instead of COUNT(*).
        row = (
            self._connection()
            .execute("SELECT COALESCE(MAX(seq) - MIN(seq) + 1, 0) FROM spool")
            .fetchone()
        )
        return int(row[0])

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
        self._lock_file.close()


def _add_redelivered_column(conn: sqlite3.Connection) -> None:
    """Spool files of earlier versions lack the column; both roles may get here at once."""
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        columns = {row[1] for row in conn.execute("PRAGMA table_info(spool)")}
        if "redelivered" not in columns:
            conn.execute("ALTER TABLE spool ADD COLUMN redelivered INTEGER NOT NULL DEFAULT 0")


def _lock_exclusively(lock_path: Path, timeout_s: float) -> IO[bytes]:
    """Take the lock, waiting up to ``timeout_s`` for a previous owner that is exiting."""
    handle = lock_path.open("ab")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                raise SpoolLocked(
                    f"{lock_path.name} is held by another process; "
                    "give each ingest instance its own mqtt_client_id"
                ) from None
            time.sleep(0.1)
    os.set_inheritable(handle.fileno(), False)
    return handle
