"""Daily sales over real HTTP against a simulated market day in each store, plus the pure parts.

The store holds a day of the example market (``simulators.history``); every
figure the API returns is checked against sums computed here, independently,
from ``store.sales(...)``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from marketview.analytics import (
    local_day_range,
)
from schemas.registry import Registry
from simulators.history import generate_history
from storage.base import Store
from storage.interfaces.sales import SaleRow
from tests.api.conftest import Api
from tests.conftest import BOTH_STORES, EXAMPLE_MARKET

pytestmark = pytest.mark.mosquitto

MARKET = "nanmen"
DAY = date(2026, 11, 2)
SHANGHAI = ZoneInfo("Asia/Shanghai")
PATH = f"/api/v1/markets/{MARKET}/sales"


@pytest.fixture
def market_file() -> Path:
    return EXAMPLE_MARKET


@pytest.fixture
def day_of_sales(store: Store, api_registry: Registry) -> list[SaleRow]:
    generate_history(api_registry.markets[MARKET], store, start_date=DAY, days=1, seed=11)
    start, end = local_day_range(DAY, DAY, SHANGHAI)
    sales = store.sales(MARKET, start, end)
    assert len(sales) > 1_000
    return sales


def half_up(turnover: int, count: int) -> int:
    return int((Decimal(turnover) / count).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def expected_groups(
    sales: list[SaleRow], key: str, registry: Registry
) -> dict[str, dict[str, int]]:
    categories = {p.plu: p.category.value for p in registry.markets[MARKET].spec.products}
    groups: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    vendors: dict[str, set[str]] = defaultdict(set)
    for sale in sales:
        name = {"vendor": sale.vendor, "plu": sale.plu, "category": categories[sale.plu]}[key]
        groups[name]["transactions"] += 1
        groups[name]["turnover_fen"] += sale.total_fen
        groups[name]["weight_g"] += sale.weight_g
        vendors[name].add(sale.vendor)
    for name, figures in groups.items():
        figures["average_ticket_fen"] = half_up(figures["turnover_fen"], figures["transactions"])
        figures["vendors"] = len(vendors[name])
    return groups


def figures_of(item: dict[str, object]) -> dict[str, object]:
    keys = ("transactions", "turnover_fen", "weight_g", "average_ticket_fen", "vendors")
    return {key: item[key] for key in keys}


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_daily_sales_match_sums_over_every_sale(
    api: Api, day_of_sales: list[SaleRow], api_registry: Registry
) -> None:
    response = api.get(PATH, api.tokens.manager, params={"date": DAY.isoformat()})

    assert response.status_code == 200, response.text
    body = response.json()
    turnover = sum(sale.total_fen for sale in day_of_sales)
    assert body["date"] == "2026-11-02"
    assert body["timezone"] == "Asia/Shanghai"
    assert body["transactions"] == len(day_of_sales)
    assert body["turnover_fen"] == turnover
    assert body["turnover_yuan"] == f"{turnover // 100}.{turnover % 100:02d}"
    assert body["weight_g"] == sum(sale.weight_g for sale in day_of_sales)
    assert body["average_ticket_fen"] == half_up(turnover, len(day_of_sales))
    assert body["vendors"] == len({sale.vendor for sale in day_of_sales})

    per_vendor = expected_groups(day_of_sales, "vendor", api_registry)
    assert {v["vendor"]: figures_of(v) for v in body["per_vendor"]} == per_vendor
    turnovers = [v["turnover_fen"] for v in body["per_vendor"]]
    assert turnovers == sorted(turnovers, reverse=True)
    first = body["per_vendor"][0]
    vendor = api_registry.markets[MARKET].vendors[first["vendor"]]
    assert (first["name"], first["stall"]) == (vendor.name, vendor.stall)

    per_category = expected_groups(day_of_sales, "category", api_registry)
    assert {c["category"]: figures_of(c) for c in body["per_category"]} == per_category


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_top_products_by_turnover(
    api: Api, day_of_sales: list[SaleRow], api_registry: Registry
) -> None:
    response = api.get(
        f"{PATH}/top-products", api.tokens.manager, params={"date": "2026-11-02", "limit": 5}
    )

    assert response.status_code == 200, response.text
    products = response.json()["products"]
    per_plu = expected_groups(day_of_sales, "plu", api_registry)
    ranking = sorted(per_plu, key=lambda plu: (-per_plu[plu]["turnover_fen"], plu))
    assert [p["plu"] for p in products] == ranking[:5]
    assert [figures_of(p) for p in products] == [per_plu[plu] for plu in ranking[:5]]
    names = api_registry.markets[MARKET].products
    assert [p["name_zh"] for p in products] == [names[plu].name_zh for plu in ranking[:5]]


def test_a_day_without_sales_and_today_by_default(api: Api) -> None:
    empty = api.get(PATH, api.tokens.manager, params={"date": "2026-01-01"}).json()
    assert (empty["transactions"], empty["turnover_fen"], empty["turnover_yuan"]) == (0, 0, "0.00")
    assert empty["average_ticket_fen"] is None
    assert empty["per_vendor"] == empty["per_category"] == []

    today = api.get(PATH, api.tokens.manager).json()
    assert today["date"] == datetime.now(UTC).astimezone(SHANGHAI).date().isoformat()


def test_sales_need_a_manager_token_and_valid_input(api: Api) -> None:
    def answer(path: str, token: str | None = None, **params: str) -> tuple[int, str]:
        response = api.get(path, token, params=params)
        return response.status_code, response.json()["error"]["code"]

    assert answer(PATH) == (401, "not_authenticated")
    assert answer(PATH, api.tokens.screen) == (403, "forbidden")
    assert answer(f"{PATH}/top-products", api.tokens.screen) == (403, "forbidden")
    assert answer(PATH, api.tokens.other_market_manager) == (403, "forbidden")
    manager = api.tokens.manager
    assert answer(PATH, manager, date="2026-13-01")[0] == 422
    assert answer(PATH, manager, date="1999-12-31")[0] == 422
    assert answer(f"{PATH}/top-products", manager, limit="0")[0] == 422
    assert answer(f"{PATH}/top-products", manager, limit="101")[0] == 422
    assert answer("/api/v1/markets/nowhere/sales", manager) == (404, "unknown_market")
