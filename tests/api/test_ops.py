"""/healthz, /readyz and /metrics against a running server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from api.security import Role, create_token
from schemas.messages import Sale
from stallwatch.localservices import Mosquitto, free_port
from storage.records import Reading
from tests.api.conftest import MARKET, Api, Feeder, Tokens, bearer
from tests.ingest.helpers import SALE_TOPIC, sale_payload, wait_until

DEVICES = f"/api/v1/markets/{MARKET}/devices"


def samples(
    api: Api, token: str | None = None
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape (with the monitor token unless told), by name and labels."""
    response = api.get("/metrics", token or api.tokens.monitor)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


def test_healthz(api: Api) -> None:
    response = api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_when_everything_answers(api: Api) -> None:
    response = api.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": [
            {"name": "store", "ok": True, "message": None},
            {"name": "broker", "ok": True, "message": None},
            {"name": "live_view", "ok": True, "message": None},
        ],
    }


def test_readyz_names_the_broker_when_it_is_gone(api: Api, mosquitto_server: Mosquitto) -> None:
    mosquitto_server.stop()
    wait_until(lambda: api.get("/readyz").status_code == 503, timeout=30, what="not ready")

    checks = {c["name"]: c for c in api.get("/readyz").json()["checks"]}
    assert api.get("/readyz").json()["status"] == "not_ready"
    assert checks["broker"] == {
        "name": "broker",
        "ok": False,
        "message": "not subscribed to the MQTT broker",
    }
    assert checks["store"]["ok"]
    assert api.get("/healthz").status_code == 200  # alive, just not ready


def test_request_metrics_use_route_templates(api: Api) -> None:
    api.get("/healthz")
    api.get(DEVICES, api.tokens.screen)
    api.get(DEVICES)  # 401
    api.get("/no/such/path/4711")

    scraped = samples(api)
    count = "stallwatch_api_requests_total"
    assert scraped[(count, labels(method="GET", route="/healthz", status="200"))] == 1
    devices_route = "/api/v1/markets/{market}/devices"
    assert scraped[(count, labels(method="GET", route=devices_route, status="200"))] == 1
    assert scraped[(count, labels(method="GET", route=devices_route, status="401"))] == 1
    assert scraped[(count, labels(method="GET", route="<unmatched>", status="404"))] == 1
    latency = "stallwatch_api_request_duration_seconds_count"
    assert scraped[(latency, labels(method="GET", route=devices_route, status="200"))] == 1
    assert not any("4711" in value for _, label_set in scraped for _, value in label_set)


def test_unknown_methods_do_not_create_series(api: Api) -> None:
    api.client.request("BREW", "/healthz")
    scraped = samples(api)
    methods = {
        value
        for name, label_set in scraped
        if name == "stallwatch_api_requests_total"
        for key, value in label_set
        if key == "method"
    }
    assert "BREW" not in methods
    assert "OTHER" in methods


def test_ingest_figures_spool_depth_readings_and_rejects(api: Api, feeder: Feeder) -> None:
    feeder.ingest(
        [
            (SALE_TOPIC, sale_payload(1)),
            (SALE_TOPIC, sale_payload(2)),
            (SALE_TOPIC, b"{not json"),
            ("markets/tm/scales/S-A01/sale", sale_payload(3, vendor="V02")),
        ]
    )
    feeder.spool_only([(SALE_TOPIC, sale_payload(4)), (SALE_TOPIC, sale_payload(5))])

    scraped = samples(api)
    assert scraped[("stallwatch_spool_pending_messages", labels(spool="test-ingest"))] == 2
    device = labels(market=MARKET, device="S-A01")
    assert scraped[("stallwatch_device_readings_last_hour", device)] == 2
    assert scraped[("stallwatch_device_rejects_last_hour", device)] == 2
    assert scraped[("stallwatch_api_device_figures_up", labels())] == 1
    assert scraped[("stallwatch_api_live_broker_connected", labels())] == 1
    assert scraped[("stallwatch_api_live_synced", labels())] == 1

    feeder.forwarder.drain()
    assert samples(api)[("stallwatch_spool_pending_messages", labels(spool="test-ingest"))] == 0


def test_spools_are_read_while_ingest_keeps_writing_them(api: Api, feeder: Feeder) -> None:
    feeder.spool_only([(SALE_TOPIC, sale_payload(1))])
    assert samples(api)[("stallwatch_spool_pending_messages", labels(spool="test-ingest"))] == 1

    feeder.spool_only([(SALE_TOPIC, sale_payload(2))])  # the receiver still holds its spool

    assert samples(api)[("stallwatch_spool_pending_messages", labels(spool="test-ingest"))] == 2
    assert feeder.spool.pending() == 2


def test_a_missing_spool_directory_is_left_alone(api: Api) -> None:
    samples(api)
    assert not api.settings.spool_dir.exists()


# -- stallwatch serve ------------------------------------------------------------------


def _ready(url: str, server: subprocess.Popen[bytes]) -> bool:
    if server.poll() is not None:
        output = server.stdout.read().decode(errors="replace") if server.stdout else ""
        raise AssertionError(f"stallwatch serve exited with {server.returncode}: {output}")
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_stallwatch_serve_serves_until_sigterm(
    tmp_path: Path, market_file: Path, tokens: Tokens, mosquitto_server: Mosquitto
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {key: value for key, value in os.environ.items() if "STALLWATCH" not in key}
    environment["STALLWATCH_SQLITE_PATH"] = str(tmp_path / "serve.db")
    command = [sys.executable, "-m", "stallwatch.cli", "serve", "--market", str(market_file)]
    command += ["--mqtt-url", mosquitto_server.url, "--port", str(port)]
    command += ["--tokens-file", str(tokens.path)]
    server = subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_until(lambda: _ready(url, server), timeout=30, what="stallwatch serve ready")
        devices = httpx.get(f"{url}{DEVICES}", headers=bearer(tokens.screen), timeout=10)
        assert devices.status_code == 200
        assert len(devices.json()["devices"]) == 6
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0


def test_a_token_limited_to_a_market_sees_only_that_markets_devices(
    api: Api, feeder: Feeder
) -> None:
    feeder.ingest([(SALE_TOPIC, sale_payload(1))])
    elsewhere = Sale.model_validate_json(sale_payload(2))
    api.store.write([Reading("elsewhere", "S-X01", time.time_ns(), elsewhere)])
    scoped, _ = create_token(api.tokens.path, Role.MONITOR, name="tm-prom", market=MARKET)

    everything = samples(api)
    assert (
        everything[
            ("stallwatch_device_readings_last_hour", labels(market="elsewhere", device="S-X01"))
        ]
        == 1
    )

    seen = samples(api, scoped)
    markets = {dict(label_set).get("market") for _, label_set in seen}
    assert markets == {MARKET, None}
    assert (
        seen[("stallwatch_device_readings_last_hour", labels(market=MARKET, device="S-A01"))] == 1
    )
    assert seen[("stallwatch_api_live_synced", labels())] == 1  # the process's own figures stay
