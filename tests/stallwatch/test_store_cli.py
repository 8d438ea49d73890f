"""``stallwatch store retention``: one retention pass from the command line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stallwatch.cli import main
from storage.sqlite import SQLiteStore
from tests.conftest import EXAMPLE_MARKET
from tests.storage.factories import reading, sale

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
FOREVER = datetime(2100, 1, 1, tzinfo=UTC)


def test_a_dry_run_counts_and_a_pass_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "store.db"
    monkeypatch.setenv("STALLWATCH_SQLITE_PATH", str(path))
    now = datetime.now(UTC)
    with SQLiteStore(path) as store:
        store.write(
            [
                reading(sale(msg_id=1, ts=now - timedelta(days=1200)), "S-A01-1"),
                reading(sale(msg_id=2, ts=now - timedelta(days=3)), "S-A01-1"),
            ]
        )
    command = ["store", "retention", "--market", str(EXAMPLE_MARKET), "--store", "sqlite"]

    assert main([*command, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "nanmen\ttrace\tkept 1095 days\tbefore " in out
    assert out.endswith("would remove 1 rows in all\n")
    with SQLiteStore(path) as store:
        assert len(store.sales("nanmen", EPOCH, FOREVER)) == 2

    assert main(command) == 0
    assert capsys.readouterr().out.endswith("removed 1 rows in all\n")
    with SQLiteStore(path) as store:
        assert [row.msg_id for row in store.sales("nanmen", EPOCH, FOREVER)] == [2]
