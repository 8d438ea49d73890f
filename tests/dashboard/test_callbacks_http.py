"""Dash callbacks over plain HTTP: what a tampered or unlucky request gets."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.dashboard.conftest import USER, Stack

OVERVIEW = "..overview-kpis.children...overview-alerts.children...overview-shown.data.."


def _overview_request(market: str) -> dict[str, Any]:
    return {
        "output": OVERVIEW,
        "outputs": [
            {"id": "overview-kpis", "property": "children"},
            {"id": "overview-alerts", "property": "children"},
            {"id": "overview-shown", "property": "data"},
        ],
        "inputs": [
            {"id": "overview-tick", "property": "n_intervals", "value": 1},
            {"id": "market", "property": "value", "value": market},
        ],
        "state": [
            {"id": "lang", "property": "data", "value": "en"},
            {"id": "overview-shown", "property": "data", "value": None},
        ],
        "changedPropIds": ["overview-tick.n_intervals"],
    }


@pytest.fixture
def client(stack: Stack) -> httpx.Client:
    client = httpx.Client(base_url=stack.url, timeout=30)
    response = client.post("/dashboard/login", data={"username": USER, "password": stack.password})
    assert response.status_code == 303
    return client


def test_a_callback_answers_with_the_figures(client: httpx.Client, stack: Stack) -> None:
    response = client.post(
        "/dashboard/_dash-update-component", json=_overview_request(stack.market.id)
    )
    assert response.status_code == 200
    kpis = response.json()["response"]["overview-kpis"]["children"]
    assert "Turnover today" in str(kpis)


def test_an_unknown_market_changes_nothing_and_is_not_a_server_error(client: httpx.Client) -> None:
    response = client.post("/dashboard/_dash-update-component", json=_overview_request("nowhere"))
    assert response.status_code == 200
    # No output is updated: the page keeps what it shows.
    assert response.json()["response"] == {}


def test_callbacks_need_the_login(stack: Stack) -> None:
    response = httpx.post(
        stack.url + "/dashboard/_dash-update-component", json=_overview_request(stack.market.id)
    )
    assert response.status_code == 401
