"""Footfall over real HTTP against simulated market days in each store, plus the pure parts.

Two days of the example market a week apart are written by ``simulators.history``.
The API's figures are checked against increments computed here from the raw
counter readings (``store.gate_counts``), with the counter-reset rule applied
reading by reading rather than per hour.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from api.routers import footfall
from marketview.analytics import (
    local_day_range,
)
from schemas.registry import Registry
from simulators.config import DayConfig
from simulators.history import generate_history
from storage.base import Store
from tests.api.conftest import Api
from tests.conftest import BOTH_STORES, EXAMPLE_MARKET

pytestmark = pytest.mark.mosquitto

MARKET = "nanmen"
SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 3)  # a Tuesday
WEEK_BEFORE = DAY - timedelta(weeks=1)
PATH = f"/api/v1/markets/{MARKET}/footfall"


@pytest.fixture
def market_file() -> Path:
    return EXAMPLE_MARKET


@pytest.fixture
def two_tuesdays(store: Store, api_registry: Registry) -> None:
    market = api_registry.markets[MARKET]
    for day in (WEEK_BEFORE, DAY):
        generate_history(market, store, start_date=day, days=1, seed=5, config=DayConfig())


def increments(
    store: Store, start: datetime, end: datetime
) -> dict[tuple[str, datetime], list[int]]:
    """People in/out per (gate, local hour of the reading), from raw counters; reset rule:
    a counter that went down restarted, and its new value is what it counted since."""
    last = {
        row.gate: (row.in_total, row.out_total) for row in store.gate_counts_before(MARKET, start)
    }
    result: dict[tuple[str, datetime], list[int]] = defaultdict(lambda: [0, 0])
    for row in store.gate_counts(MARKET, start, end):
        previous = last.get(row.gate)
        last[row.gate] = (row.in_total, row.out_total)
        if previous is None:
            continue
        hour = row.ts.astimezone(SHANGHAI).replace(minute=0, second=0, microsecond=0)
        for index, (before, now) in enumerate(zip(previous, last[row.gate], strict=True)):
            result[(row.gate, hour)][index] += now - before if now >= before else now
    return result


def day_totals(counted: dict[tuple[str, datetime], list[int]]) -> tuple[int, int]:
    return sum(v[0] for v in counted.values()), sum(v[1] for v in counted.values())


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_a_past_day_per_gate_per_hour_and_the_weeks_before(
    api: Api, store: Store, two_tuesdays: None
) -> None:
    response = api.get(PATH, api.tokens.manager, params={"date": DAY.isoformat()})

    assert response.status_code == 200, response.text
    body = response.json()
    counted = increments(store, *local_day_range(DAY, DAY, SHANGHAI))
    people_in, people_out = day_totals(counted)
    assert people_in > 1_000
    assert (body["people_in"], body["people_out"]) == (people_in, people_out)
    assert body["occupancy_now"] is None  # not today

    per_gate: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_hour: dict[datetime, list[int]] = defaultdict(lambda: [0, 0])
    for (gate, hour), (came, left) in counted.items():
        per_gate[gate][0] += came
        per_gate[gate][1] += left
        per_hour[hour][0] += came
        per_hour[hour][1] += left
    assert {g["gate"]: [g["people_in"], g["people_out"]] for g in body["per_gate"]} == per_gate
    assert {g["name"] for g in body["per_gate"]} >= {"北门"}
    hours = body["per_hour"]
    assert [datetime.fromisoformat(h["hour"]) for h in hours] == sorted(per_hour)
    assert [[h["people_in"], h["people_out"]] for h in hours] == [
        per_hour[h] for h in sorted(per_hour)
    ]
    inside = 0
    for hour in hours:
        inside += hour["people_in"] - hour["people_out"]
        assert hour["occupancy"] == inside
    assert hours[-1]["occupancy"] == people_in - people_out

    weeks = body["previous_weeks"]
    assert [w["date"] for w in weeks] == [
        (DAY - timedelta(weeks=n)).isoformat() for n in range(1, 5)
    ]
    before_in, before_out = day_totals(
        increments(store, *local_day_range(WEEK_BEFORE, WEEK_BEFORE, SHANGHAI))
    )
    assert (weeks[0]["people_in"], weeks[0]["people_out"]) == (before_in, before_out)
    assert sum(h["people_in"] for h in weeks[0]["hours"]) == before_in
    assert [(w["people_in"], w["hours"]) for w in weeks[1:]] == [(0, [])] * 3


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_today_counts_until_now_with_the_occupancy(
    api: Api, store: Store, two_tuesdays: None
) -> None:
    now = datetime(2026, 11, 3, 12, 30, tzinfo=SHANGHAI)
    api.app.dependency_overrides[footfall.utc_now] = lambda: now

    body = api.get(PATH, api.tokens.manager).json()

    start, _ = local_day_range(DAY, DAY, SHANGHAI)
    people_in, people_out = day_totals(increments(store, start, now))
    assert body["date"] == DAY.isoformat()
    assert (body["people_in"], body["people_out"]) == (people_in, people_out)
    assert body["occupancy_now"] == people_in - people_out > 0
    assert datetime.fromisoformat(body["per_hour"][-1]["hour"]) == now.replace(minute=0)


def test_footfall_needs_a_manager_token_and_valid_input(api: Api) -> None:
    assert api.get(PATH).status_code == 401
    assert api.get(PATH, api.tokens.screen).status_code == 403
    for bad in ("2026-02-30", "yesterday", "2100-01-01"):
        response = api.get(PATH, api.tokens.manager, params={"date": bad})
        assert response.status_code == 422, bad
    empty = api.get(PATH, api.tokens.manager, params={"date": "2000-01-01"}).json()
    assert (empty["people_in"], empty["per_gate"], empty["per_hour"]) == (0, [], [])
