"""SQLite store: file format, schema versioning, migrations and opening."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from storage._exceptions import SchemaError, StoreError, StoreUnavailable
from storage.records import point_ns
from storage.sqlite import SQLiteStore
from storage.sqlite.schema import MIGRATIONS, SCHEMA_VERSION, Migration, migrate
from tests.storage.factories import MARKET, T0, at, batch, reading, sale


def raw(path: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(path, isolation_level=None))


def test_a_new_file_is_in_wal_mode_at_the_current_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    SQLiteStore(path).close()
    with raw(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_reopening_an_existing_file_keeps_data_and_series_ids(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with SQLiteStore(path) as store:
        assert store.write([reading(sale(msg_id=1, ts=at(minutes=1)), "sc-001")]) == []

    with SQLiteStore(path) as store:
        assert store.write([reading(sale(msg_id=2, ts=at(minutes=2)), "sc-001")]) == []
        assert [row.msg_id for row in store.sales(MARKET, T0, at(hours=1))] == [1, 2]

    with raw(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM sale_source").fetchone() == (1,)
        assert conn.execute("SELECT COUNT(*) FROM product").fetchone() == (1,)
        assert conn.execute("SELECT COUNT(*) FROM trace_code").fetchone() == (1,)


def test_a_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    SQLiteStore(path).close()
    with raw(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(SchemaError, match="version 99"):
        SQLiteStore(path)


def test_pending_migrations_are_applied_once_in_order(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    SQLiteStore(path).close()
    first, second = SCHEMA_VERSION + 1, SCHEMA_VERSION + 2
    add = Migration(
        first, ("ALTER TABLE dead_letter ADD COLUMN note TEXT", f"PRAGMA user_version = {first}")
    )
    fill = Migration(
        second, ("UPDATE dead_letter SET note = 'filled'", f"PRAGMA user_version = {second}")
    )
    with raw(path) as conn:
        assert migrate(conn, (*MIGRATIONS, add, fill)) == second
        assert migrate(conn, (*MIGRATIONS, add, fill)) == second  # a second run has nothing to do
        assert conn.execute("PRAGMA user_version").fetchone() == (second,)
        columns = [row[1] for row in conn.execute("PRAGMA table_info(dead_letter)")]
        assert columns[-1] == "note"


def test_a_migration_that_does_not_reach_its_version_is_rolled_back(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    SQLiteStore(path).close()
    forgetful = Migration(SCHEMA_VERSION + 1, ("ALTER TABLE dead_letter ADD COLUMN note TEXT",))
    with raw(path) as conn:
        with pytest.raises(SchemaError, match=f"version {SCHEMA_VERSION + 1}"):
            migrate(conn, (*MIGRATIONS, forgetful))
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert "note" not in [row[1] for row in conn.execute("PRAGMA table_info(dead_letter)")]


def test_migrations_must_be_numbered_without_gaps(tmp_path: Path) -> None:
    gap = SCHEMA_VERSION + 2
    with raw(tmp_path / "store.db") as conn, pytest.raises(ValueError, match="without gaps"):
        migrate(conn, (*MIGRATIONS, Migration(gap, (f"PRAGMA user_version = {gap}",))))


def test_unknown_synchronous_level_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(tmp_path / "store.db", synchronous="normal; DROP TABLE sale")


@pytest.mark.parametrize(("level", "value"), [("NORMAL", 1), ("FULL", 2), ("EXTRA", 3)])
def test_synchronous_level_applies_to_the_writer(tmp_path: Path, level: str, value: int) -> None:
    store = SQLiteStore(tmp_path / "store.db", synchronous=level)
    # The level is per connection, so ask the writer itself.
    with store, store._connections.writer() as conn:
        assert conn.execute("PRAGMA synchronous").fetchone() == (value,)


def test_a_file_that_is_not_a_database_is_an_error_not_an_outage(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"this is not an SQLite file, just some text that is long enough" * 100)
    with pytest.raises(StoreError) as caught:
        SQLiteStore(path)
    assert not isinstance(caught.value, StoreUnavailable)


def test_a_missing_directory_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        SQLiteStore(tmp_path / "not-mounted-yet" / "store.db")


def test_upgrading_to_version_5_numbers_dead_letters_that_share_an_identity(
    tmp_path: Path,
) -> None:
    # Before version 5 a batch forwarded again after a crash stored its dead letters again.
    path = tmp_path / "store.db"
    with raw(path) as conn:
        assert migrate(conn, MIGRATIONS[:3]) == 3
        for reason in ("first", "again", "other"):
            conn.execute(
                "INSERT INTO dead_letter (received_ns, market, device, topic, reason, payload,"
                " payload_size) VALUES (?, 'nanmen', 'sc-001', 't', ?, x'00', 1)",
                (2 if reason == "other" else 1, reason),
            )

    with SQLiteStore(path) as store:
        letters = store.dead_letters(datetime(1970, 1, 1, tzinfo=UTC), at(hours=1))
        assert sorted(letter.reason for letter in letters) == ["again", "first", "other"]
    with raw(path) as conn:
        rows = conn.execute("SELECT reason, dup FROM dead_letter ORDER BY id").fetchall()
        assert rows == [("first", 0), ("again", 1), ("other", 0)]


def test_upgrading_to_version_9_keeps_batches_and_lets_a_batch_come_in_untested(
    tmp_path: Path,
) -> None:
    # Before version 9 every batch had to carry its intake's rapid test (NOT NULL).
    path = tmp_path / "store.db"
    with raw(path) as conn:
        assert migrate(conn, MIGRATIONS[:8]) == 8
        conn.execute("INSERT INTO trace_code (id, market, code) VALUES (1, ?, 'TC-V8')", (MARKET,))
        conn.execute(
            "INSERT INTO batch_series (id, market, station, vendor, plu)"
            " VALUES (1, ?, 'in-01', 'v001', '1001')",
            (MARKET,),
        )
        conn.execute(
            "INSERT INTO batch (time_ns, series, trace, msg_id, origin, supplier, quantity_g,"
            " certificate_no, rapid_test_passed, inhibition_permille, received_ns)"
            " VALUES (?, 1, 1, 7, '山东寿光', '寿光蔬菜批发市场 第3档', 250000,"
            " 'HG-2025-000123', 0, 615, 42)",
            (point_ns(at(minutes=1), 7),),
        )

    with SQLiteStore(path) as store:
        kept = store.batch(MARKET, "TC-V8")
        assert kept is not None
        assert (kept.rapid_test_passed, kept.inhibition_pct, kept.msg_id, kept.ts) == (
            False,
            Decimal("61.5"),
            7,
            at(minutes=1),
        )
        untested = batch(msg_id=8, ts=at(minutes=2), trace_code="TC-V9", passed=None)
        assert store.write([reading(untested, "in-01")]) == []
        stored = store.batch(MARKET, "TC-V9")
        assert stored is not None
        assert (stored.rapid_test_passed, stored.inhibition_pct) == (None, None)

    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (9,)
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(batch)")}
        assert {"batch_by_series", "batch_by_trace"} <= indexes
        strict, without_rowid = conn.execute(
            "SELECT strict, wr FROM pragma_table_list WHERE name = 'batch'"
        ).fetchone()
        assert (strict, without_rowid) == (1, 1)
        assert conn.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'batch_v9'"
        ).fetchone() == (0,)
        # Both test columns or neither: half a test is refused by the table itself.
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute(
                "INSERT INTO batch (time_ns, series, trace, msg_id, origin, supplier, quantity_g,"
                " certificate_no, rapid_test_passed, inhibition_permille, received_ns)"
                " VALUES (1, 1, 1, 9, 'o', 's', 1, 'c', 1, NULL, 1)"
            )
