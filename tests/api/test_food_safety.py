"""A market day's rapid tests over real HTTP, on each store.

A simulated day with many spot checks (``simulators.intake``) is written by
``simulators.history``; the expected figures come from the simulator's plan of
that day, not from the store or the read core. A re-test sent over the ingest
path shows that a later result is what a batch's day counts, and that it is kept
beside the first.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from schemas.registry import Registry
from simulators.config import DayConfig
from simulators.day import MarketDay
from simulators.history import generate_history
from storage.base import Store
from tests.api.conftest import Api, Feeder
from tests.conftest import BOTH_STORES, EXAMPLE_MARKET

pytestmark = pytest.mark.mosquitto

MARKET = "nanmen"
DAY = date(2026, 11, 3)
PATH = f"/api/v1/markets/{MARKET}/food-safety/tests"
CHECKS = DayConfig(spot_check_share=0.2, spot_check_fail_rate=0.5)


@pytest.fixture
def market_file() -> Path:
    return EXAMPLE_MARKET


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_a_day_per_category_counts_each_batch_by_its_latest_test(
    api: Api, store: Store, api_registry: Registry
) -> None:
    market = api_registry.markets[MARKET]
    generate_history(market, store, start_date=DAY, days=1, seed=5, config=CHECKS)
    planned = MarketDay(market, DAY, seed=5, config=CHECKS)
    latest = {batch.trace_code: batch.passed for batch in planned.batches if batch.tested}
    latest.update({check.batch.trace_code: check.passed for check in planned.spot_checks})
    category = {
        batch.trace_code: market.products[batch.plu].category.value for batch in planned.batches
    }
    untested = [code for code in category if code not in latest]

    response = api.get(PATH, params={"date": DAY.isoformat()})  # public: no token

    assert response.status_code == 200, response.text
    body = response.json()
    failed = sorted(code for code, passed in latest.items() if not passed)
    quota = market.food_safety.daily_test_quota
    assert (body["quota"], body["quota_met"]) == (quota, len(latest) >= quota)
    tested_at_intake = sum(batch.tested for batch in planned.batches)
    assert body["total"] == {
        "category": "all",
        "batches": len(latest),
        "passed": len(latest) - len(failed),
        "failed": len(failed),
        "tests": tested_at_intake + len(planned.spot_checks),
        "untested": len(untested),
        "pass_rate_pct": _rate(len(latest) - len(failed), len(latest)),
    }
    assert 0 < tested_at_intake < len(planned.batches)  # the desk tests a sample
    tested_per_category = Counter(category[code] for code in latest)
    untested_per_category = Counter(category[code] for code in untested)
    failed_per_category = Counter(category[code] for code in failed)
    rows = {row["category"]: row for row in body["categories"]}
    assert set(rows) == set(tested_per_category) | set(untested_per_category)
    assert {name: row["batches"] for name, row in rows.items()} == {
        name: tested_per_category.get(name, 0) for name in rows
    }
    assert {name: row["untested"] for name, row in rows.items()} == {
        name: untested_per_category.get(name, 0) for name in rows
    }
    assert {name: row["failed"] for name, row in rows.items()} == {
        name: failed_per_category.get(name, 0) for name in rows
    }
    assert sorted(row["trace_code"] for row in body["failed"]) == failed
    spot_failures = [row for row in body["failed"] if not row["at_intake"]]
    assert spot_failures  # the spot checks found some the intake test passed
    assert len(planned.spot_checks) > 5


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_a_retest_over_ingest_is_kept_beside_the_intake_test(
    api: Api, store: Store, feeder: Feeder, api_registry: Registry
) -> None:
    market = api_registry.markets[MARKET]
    now = datetime.now(market.tz)
    today = now.date()
    code = "NANMEN-RETEST-0001"
    # Both today and in the past (ingest refuses readings from the future).
    intake = max(datetime.combine(today, time(0, 0, 1), market.tz), now - timedelta(hours=2))
    retested = intake + (now - intake) / 2
    vendor, plu = _a_vendor_and_product(api_registry)
    station = market.spec.intake[0].id
    batch = {
        "v": 1,
        "msg_id": 1,
        "ts": intake.isoformat(timespec="milliseconds"),
        "trace_code": code,
        "vendor": vendor,
        "plu": plu,
        "origin": "山东寿光",
        "supplier": "寿光批发市场",
        "quantity_g": 80_000,
        "certificate_no": "HG-0001",
        "rapid_test": {"result": "pass", "inhibition_pct": "21.5"},
    }
    retest = {
        "v": 1,
        "msg_id": 2,
        "ts": retested.isoformat(timespec="milliseconds"),
        "trace_code": code,
        "vendor": vendor,
        "plu": plu,
        "rapid_test": {"result": "fail", "inhibition_pct": "63.0"},
    }
    base = f"markets/{MARKET}/intake/{station}"
    feeder.ingest(
        [
            (f"{base}/batch", json.dumps(batch).encode()),
            (f"{base}/test", json.dumps(retest).encode()),
        ]
    )

    body = api.get(PATH, params={"date": today.isoformat()}).json()

    assert (body["total"]["batches"], body["total"]["failed"], body["total"]["tests"]) == (1, 1, 2)
    (failed,) = body["failed"]
    assert (failed["trace_code"], failed["at_intake"], failed["inhibition_pct"]) == (
        code,
        False,
        "63.0",
    )
    kept = store.batch(MARKET, code)
    assert kept is not None
    assert (kept.rapid_test_passed, kept.inhibition_pct) == (True, Decimal("21.5"))
    assert [(t.passed, t.inhibition_pct) for t in store.rapid_tests_of_batch(MARKET, code)] == [
        (False, Decimal("63.0"))
    ]


def _rate(passed: int, tested: int) -> str:
    exact = Decimal(passed * 100) / Decimal(tested)
    return str(exact.quantize(Decimal("0.1"), rounding="ROUND_HALF_UP"))


def _a_vendor_and_product(registry: Registry) -> tuple[str, str]:
    market = registry.markets[MARKET]
    for vendor in market.spec.vendors:
        if vendor.scales:
            for product in market.products.values():
                if not market.outside_categories(vendor.id, product.plu):
                    return vendor.id, product.plu
    raise AssertionError("the example market has a vendor with a product it may sell")
