"""Every error is JSON ``{"error": {"code", "message"}}``; bad input is 4xx, never 5xx."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from prometheus_client.parser import text_string_to_metric_families

from marketview.live_mqtt import LiveView
from schemas.registry import Registry
from stallwatch.localservices import Influxd, influxd
from stallwatch.options import live_mqtt_options
from stallwatch.settings import Settings
from storage.base import Store
from storage.influx.store import InfluxStore
from tests.api.conftest import MARKET, Api, Tokens, serve

DEVICES = f"/api/v1/markets/{MARKET}/devices"
DEAD_LETTERS = "/api/v1/dead-letters"


def assert_error(response_json: object, code: str) -> dict[str, object]:
    assert isinstance(response_json, dict)
    assert set(response_json) == {"error"}
    error = response_json["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    return dict(error)


def metric(api: Api, name: str, **labels: str) -> float | None:
    text = api.get("/metrics", api.tokens.monitor).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


# -- the shape ---------------------------------------------------------------------------


def test_an_unknown_path_is_404_json(api: Api) -> None:
    response = api.get("/api/v1/nothing/here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert_error(response.json(), "not_found")


def test_a_wrong_method_is_405_json_with_allow(api: Api) -> None:
    response = api.client.delete(DEVICES)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert_error(response.json(), "method_not_allowed")


def test_invalid_parameters_are_422_with_one_detail_per_field(api: Api) -> None:
    response = api.get(DEAD_LETTERS, api.tokens.manager, params={"limit": "x", "before": "-5"})
    assert response.status_code == 422
    error = assert_error(response.json(), "invalid_request")
    details = error["details"]
    assert isinstance(details, list)
    assert {tuple(d["loc"]) for d in details} == {("query", "limit"), ("query", "before")}
    assert all(set(d) == {"loc", "message", "type"} for d in details)
    assert str(error["message"]).startswith("invalid request: query.")


def test_a_body_over_the_limit_is_413_json(api: Api) -> None:
    response = api.post(
        f"/api/v1/markets/{MARKET}/batches", api.tokens.manager, json={"pad": "x" * 100_000}
    )
    assert response.status_code == 413
    assert_error(response.json(), "payload_too_large")


def test_an_unexpected_error_is_500_json_without_details(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    def explode() -> None:
        raise RuntimeError("secret internals: /etc/stallwatch/db password=hunter2")

    api.app.add_api_route("/test-only/explode", explode)
    response = api.get("/test-only/explode")

    assert response.status_code == 500
    assert_error(response.json(), "internal_error")
    assert "secret" not in response.text
    assert "Traceback" not in response.text
    logged = [r for r in caplog.records if r.getMessage().startswith("unhandled error during GET")]
    assert len(logged) == 1
    assert logged[0].exc_info is not None
    assert "hunter2" in str(logged[0].exc_info[1])  # the details go to the log only
    assert (
        metric(
            api,
            "stallwatch_api_requests_total",
            method="GET",
            route="/test-only/explode",
            status="500",
        )
        == 1
    )


# -- garbage never becomes a 5xx ------------------------------------------------------

GARBAGE = [
    "",
    "-1",
    "0",
    "1e309",
    "NaN",
    "9" * 40,
    "9999-12-31T23:59:59+00:00",
    "0001-01-01T00:00:00+00:00",
    "2025-05-12T08:00:00",
    "' OR 1=1 --",
    '"; DROP MEASUREMENT sale',
    "ü\u202e\u0000",
    "x" * 5000,
]
MY_GET_ROUTES = [
    "/api/v1/markets/{market}/devices",
    "/api/v1/dead-letters",
    "/readyz",
    "/healthz",
    "/metrics",
]


def _parameters(api: Api, path: str) -> list[str]:
    operation = api.get("/openapi.json").json()["paths"][path]["get"]
    return [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]


@pytest.mark.parametrize("path", MY_GET_ROUTES)
def test_garbage_query_parameters_are_never_a_server_error(api: Api, path: str) -> None:
    url = path.replace("{market}", MARKET)
    for name in [*_parameters(api, path), "unexpected"]:
        for value in GARBAGE:
            response = api.get(url, api.tokens.manager, params={name: value})
            assert response.status_code in {200, 404, 422}, (name, value, response.text)
            if response.status_code != 200:
                assert set(response.json()) == {"error"}


@pytest.mark.parametrize("market", ["x" * 33, "-x", "a b", "%00", "..", "a/b"])
def test_garbage_market_ids_are_4xx(api: Api, market: str) -> None:
    response = api.get(f"/api/v1/markets/{market}/devices", api.tokens.manager)
    assert 400 <= response.status_code < 500
    assert "error" in response.json()


# -- the store failing -------------------------------------------------------------------


@pytest.fixture
def private_influxd(tmp_path: Path) -> Iterator[Influxd]:
    """An influxd of this test's own, so stopping it disturbs no other test."""
    with influxd(tmp_path / "influxd") as server:
        assert isinstance(server, Influxd)
        yield server


def serve_over(
    store: Store, settings: Settings, registry: Registry, tokens: Tokens
) -> Iterator[Api]:
    live = LiveView(registry, store, live_mqtt_options(settings))
    live.start()
    try:
        yield from serve(settings, registry, store, live, tokens)
    finally:
        live.stop()


@pytest.fixture
def api_over_doomed_influx(
    private_influxd: Influxd, settings: Settings, api_registry: Registry, tokens: Tokens
) -> Iterator[tuple[Api, Influxd]]:
    with InfluxStore(private_influxd.url, "doomed", create_database=True) as store:
        for api in serve_over(store, settings, api_registry, tokens):
            yield api, private_influxd


@pytest.mark.influx
def test_a_store_outage_is_503_with_retry_after(
    api_over_doomed_influx: tuple[Api, Influxd],
) -> None:
    api, server = api_over_doomed_influx
    assert api.get(DEVICES, api.tokens.manager).status_code == 200
    server.stop()

    for path in (DEVICES, DEAD_LETTERS):
        response = api.get(path, api.tokens.manager)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert_error(response.json(), "store_unavailable")
        assert str(server.port) not in response.text

    readiness = api.get("/readyz")
    assert readiness.status_code == 503
    store_check = readiness.json()["checks"][0]
    assert store_check == {"name": "store", "ok": False, "message": "the store did not answer"}

    assert metric(api, "stallwatch_api_store_errors_total", error="StoreUnavailable") == 2
    assert metric(api, "stallwatch_api_device_figures_up") == 0


@pytest.fixture
def api_over_a_missing_retention_policy(
    influx_server: Influxd, settings: Settings, api_registry: Registry, tokens: Tokens
) -> Iterator[Api]:
    database = f"api_{uuid4().hex[:12]}"
    with InfluxStore(
        influx_server.url, database, create_database=True, retention_policy="missing"
    ) as store:
        yield from serve_over(store, settings, api_registry, tokens)


@pytest.mark.influx
def test_a_failed_store_query_is_502(api_over_a_missing_retention_policy: Api) -> None:
    api = api_over_a_missing_retention_policy
    response = api.get(DEVICES, api.tokens.manager)
    assert response.status_code == 502
    assert "Retry-After" not in response.headers
    assert_error(response.json(), "store_error")
    assert "retention" not in response.text
    assert metric(api, "stallwatch_api_store_errors_total", error="StoreQueryError") == 1


@pytest.mark.influx
def test_an_outage_is_one_warning_and_its_end_one_info_line(
    api_over_doomed_influx: tuple[Api, Influxd], caplog: pytest.LogCaptureFixture
) -> None:
    api, server = api_over_doomed_influx
    assert api.get(DEVICES, api.tokens.manager).status_code == 200
    server.stop()
    caplog.set_level(logging.INFO)

    statuses = [api.get(DEVICES, api.tokens.manager).status_code for _ in range(20)]
    server.start()
    assert api.get(DEVICES, api.tokens.manager).status_code == 200
    assert api.get(DEVICES, api.tokens.manager).status_code == 200

    assert statuses == [503] * 20
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    store_lines = [(level, text) for level, text in lines if "store" in text]
    assert [level for level, _ in store_lines] == [logging.WARNING, logging.INFO], lines
    assert store_lines[0][1].startswith("store unavailable")
    assert store_lines[1][1].startswith("store resumed after")
    assert "20 requests were answered 503" in store_lines[1][1]
