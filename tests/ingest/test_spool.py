"""The spool is a durable FIFO that only one process may own."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from ingest.spool import Spool, SpoolLocked


def test_fifo_survives_reopen_and_trims_prefixes(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.append([("t/a", b"1", 10, False), ("t/b", b"2", 20, True), ("t/c", b"\xff", 30, False)])
    spool.close()
    spool = Spool(tmp_path / "s.db")
    batch = spool.peek(2)
    assert [row[1:] for row in batch] == [("t/a", b"1", 10, False), ("t/b", b"2", 20, True)]
    spool.remove_through(batch[-1][0])
    assert spool.pending() == 1
    assert spool.peek(10)[0][2] == b"\xff"
    spool.close()


def test_second_owner_of_a_role_is_refused(tmp_path: Path) -> None:
    receiver = Spool(tmp_path / "s.db", "receiver")
    forwarder = Spool(tmp_path / "s.db", "forwarder")  # the other role shares the file
    with pytest.raises(SpoolLocked, match="mqtt_client_id"):
        Spool(tmp_path / "s.db", "receiver")
    receiver.close()
    forwarder.close()


def test_appended_rows_survive_sigkill(tmp_path: Path) -> None:
    """append() returns only after commit: a process killed right after still left the rows."""
    script = (
        "import os, signal, sys; from pathlib import Path; from ingest.spool import Spool; "
        "s = Spool(Path(sys.argv[1])); s.append([('t', b'x', i, False) for i in range(1000)]); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "s.db")], check=False)
    assert proc.returncode == -9
    spool = Spool(tmp_path / "s.db")
    assert spool.pending() == 1000
    spool.close()


def spool_bytes(path: Path) -> int:
    """The spool's size on disk: the database and its write-ahead log."""
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def test_a_drained_backlog_gives_its_space_back(tmp_path: Path) -> None:
    """A store outage grows the spool; once the backlog is forwarded the file shrinks again."""
    path = tmp_path / "s.db"
    receiver = Spool(path, "receiver")
    forwarder = Spool(path, "forwarder")
    payload = bytes(2_000)
    for first in range(0, 20_000, 1_000):
        receiver.append([("t", payload, i, False) for i in range(first, first + 1_000)])
    peak = spool_bytes(path)

    while batch := forwarder.peek(1_000):
        forwarder.remove_through(batch[-1][0])

    assert peak > 40_000_000
    assert spool_bytes(path) < 1_000_000
    receiver.append([("t", b"after", 1, False)])  # and it still works
    assert [row[1:] for row in forwarder.peek(10)] == [("t", b"after", 1, False)]
    receiver.close()
    forwarder.close()


def test_dead_lettered_deliveries_are_remembered_with_the_trim_until_forgotten(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.append([("t/a", b"1", 10, False), ("t/b", b"2", 20, False)])
    spool.remove_through(spool.peek(2)[-1][0], [(b"d-old", 10), (b"d-new", 20)])
    spool.close()
    spool = Spool(tmp_path / "s.db")
    assert spool.dead_lettered([b"d-old", b"d-new", b"other"]) == {b"d-old", b"d-new"}

    spool.append([("t/c", b"3", 30, False)])
    spool.remove_through(spool.peek(1)[-1][0], forget_before_ns=15)
    assert spool.dead_lettered([b"d-old", b"d-new"]) == {b"d-new"}
    spool.close()


def test_a_spool_file_of_an_earlier_version_gains_the_redelivered_flag(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "s.db")) as conn, conn:
        conn.execute(
            "CREATE TABLE spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
            " payload BLOB NOT NULL, received_ns INTEGER NOT NULL)"
        )
        conn.execute("INSERT INTO spool (topic, payload, received_ns) VALUES ('t', x'31', 5)")
    spool = Spool(tmp_path / "s.db")
    spool.append([("t", b"2", 6, True)])
    assert [row[1:] for row in spool.peek(5)] == [("t", b"1", 5, False), ("t", b"2", 6, True)]
    spool.close()
