"""Recall lists of locked batches, read from a real store (both backends)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from marketdb.locks import BatchLock
from marketview.recall import Recall, latest_recall, recall_csv, recall_of, sold_while_locked
from schemas.commands import SuspensionReason
from schemas.registry import Registry
from storage.base import Store
from storage.interfaces.sales import SaleRow
from storage.traceability import TraceStatus
from tests.api.conftest import MARKET, Feeder
from tests.api.test_trace import BATCH_TOPIC, CODE, SALE_TOPIC, batch_payload
from tests.conftest import BOTH_STORES
from tests.ingest.helpers import sale_payload, write_market

LOCKED_AT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture
def feeder(tmp_path: Path, store: Store) -> Iterator[Feeder]:
    fed = Feeder(tmp_path, Registry.load([write_market(tmp_path)]), store)
    yield fed
    fed.close()


def _lock(**changes: object) -> BatchLock:
    lock = BatchLock(
        id=1,
        market=MARKET,
        trace_code=CODE,
        vendor="V01",
        plu="1001",
        reason=SuspensionReason.RAPID_TEST_FAILED,
        cause="rapid test: 58.0%",
        locked_at=LOCKED_AT,
        locked_by="stallwatch",
    )
    return replace(lock, **changes)  # type: ignore[arg-type]


def sold(msg_id: int, minutes_from_lock: int, **changes: object) -> tuple[str, bytes]:
    ts = (LOCKED_AT + timedelta(minutes=minutes_from_lock)).isoformat()
    return SALE_TOPIC, sale_payload(msg_id, ts=ts, trace_code=CODE, **changes)


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_the_recall_list_is_exactly_the_batch_product_sold_before_the_lock(
    feeder: Feeder, store: Store
) -> None:
    feeder.ingest(
        [
            (BATCH_TOPIC, batch_payload()),
            sold(3, -50),
            sold(4, -1),
            sold(5, 0),  # at the lock: the lock held
            sold(6, 20),
            sold(7, -30, plu="1002"),  # another product under the code: not locked
        ]
    )

    recall = recall_of(store, _lock())

    assert [sale.msg_id for sale in recall.before_lock] == [3, 4]
    assert [sale.msg_id for sale in recall.while_locked] == [5, 6]
    assert recall.recalled_g == 1003 + 1004
    assert recall.recalled_fen == sum(sale.total_fen for sale in recall.before_lock)


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_a_lifted_lock_flags_only_what_was_sold_while_it_held(feeder: Feeder, store: Store) -> None:
    feeder.ingest([(BATCH_TOPIC, batch_payload()), sold(3, -5), sold(4, 10), sold(5, 40)])
    lifted = _lock(
        unlocked_at=LOCKED_AT + timedelta(minutes=30), unlocked_by="m", unlock_reason="re-test"
    )

    recall = recall_of(store, lifted)

    assert [sale.msg_id for sale in recall.before_lock] == [3]
    assert [sale.msg_id for sale in recall.while_locked] == [4]  # 5 was sold after the lift


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_only_locks_with_sales_while_locked_raise_an_alert(feeder: Feeder, store: Store) -> None:
    feeder.ingest([(BATCH_TOPIC, batch_payload()), sold(3, -5), sold(4, 10)])
    obeyed = _lock(id=2, plu="1002")  # no sale of 1002 at all
    ignored = _lock()
    over = _lock(id=3, unlocked_at=LOCKED_AT + timedelta(minutes=20), unlocked_by="m")

    assert [r.lock.id for r in sold_while_locked(store, [obeyed, ignored], LOCKED_AT)] == [1]
    # A lock lifted before the window's start no longer alerts, though it was ignored.
    assert sold_while_locked(store, [over], LOCKED_AT + timedelta(hours=1)) == []
    assert [r.lock.id for r in sold_while_locked(store, [over], LOCKED_AT)] == [3]


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_a_relocked_batch_flags_what_sold_under_its_earlier_lock_too(
    feeder: Feeder, store: Store
) -> None:
    feeder.ingest(
        [(BATCH_TOPIC, batch_payload()), sold(3, -5), sold(4, 10), sold(5, 40), sold(6, 50)]
    )
    first = _lock(
        unlocked_at=LOCKED_AT + timedelta(minutes=30), unlocked_by="m", unlock_reason="re-test"
    )
    second = _lock(id=2, locked_at=LOCKED_AT + timedelta(minutes=45))
    other_product = _lock(id=3, plu="1002")

    recall = latest_recall(store, [first, other_product, second], "1001")

    assert recall is not None
    assert recall.lock == second
    assert [sale.msg_id for sale in recall.before_lock] == [3, 5]  # 4 sold while locked
    assert [sale.msg_id for sale in recall.while_locked] == [4, 6]
    assert latest_recall(store, [first, second], "9999") is None


def test_the_csv_never_hands_a_spreadsheet_a_formula() -> None:
    sale = SaleRow(
        market=MARKET,
        scale="S-A01",
        vendor="V01",
        plu="-1+1",
        ts=LOCKED_AT,
        msg_id=7,
        weight_g=500,
        tare_g=None,
        unit_price_fen_per_kg=398,
        total_fen=199,
        trace_code=CODE,
        received_ns=0,
        trace_status=TraceStatus.VERIFIED,
    )
    recall = Recall(_lock(plu="-1+1"), (sale,), ())

    (row,) = list(csv.DictReader(io.StringIO(recall_csv(recall, UTC, "https://m.example"))))

    assert (row["plu"], row["vendor"], row["total_yuan"]) == ("'-1+1", "V01", "1.99")
    assert row["receipt_page"] == "https://m.example/trace/tm/receipt/S-A01/7"
