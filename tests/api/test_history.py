"""Price history over real HTTP against simulated market days in each store, plus the pure parts.

Two days of the example market are written by ``simulators.history``. For every
bucket the test works out, from all price settings in the store, which price
each vendor had in force when the bucket closed, and the exact median.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from api.routers import history
from schemas.registry import Registry
from simulators.history import generate_history
from storage.base import Store
from storage.interfaces.prices import PriceRow
from tests.api.conftest import Api
from tests.conftest import BOTH_STORES, EXAMPLE_MARKET

pytestmark = pytest.mark.mosquitto

MARKET = "nanmen"
SHANGHAI = ZoneInfo("Asia/Shanghai")
FIRST = date(2026, 11, 2)
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


@pytest.fixture
def market_file() -> Path:
    return EXAMPLE_MARKET


@pytest.fixture
def plu(store: Store, api_registry: Registry) -> str:
    """Two days of prices; the product the most vendors price."""
    generate_history(api_registry.markets[MARKET], store, start_date=FIRST, days=2, seed=7)
    settings = store.price_history(MARKET, LONG_AGO, datetime(2027, 1, 1, tzinfo=UTC))
    vendors = Counter(plu for plu, _ in {(row.plu, row.vendor) for row in settings})
    best, count = vendors.most_common(1)[0]
    assert count >= 3
    return best


def path(plu: str) -> str:
    return f"/api/v1/markets/{MARKET}/products/{plu}/price-history"


def in_force_at(settings: list[PriceRow], close: datetime) -> dict[str, int]:
    """Each vendor's regular price in force just before ``close``."""
    latest: dict[str, PriceRow] = {}
    for row in settings:
        if row.ts < close:
            current = latest.get(row.vendor)
            if current is None or (row.ts, row.msg_id) > (current.ts, current.msg_id):
                latest[row.vendor] = row
    return {vendor: row.price_fen_per_kg for vendor, row in latest.items()}


def exact_median(prices: list[int]) -> str:
    ordered = sorted(prices)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return str(ordered[middle])
    return str(Decimal(ordered[middle - 1] + ordered[middle]) / 2)


def check_against_store(body: dict[str, Any], store: Store, plu: str, now: datetime) -> None:
    settings = store.price_history(MARKET, LONG_AGO, now, plu=plu)
    starts = [datetime.fromisoformat(point["bucket_start"]) for point in body["median"]]
    closes = [*starts[1:], min(datetime.fromisoformat(body["end"]), now)]
    by_vendor = {
        series["vendor"]: {
            datetime.fromisoformat(p["bucket_start"]): p["price"]["fen_per_kg"]
            for p in series["points"]
        }
        for series in body["vendors"]
    }
    for start, close, median in zip(starts, closes, body["median"], strict=True):
        expected = in_force_at(settings, close)
        assert {v: points[start] for v, points in by_vendor.items() if start in points} == expected
        assert median["vendors"] == len(expected)
        assert median["median"]["fen_per_kg"] == exact_median(list(expected.values()))
        assert median["low"]["fen_per_kg"] == min(expected.values())
        assert median["high"]["fen_per_kg"] == max(expected.values())


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_daily_history_carries_prices_forward_until_now(api: Api, store: Store, plu: str) -> None:
    now = datetime(2026, 11, 4, 10, tzinfo=SHANGHAI)
    api.app.dependency_overrides[history.utc_now] = lambda: now

    response = api.get(path(plu), params={"start": "2026-11-01", "end": "2026-11-05"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["bucket"], body["timezone"], body["plu"]) == ("day", "Asia/Shanghai", plu)
    assert datetime.fromisoformat(body["start"]) == datetime(2026, 11, 1, tzinfo=SHANGHAI)
    assert datetime.fromisoformat(body["end"]) == now
    # 11-01 had no price yet; 11-04 is carried forward up to now; 11-05 has not begun.
    assert [p["bucket_start"][:10] for p in body["median"]] == [
        "2026-11-02",
        "2026-11-03",
        "2026-11-04",
    ]
    check_against_store(body, store, plu, now)
    vendor = (
        api.app.state.context.registry_source.current()
        .markets[MARKET]
        .vendors[body["vendors"][0]["vendor"]]
    )
    assert body["vendors"][0]["stall"] == vendor.stall


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_hourly_history_of_one_day(api: Api, store: Store, plu: str) -> None:
    response = api.get(
        path(plu), params={"start": "2026-11-03", "end": "2026-11-03", "bucket": "hour"}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    starts = [datetime.fromisoformat(p["bucket_start"]) for p in body["median"]]
    # Prices set on 11-02 are in force from the first hour of 11-03 on.
    assert starts == [datetime(2026, 11, 3, h, tzinfo=SHANGHAI) for h in range(24)]
    check_against_store(body, store, plu, datetime.now(UTC))


def test_a_range_in_the_future_is_empty(api: Api) -> None:
    body = api.get(path("1001"), params={"start": "2099-01-01", "end": "2099-01-02"}).json()
    assert (body["vendors"], body["median"]) == ([], [])
    assert body["end"] == body["start"]


def test_invalid_ranges_and_products(api: Api) -> None:
    def answer(plu: str = "1001", **params: str) -> tuple[int, str]:
        response = api.get(path(plu), params={"start": "2026-11-01", "end": "2026-11-02", **params})
        return response.status_code, response.json()["error"]["code"]

    assert answer(bucket="minute") == (422, "invalid_request")
    assert answer(start="2026-11-31") == (422, "invalid_request")
    assert answer(start="1999-12-31") == (422, "invalid_request")
    assert answer(plu="9999") == (404, "unknown_product")
    assert answer(plu="10 01") == (422, "invalid_request")
    assert api.get(path("1001"), params={"start": "2026-11-01"}).status_code == 422
    assert (
        api.get(
            path("1001").replace(MARKET, "nowhere"),
            params={"start": "2026-11-01", "end": "2026-11-01"},
        ).status_code
        == 404
    )


def test_an_end_before_the_start_is_an_empty_range(api: Api) -> None:
    params = {"start": "2026-11-01", "end": "2026-10-31"}
    response = api.get(path("1001"), params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["vendors"], body["median"], body["next_start"]) == ([], [], None)
    assert body["end"] == body["start"] == "2026-11-01T00:00:00+08:00"


@pytest.mark.parametrize(("bucket", "answered_days"), [("hour", 31), ("day", 400)])
def test_a_longer_range_is_answered_from_its_start_with_where_to_go_on(
    api: Api, bucket: str, answered_days: int
) -> None:
    start = date(2024, 1, 1)  # in the past: the answer's end is a midnight, not now
    first_left_out = start + timedelta(days=answered_days)
    params = {"start": start.isoformat(), "end": first_left_out.isoformat(), "bucket": bucket}
    response = api.get(path("1001"), params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_start"] == first_left_out.isoformat()
    assert body["end"] == f"{first_left_out.isoformat()}T00:00:00+08:00"


def test_the_longest_ranges_are_allowed(api: Api) -> None:
    hours = {"start": "2026-11-01", "end": "2026-12-01", "bucket": "hour"}  # 31 days
    days = {"start": "2026-11-01", "end": "2027-12-05", "bucket": "day"}  # 400 days
    for params in (hours, days):
        response = api.get(path("1001"), params=params)
        assert response.status_code == 200, response.text
