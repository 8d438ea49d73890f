"""Registering a batch over HTTP: the same rules as MQTT intake, stored, read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from api.routers.batches import BatchRegistration
from schemas.messages import BatchIntake
from tests.api.conftest import MARKET, Api
from tests.conftest import BOTH_STORES

BATCHES = f"/api/v1/markets/{MARKET}/batches"
both_stores = pytest.mark.parametrize("store_kind", BOTH_STORES)


def batch(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "station": "IN-1",
        "trace_code": "TM-20250512-IN1-0001",
        "vendor": "V01",
        "plu": "1001",
        "origin": "山东寿光",
        "supplier": "寿光蔬菜批发市场 第3档",
        "quantity_g": 250_000,
        "certificate_no": "HG-2025-000123",
        "rapid_test": {"result": "pass", "inhibition_pct": "12.5"},
    }
    body.update(changes)
    return body


def register(api: Api, body: dict[str, Any], token: str | None = None) -> Any:
    return api.post(BATCHES, token or api.tokens.manager, json=body)


@both_stores
def test_a_registered_batch_is_stored_and_returned(api: Api) -> None:
    before = datetime.now(UTC)
    response = register(api, batch())
    assert response.status_code == 201, response.text
    body = response.json()

    stored = api.store.batch(MARKET, "TM-20250512-IN1-0001")
    assert stored is not None
    assert (stored.station, stored.vendor, stored.plu, stored.quantity_g) == (
        "IN-1",
        "V01",
        "1001",
        250_000,
    )
    assert (stored.origin, stored.supplier, stored.certificate_no) == (
        "山东寿光",
        "寿光蔬菜批发市场 第3档",
        "HG-2025-000123",
    )
    assert (stored.rapid_test_passed, stored.inhibition_pct) == (True, Decimal("12.5"))
    assert body["msg_id"] == stored.msg_id > 0
    assert body["rapid_test"] == {"result": "pass", "inhibition_pct": "12.5"}
    assert body["market"] == MARKET
    assert before - timedelta(seconds=1) <= datetime.fromisoformat(body["ts"]) <= datetime.now(UTC)


@both_stores
def test_a_batch_without_a_rapid_test_is_registered_as_not_tested(api: Api) -> None:
    # Markets test a sample: most batches come in untested (absent or null alike).
    body = batch()
    del body["rapid_test"]
    response = register(api, body)
    assert response.status_code == 201, response.text
    assert response.json()["rapid_test"] is None
    stored = api.store.batch(MARKET, "TM-20250512-IN1-0001")
    assert stored is not None
    assert (stored.rapid_test_passed, stored.inhibition_pct) == (None, None)

    again = register(api, batch(rapid_test=None))
    assert again.status_code == 200  # the same content: absent and null mean the same
    assert again.json() == response.json()

    # A test now would be other content: a test after intake is a RapidTestReport.
    tested = register(api, batch())
    assert tested.status_code == 409
    assert tested.json()["error"]["code"] == "trace_code_taken"
    assert "rapid_test.result" in tested.json()["error"]["message"]


@pytest.mark.parametrize(
    ("half", "missing"),
    [
        ({"result": "pass"}, ["inhibition_pct"]),
        ({"inhibition_pct": "12.5"}, ["result"]),
        ({}, ["result", "inhibition_pct"]),
    ],
    ids=["without-rate", "without-result", "empty"],
)
def test_half_a_rapid_test_is_422_naming_what_is_missing(
    api: Api, half: dict[str, str], missing: list[str]
) -> None:
    response = register(api, batch(rapid_test=half))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert [(d["loc"], d["type"]) for d in error["details"]] == [
        (["body", "rapid_test", name], "missing") for name in missing
    ]
    assert f"body.rapid_test.{missing[0]}: Field required" in error["message"]
    assert api.store.batch(MARKET, "TM-20250512-IN1-0001") is None


@both_stores
def test_given_msg_id_and_time_are_kept(api: Api) -> None:
    intake = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=123_000)
    response = register(api, batch(msg_id=42, ts=intake.isoformat()))
    assert response.status_code == 201, response.text
    stored = api.store.batch(MARKET, "TM-20250512-IN1-0001")
    assert stored is not None
    assert (stored.msg_id, stored.ts) == (42, intake)


def test_assigned_msg_ids_only_increase(api: Api) -> None:
    ids = [register(api, batch(trace_code=f"TM-ID-{n:04d}")).json()["msg_id"] for n in range(3)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3


@both_stores
def test_the_same_batch_again_is_harmless_and_other_content_conflicts(api: Api) -> None:
    first = register(api, batch())
    assert first.status_code == 201

    again = register(api, batch(rapid_test={"result": "pass", "inhibition_pct": "12.50"}))
    assert again.status_code == 200
    assert again.json() == first.json()

    other = register(api, batch(quantity_g=240_000, certificate_no="HG-2025-999999"))
    assert other.status_code == 409
    error = other.json()["error"]
    assert error["code"] == "trace_code_taken"
    assert "quantity_g" in error["message"]
    assert "certificate_no" in error["message"]
    stored = api.store.batch(MARKET, "TM-20250512-IN1-0001")
    assert stored is not None
    assert stored.quantity_g == 250_000


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"vendor": "V99"}, "unknown vendor 'V99' in market 'tm'"),
        ({"plu": "9999"}, "unknown product PLU '9999' in market 'tm'"),
        ({"station": "IN-9"}, "unknown device 'IN-9' in market 'tm'"),
        ({"station": "S-A01"}, "device 'S-A01' is registered as scales, not intake"),
        (
            {"ts": (datetime.now(UTC) - timedelta(days=8)).isoformat()},
            "is older than 7 days",
        ),
        ({"ts": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, "in the future"),
    ],
)
def test_what_ingest_would_refuse_is_409_with_the_reason(
    api: Api, changes: dict[str, Any], reason: str
) -> None:
    response = register(api, batch(**changes))
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "batch_rejected"
    assert reason in error["message"]
    assert api.store.batch(MARKET, "TM-20250512-IN1-0001") is None


def test_what_the_document_allows_is_accepted(api: Api) -> None:
    # JSON Schema's "integer" includes 250000.0; the rate is documented as a decimal string.
    response = register(api, batch(quantity_g=250_000.0, msg_id=7.0))
    assert response.status_code == 201, response.text
    assert (response.json()["quantity_g"], response.json()["msg_id"]) == (250_000, 7)
    schema = api.get("/openapi.json").json()["components"]["schemas"]["BatchRegistration"]
    assert "rapid_test" not in schema["required"]
    tested, untested = schema["properties"]["rapid_test"]["anyOf"]
    assert untested == {"type": "null"}
    assert [option["properties"]["result"]["const"] for option in tested["oneOf"]] == [
        "pass",
        "fail",
    ]
    assert all(option["required"] == ["result", "inhibition_pct"] for option in tested["oneOf"])


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"quantity_g": 1.5}, ["body", "quantity_g"]),
        ({"quantity_g": "250000"}, ["body", "quantity_g"]),
        ({"quantity_g": 0}, ["body", "quantity_g"]),
        ({"msg_id": 2.0**60}, ["body", "msg_id"]),  # a float this large is not exact
        ({"rapid_test": {"result": "pass", "inhibition_pct": "60"}}, ["body", "rapid_test"]),
        ({"trace_code": "a b"}, ["body", "trace_code"]),
        ({"origin": "山东\u202e寿光"}, ["body", "origin"]),
        ({"ts": "2025-05-12T08:00:00"}, ["body", "ts"]),
        ({"colour": "green"}, ["body", "colour"]),
        ({"station": None}, ["body", "station"]),
    ],
)
def test_malformed_batches_are_422_naming_the_field(
    api: Api, changes: dict[str, Any], field: list[str]
) -> None:
    response = register(api, batch(**changes))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"][0]["loc"] == field


def test_a_body_that_is_not_json_is_422(api: Api) -> None:
    response = api.post(
        BATCHES,
        api.tokens.manager,
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


def test_only_managers_register_batches(api: Api) -> None:
    assert register(api, batch(), token=api.tokens.screen).status_code == 403
    assert api.post(BATCHES, json=batch()).status_code == 401
    assert api.store.batch(MARKET, "TM-20250512-IN1-0001") is None


def test_an_unknown_market_is_404(api: Api) -> None:
    response = api.post("/api/v1/markets/nowhere/batches", api.tokens.manager, json=batch())
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_market"


def test_the_body_has_every_field_of_the_mqtt_message() -> None:
    contract = set(BatchIntake.model_fields) - {"v"}
    assert set(BatchRegistration.model_fields) == contract | {"station"}
