"""Connections to the store's file, and the one place sqlite3 errors are translated.

Threading model: **one write connection guarded by a lock, plus one read-only
connection per reading thread** (``threading.local``). In WAL mode readers never
block the writer nor each other, and each SELECT sees a consistent snapshot; a
single writer connection matches SQLite's single-writer design, so writes from
several threads queue on our lock instead of spinning on ``SQLITE_BUSY``. Other
processes on the same file are handled by ``busy_timeout``.

Read connections live until :meth:`Connections.close`; a thread pool (the API
server's) reuses its threads, so their number stays bounded by the pool size.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from storage._exceptions import (
    StoreClosed,
    StoreError,
    StoreQueryError,
    StoreRejected,
    StoreUnavailable,
)
from storage.sqlite.schema import check_sqlite_version, migrate

#: ``PRAGMA synchronous`` levels a caller may choose. Pragmas take no bound
#: parameters, so each level maps onto a constant statement.
SYNCHRONOUS_PRAGMAS = {
    "OFF": "PRAGMA synchronous = OFF",
    "NORMAL": "PRAGMA synchronous = NORMAL",
    "FULL": "PRAGMA synchronous = FULL",
    "EXTRA": "PRAGMA synchronous = EXTRA",
}

_WRITER_PRAGMAS = (
    # 64 MiB page cache for the writer: the secondary indexes of a year of sales
    # take hundreds of MB and every batch touches a few thousand of their pages.
    "PRAGMA cache_size = -65536",
    # Checkpoint every ~40 MiB of WAL instead of every 4 MiB: index pages that
    # consecutive batches dirty again are copied into the file once, not per
    # batch (+20% sale writes/s after a month of data).
    "PRAGMA wal_autocheckpoint = 10000",
    # Truncate the WAL back to 64 MiB after checkpoints instead of letting it
    # keep its high-water mark.
    "PRAGMA journal_size_limit = 67108864",
    "PRAGMA temp_store = MEMORY",
)

# Primary result codes (the low byte of an extended code) that mean "try again
# later": another process holds the lock, the disk is full or failing, the file
# went away or became read-only.
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_NOMEM = 7
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_PROTOCOL = 15
_UNAVAILABLE_CODES = frozenset(
    {
        _SQLITE_BUSY,
        _SQLITE_LOCKED,
        _SQLITE_NOMEM,
        _SQLITE_READONLY,
        _SQLITE_IOERR,
        _SQLITE_FULL,
        _SQLITE_CANTOPEN,
        _SQLITE_PROTOCOL,
    }
)


def translate(exc: sqlite3.Error | OverflowError, action: str) -> StoreError:
    """The store error for a sqlite3 failure during ``action``."""
    if isinstance(exc, OverflowError):
        return StoreRejected(
            f"{action}: a value does not fit SQLite's 64-bit integers", detail=str(exc)
        )
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _UNAVAILABLE_CODES:
        return StoreUnavailable(f"{action}: SQLite store unavailable: {exc}")
    if isinstance(exc, sqlite3.IntegrityError):
        return StoreRejected(f"{action}: SQLite refused the data", detail=str(exc))
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc):
        return StoreClosed(f"{action}: the store is closed")
    return StoreQueryError(f"{action}: {exc}")


@contextmanager
def sqlite_errors(action: str) -> Iterator[None]:
    try:
        yield
    except (sqlite3.Error, OverflowError) as exc:
        raise translate(exc, action) from exc


class Connections:
    """The writer connection and per-thread reader connections of one file."""

    def __init__(self, path: Path, *, synchronous: str, busy_timeout: float) -> None:
        if synchronous not in SYNCHRONOUS_PRAGMAS:
            raise ValueError(
                f"synchronous must be one of {sorted(SYNCHRONOUS_PRAGMAS)}, not {synchronous!r}"
            )
        check_sqlite_version()
        self.path = path
        self._busy_timeout = busy_timeout
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._registry_lock = threading.Lock()
        self._closed = False
        with sqlite_errors(f"opening {path}"):
            self._writer = self._open()
            try:
                self._configure_writer(synchronous)
                migrate(self._writer)
            except BaseException:
                self._writer.close()
                raise

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, and a reader never
        # keeps a transaction (and with it an old WAL snapshot) open between queries.
        # check_same_thread=False: the writer is used from any thread under our
        # lock, and close() may run on another thread than the one a reader serves.
        return sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )

    def _configure_writer(self, synchronous: str) -> None:
        mode = self._writer.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: SQLite could not switch to WAL mode (got {mode!r})")
        # NORMAL by default: in WAL mode a power cut may lose the last commits but
        # never corrupts the file, and acknowledged messages are already durable
        # upstream in ingest's fsynced spool, which is replayed after a crash.
        self._writer.execute(SYNCHRONOUS_PRAGMAS[synchronous])
        for pragma in _WRITER_PRAGMAS:
            self._writer.execute(pragma)

    @contextmanager
    def writer(self) -> Iterator[sqlite3.Connection]:
        """The write connection, exclusively for the duration of the block."""
        with self._write_lock:
            self._ensure_open()
            yield self._writer

    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection, opened on first use."""
        self._ensure_open()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with sqlite_errors(f"opening {self.path} for reading"):
                conn = self._open()
                conn.execute("PRAGMA query_only = ON")
            with self._registry_lock:
                if self._closed:
                    conn.close()
                    self._ensure_open()
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        with self._registry_lock:
            if self._closed:
                return
            self._closed = True
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        with self._write_lock:
            self._writer.close()

    def _ensure_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"the store on {self.path} is closed")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction on ``conn``: committed when the block ends, else rolled back."""
    # IMMEDIATE takes the write lock up front, so a concurrent writer in another
    # process makes us wait (busy_timeout) instead of failing halfway through.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        # Also after a failed COMMIT (disk full, I/O error): otherwise the writer
        # would stay inside the transaction and refuse every later BEGIN.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
