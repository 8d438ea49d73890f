"""The local spool: where a message becomes durable before the broker gets its PUBACK.

SQLite in WAL mode with ``synchronous=FULL``: a committed transaction has been
fsynced, so once :meth:`Spool.append` returns, the messages survive SIGKILL and
power loss. Appends are group-committed (one transaction per batch of
messages), which is what lets one fsync cover hundreds of acknowledgements.

One spool file belongs to one ingest instance (one MQTT client id). An
exclusive ``flock`` on a sidecar lock file stops a second process from using
the same spool by accident; scale out by giving each instance its own client id
and therefore its own spool.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO


class SpoolError(RuntimeError):
    """The spool cannot be opened or written; ingest must stop acknowledging."""


class SpoolLocked(SpoolError):
    """Another process holds this spool."""


@dataclass(frozen=True, slots=True)
class SpooledMessage:
    seq: int
    topic: str
    payload: bytes
    received_ns: int


_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    received_ns INTEGER NOT NULL
);
"""


class Spool:
    """Durable FIFO of raw messages, shared by the receiving and the forwarding thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock_file = _lock_exclusively(path.with_suffix(path.suffix + ".lock"))
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._connection().executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        """One connection per thread: the writer never waits on a reader's transaction."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def append(self, messages: Sequence[tuple[str, bytes, int]]) -> None:
        """Make ``(topic, payload, received_ns)`` rows durable in one fsynced transaction."""
        if not messages:
            return
        conn = self._connection()
        try:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO spool (topic, payload, received_ns) VALUES (?, ?, ?)", messages
                )
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot append to spool {self.path}: {exc}") from exc

    def peek(self, limit: int) -> list[SpooledMessage]:
        """The oldest ``limit`` messages, without removing them."""
        rows = self._connection().execute(
            "SELECT seq, topic, payload, received_ns FROM spool ORDER BY seq LIMIT ?", (limit,)
        )
        return [SpooledMessage(*row) for row in rows]

    def remove_through(self, seq: int) -> None:
        """Forget every message up to and including ``seq``: they are in the store now."""
        conn = self._connection()
        try:
            with conn:
                conn.execute("DELETE FROM spool WHERE seq <= ?", (seq,))
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot trim spool {self.path}: {exc}") from exc

    def pending(self) -> int:
        # Only prefixes are ever removed, so seq is contiguous: O(log n) instead of COUNT(*).
        row = self._connection().execute(
            "SELECT COALESCE(MAX(seq) - MIN(seq) + 1, 0) FROM spool"
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
        self._lock_file.close()


def _lock_exclusively(lock_path: Path) -> IO[bytes]:
    handle = lock_path.open("ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SpoolLocked(
            f"spool {lock_path.with_suffix('')} is in use by another process; "
            "give each ingest instance its own mqtt_client_id"
        ) from None
    os.set_inheritable(handle.fileno(), False)
    return handle
