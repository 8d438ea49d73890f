"""SQLite store: how values are kept, and what a failed write leaves behind."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from schemas.messages import BatchIntake, RapidTest, RapidTestResult
from storage._exceptions import StoreRejected
from storage.records import DeadLetter
from storage.sqlite import SQLiteStore
from tests.storage.factories import MARKET, T0, at, batch, reading, sale

DAY_END = at(hours=24)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


def test_money_weights_and_inhibition_are_integers(path: Path) -> None:
    with SQLiteStore(path) as store:
        written = [
            reading(sale(tare_g=12), "sc-001"),
            reading(batch(inhibition_pct=Decimal("12.5")), "in-01"),
        ]
        assert store.write(written) == []
    with closing(sqlite3.connect(path)) as conn:
        sale_types = conn.execute(
            "SELECT typeof(weight_g), typeof(tare_g), typeof(unit_price_fen_per_kg),"
            " typeof(total_fen) FROM sale"
        ).fetchone()
        assert sale_types == ("integer",) * 4
        assert conn.execute(
            "SELECT inhibition_permille, typeof(inhibition_permille) FROM batch"
        ).fetchone() == (
            125,
            "integer",
        )


def test_an_inhibition_finer_than_a_permille_is_dead_lettered(path: Path) -> None:
    too_fine = RapidTest.model_construct(
        result=RapidTestResult.PASS, inhibition_pct=Decimal("12.55")
    )
    fields = batch().model_dump() | {"rapid_test": too_fine}
    bad = reading(BatchIntake.model_construct(**fields), "in-01")
    with SQLiteStore(path) as store:
        refused = store.write([bad, reading(sale(), "sc-001")])

        assert [(letter.topic, letter.device) for letter in refused] == [
            ("markets/nanmen/intake/in-01/batch", "in-01")
        ]
        assert "decimal place" in refused[0].reason
        assert store.dead_letters(T0, DAY_END) == refused
        assert store.batches(MARKET, T0, DAY_END) == []
        assert len(store.sales(MARKET, T0, DAY_END)) == 1


def test_a_failed_write_leaves_nothing_behind_and_does_not_poison_series_ids(path: Path) -> None:
    unstorable = DeadLetter(received_ns=2**64, topic="t", payload=b"", reason="r")
    first = reading(sale(msg_id=1, ts=at(ms=1), vendor="v001", plu="1001"), "sc-001")
    with SQLiteStore(path) as store:
        with pytest.raises(StoreRejected):
            store.write([first], [unstorable])
        assert store.sales(MARKET, T0, DAY_END) == []

        # A new series now takes the id the rolled-back transaction had handed out.
        other = reading(sale(msg_id=2, ts=at(ms=2), vendor="v002", plu="2002"), "sc-201")
        assert store.write([other]) == []
        assert store.write([first]) == []

        rows = store.sales(MARKET, T0, DAY_END)
        assert [(row.msg_id, row.scale, row.vendor, row.plu) for row in rows] == [
            (1, "sc-001", "v001", "1001"),
            (2, "sc-201", "v002", "2002"),
        ]


def test_ranges_compare_millisecond_device_times_with_sub_millisecond_bounds(path: Path) -> None:
    # msg_id 999_999 puts the point 999_999 ns after its device time T0.
    with SQLiteStore(path) as store:
        assert store.write([reading(sale(msg_id=999_999, ts=T0), "sc-001")]) == []
        just_after = T0 + timedelta(microseconds=1)

        assert store.sales(MARKET, just_after, DAY_END) == []
        assert len(store.sales(MARKET, T0 - timedelta(seconds=1), just_after)) == 1
        assert store.sales(MARKET, T0 - timedelta(seconds=1), T0) == []
