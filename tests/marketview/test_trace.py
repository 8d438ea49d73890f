"""The trace chain read from a real store (both backends), fed by the ingest path minus MQTT."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from marketview import trace
from marketview.analytics import batch_balance
from schemas.registry import Registry
from storage.base import Store
from tests.api.conftest import MARKET, Feeder
from tests.api.test_trace import BATCH_TOPIC, CODE, ORPHAN, QUANTITY_G, SALE_TOPIC, batch_payload
from tests.conftest import BOTH_STORES
from tests.ingest.helpers import now_iso, sale_payload, write_market

SCALE = "S-A01"


@pytest.fixture
def feeder(tmp_path: Path, store: Store) -> Iterator[Feeder]:
    fed = Feeder(tmp_path, Registry.load([write_market(tmp_path)]), store)
    yield fed
    fed.close()


def sold(msg_id: int, minutes_ago: int, trace_code: str = CODE) -> tuple[str, bytes]:
    ts = now_iso(timedelta(minutes=-minutes_ago))
    return SALE_TOPIC, sale_payload(msg_id, ts=ts, trace_code=trace_code)


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_a_batch_has_its_sales_oldest_first_and_its_balance(feeder: Feeder, store: Store) -> None:
    feeder.ingest([(BATCH_TOPIC, batch_payload()), sold(7, 10), sold(3, 20)])
    found = trace.batch_trace(store, MARKET, CODE)
    assert found is not None
    assert found.batch == store.batch(MARKET, CODE)
    assert [sale.msg_id for sale in found.sales] == [3, 7]
    assert found.sold_g == 1003 + 1007
    assert found.balance == batch_balance(QUANTITY_G, found.sales)


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_sales_of_an_unregistered_code_have_no_batch_and_no_balance(
    feeder: Feeder, store: Store
) -> None:
    feeder.ingest([sold(5, 10, trace_code=ORPHAN)])
    found = trace.batch_trace(store, MARKET, ORPHAN)
    assert found is not None
    assert (found.batch, [s.msg_id for s in found.sales], found.balance) == (None, [5], None)
    assert trace.batch_trace(store, MARKET, "TM-NEVER-SEEN") is None


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_a_receipt_leads_to_its_batch_only_when_verified(feeder: Feeder, store: Store) -> None:
    feeder.ingest([(BATCH_TOPIC, batch_payload()), sold(3, 20), sold(5, 10, trace_code=ORPHAN)])
    verified = trace.receipt_trace(store, MARKET, SCALE, 3)
    assert verified is not None
    assert verified.sale.origin_verified
    assert verified.batch == store.batch(MARKET, CODE)
    unverified = trace.receipt_trace(store, MARKET, SCALE, 5)
    assert unverified is not None
    assert (unverified.sale.origin_verified, unverified.batch) == (False, None)
    assert trace.receipt_trace(store, MARKET, SCALE, 99) is None
