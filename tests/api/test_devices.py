"""Device list and dead letters, fed through the ingest path, against both stores."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from api.routers.devices import _page
from storage.records import DeadLetter
from tests.api.conftest import MARKET, Api, Feeder
from tests.conftest import BOTH_STORES
from tests.ingest.helpers import SALE_TOPIC, Publisher, now_iso, sale_payload, wait_until

DEVICES = f"/api/v1/markets/{MARKET}/devices"
DEAD_LETTERS = "/api/v1/dead-letters"
STATUS_B01 = "markets/tm/scales/S-B01/status"
STATUS_A01 = "markets/tm/scales/S-A01/status"

both_stores = pytest.mark.parametrize("store_kind", BOTH_STORES)


def status(msg_id: int, **fields: object) -> bytes:
    body = {"msg_id": msg_id, "ts": now_iso(), "online": True, **fields}
    return json.dumps(body).encode()


def by_id(api: Api, token: str | None = None) -> dict[str, dict[str, object]]:
    response = api.get(DEVICES, token or api.tokens.manager)
    assert response.status_code == 200, response.text
    return {device["id"]: device for device in response.json()["devices"]}


# -- device list ----------------------------------------------------------------------


@both_stores
def test_every_registered_device_is_listed_with_kind_and_vendor(api: Api) -> None:
    devices = by_id(api)
    assert {(d, v["kind"], v["vendor"]) for d, v in devices.items()} == {
        ("S-A01", "scales", "V01"),
        ("S-B01", "scales", "V02"),
        ("P-A01", "screens", "V01"),
        ("P-B01", "screens", "V02"),
        ("G-N", "gates", None),
        ("IN-1", "intake", None),
    }
    assert all(d["readings"] == 0 and d["rejects"] == 0 for d in devices.values())
    assert all(d["last_seen"] is None and d["online"] is None for d in devices.values())


@both_stores
def test_readings_rejects_and_scale_status_per_device(api: Api, feeder: Feeder) -> None:
    reported = now_iso()
    feeder.ingest(
        [
            (SALE_TOPIC, sale_payload(1)),
            (SALE_TOPIC, sale_payload(2)),
            (SALE_TOPIC, b"{not json"),
            (
                STATUS_B01,
                status(
                    1, ts=reported, zero_ok=True, seal_intact=False, calibration_due="2026-03-01"
                ),
            ),
        ]
    )
    devices = by_id(api)

    assert (devices["S-A01"]["readings"], devices["S-A01"]["rejects"]) == (2, 1)
    assert (devices["S-B01"]["readings"], devices["S-B01"]["rejects"]) == (1, 0)
    assert devices["S-B01"]["online"] is True
    health = dict(cast(dict[str, Any], devices["S-B01"]["scale_status"]))
    assert datetime.fromisoformat(health.pop("reported_at")) == datetime.fromisoformat(reported)
    assert health == {"zero_ok": True, "seal_intact": False, "calibration_due": "2026-03-01"}
    assert devices["S-A01"]["scale_status"] is None


@both_stores
def test_last_seen_is_when_a_status_arrived_not_the_scales_clock(api: Api, feeder: Feeder) -> None:
    # The scale's clock runs four minutes ahead: it reported "then", but was heard now.
    ahead = now_iso(timedelta(minutes=4))
    sent = datetime.now(UTC)
    feeder.ingest([(STATUS_B01, status(1, ts=ahead))])
    stored = datetime.now(UTC)
    device = by_id(api)["S-B01"]

    assert sent <= datetime.fromisoformat(str(device["last_seen"])) <= stored
    reported_at = cast(dict[str, Any], device["scale_status"])["reported_at"]
    assert datetime.fromisoformat(reported_at) == datetime.fromisoformat(ahead)


@both_stores
def test_sales_whose_trace_code_did_not_check_out_are_counted_per_scale(
    api: Api, feeder: Feeder
) -> None:
    pork = {
        "msg_id": 1,
        "ts": now_iso(timedelta(hours=-1)),
        "trace_code": "TM-20261121-B01-0001",
        "vendor": "V02",
        "plu": "2001",
        "origin": "河南",
        "supplier": "批发市场",
        "quantity_g": 50_000,
        "certificate_no": "HG-1",
        "rapid_test": {"result": "pass", "inhibition_pct": 3.5},
    }
    feeder.ingest(
        [
            ("markets/tm/intake/IN-1/batch", json.dumps(pork).encode()),
            (SALE_TOPIC, sale_payload(1, trace_code="TM-20261121-B01-0001")),  # pork batch
            (SALE_TOPIC, sale_payload(2, trace_code="TM-20261121-B01-0001")),
            (SALE_TOPIC, sale_payload(3, plu="2001")),  # pork at the vegetable stall
            (SALE_TOPIC, sale_payload(4)),  # a batch nobody registered
        ]
    )
    devices = by_id(api)

    assert devices["S-A01"]["unverified_sales"] == {
        "other_vendor": 2,
        "outside_categories": 1,
        "unknown_batch": 1,
    }
    assert devices["S-B01"]["unverified_sales"] == {}
    assert devices["G-N"]["unverified_sales"] == {}


@both_stores
def test_a_last_will_seen_live_turns_the_scale_offline(api: Api, feeder: Feeder) -> None:
    feeder.ingest([(STATUS_A01, status(1))])
    assert by_id(api)["S-A01"]["online"] is True

    publisher = Publisher(api.settings.mqtt_port, client_id="S-A01")
    try:
        will = status(2, online=False, will=True, ts="2020-01-01T00:00:00+00:00")
        publisher.publish_all([(STATUS_A01, will)])
        wait_until(lambda: by_id(api)["S-A01"]["online"] is False, what="scale offline")
    finally:
        publisher.close()


def test_the_window_is_validated(api: Api) -> None:
    for hours in ("0", "169", "abc", "1e3", ""):
        response = api.get(DEVICES, api.tokens.manager, params={"hours": hours})
        assert response.status_code == 422, hours
        assert response.json()["error"]["details"][0]["loc"] == ["query", "hours"]


def test_an_unknown_market_is_404(api: Api) -> None:
    response = api.get("/api/v1/markets/nowhere/devices", api.tokens.manager)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_market"


# -- dead letters ------------------------------------------------------------------------

JUNK = [
    (SALE_TOPIC, b"{not json"),
    (SALE_TOPIC, b"\xff\xfe\x00 binary"),
    (SALE_TOPIC, b"[" * 20_000),
    ("markets/evil/scales/S-X/sale", sale_payload(1)),
    (SALE_TOPIC, sale_payload(2, weight_g=0)),
]


def page(api: Api, **params: object) -> Any:
    response = api.get(DEAD_LETTERS, api.tokens.manager, params=params)
    assert response.status_code == 200, response.text
    return response.json()


@both_stores
def test_dead_letters_page_newest_first_without_gaps(api: Api, feeder: Feeder) -> None:
    for message in JUNK:  # one by one: distinct arrival times, a known order
        feeder.ingest([message])

    seen: list[Any] = []
    cursor: int | None = None
    while True:
        body = page(api, limit=2) if cursor is None else page(api, limit=2, before=cursor)
        assert len(body["items"]) <= 2
        seen += body["items"]
        cursor = body["next_before"]
        if cursor is None:
            break

    arrivals = [item["received_ns"] for item in seen]
    assert arrivals == sorted(arrivals, reverse=True)
    oldest_first = [
        (item["topic"], base64.b64decode(item["payload_base64"])) for item in seen[::-1]
    ]
    assert oldest_first == [(topic, payload[:1024]) for topic, payload in JUNK]


@both_stores
def test_dead_letters_carry_reason_payload_and_text(api: Api, feeder: Feeder) -> None:
    for message in JUNK:
        feeder.ingest([message])
    items = page(api)["items"]
    kept = {base64.b64decode(item["payload_base64"]): item for item in items}
    bad_json, binary, oversized, unregistered, zero_weight = (
        kept[payload[:1024]] for _topic, payload in JUNK
    )

    assert (oversized["payload_size"], oversized["truncated"]) == (20_000, True)
    assert oversized["reason"].startswith("payload too large")
    assert oversized["payload_text"] == "[" * 1024

    assert (unregistered["market"], unregistered["device"]) == ("_unregistered", "_unregistered")
    assert unregistered["topic"] == "markets/evil/scales/S-X/sale"
    assert json.loads(unregistered["payload_text"])["msg_id"] == 1

    assert (zero_weight["market"], zero_weight["device"]) == (MARKET, "S-A01")
    assert zero_weight["payload_text"] == JUNK[4][1].decode()
    assert (zero_weight["truncated"], zero_weight["payload_size"]) == (False, len(JUNK[4][1]))

    assert zero_weight["reason"].startswith("invalid payload: weight_g")
    assert binary["payload_text"] is None
    assert bad_json["payload_text"] == "{not json"
    assert bad_json["reason"].startswith("invalid payload")


@both_stores
def test_dead_letters_filter_by_market(api: Api, feeder: Feeder) -> None:
    feeder.ingest(JUNK)
    assert len(page(api, market=MARKET)["items"]) == 4
    unregistered = page(api, market="_unregistered")["items"]
    assert [item["topic"] for item in unregistered] == ["markets/evil/scales/S-X/sale"]

    response = api.get(DEAD_LETTERS, api.tokens.manager, params={"market": "nowhere"})
    assert (response.status_code, response.json()["error"]["code"]) == (404, "unknown_market")


@both_stores
def test_dead_letters_time_range(api: Api, feeder: Feeder) -> None:
    feeder.ingest(JUNK)
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert page(api, start=future, end=(datetime.now(UTC) + timedelta(hours=2)).isoformat()) == {
        "items": [],
        "next_before": None,
    }
    # An empty range is an empty page, not an error (the document cannot state the rule).
    assert page(api, start=future, end=future) == {"items": [], "next_before": None}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"limit": "ten"},
        {"before": -1},
        {"before": 10**30},
        {"start": "yesterday"},
        {"start": "2025-05-12T08:00:00"},  # no offset
        {"end": "9999-12-31T23:59:59+00:00"},
        {"start": "1999-12-31T23:00:00-08:00"},  # the year as written, whatever it is in UTC
        {"market": "bad market!"},
        {"market": "x" * 40},
    ],
)
def test_bad_dead_letter_queries_are_422(api: Api, params: dict[str, object]) -> None:
    response = api.get(DEAD_LETTERS, api.tokens.manager, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"


def test_the_years_the_document_states_are_accepted_whatever_the_offset(api: Api) -> None:
    schema = next(
        parameter["schema"]
        for parameter in api.get("/openapi.json").json()["paths"]["/api/v1/dead-letters"]["get"][
            "parameters"
        ]
        if parameter["name"] == "start"
    )
    pattern = re.compile(schema["anyOf"][0]["pattern"])
    for start in ("2000-01-01T00:00:00+08:00", "2199-12-31T23:59:59-12:00"):
        assert pattern.match(start)
        assert page(api, start=start, end="2199-12-31T23:59:59+00:00")["items"] == []
    assert not pattern.match("1999-12-31T23:00:00-08:00")


# -- paging arithmetic (pure) -----------------------------------------------------------


def letter(received_ns: int) -> DeadLetter:
    return DeadLetter(received_ns=received_ns, topic="t", payload=b"", reason="r")


def test_a_page_ending_between_microseconds_is_cut_there() -> None:
    letters = [letter(ns) for ns in (9_000_500, 8_000_900, 8_000_100, 7_000_000)]
    assert _page(letters, 3) == (letters[:3], 8_000)  # next: received before 8000 µs


def test_letters_sharing_the_last_microsecond_move_to_the_next_page() -> None:
    letters = [letter(ns) for ns in (9_000_500, 8_000_900, 8_000_100, 8_000_050)]
    assert _page(letters, 3) == (letters[:1], 8_001)  # next: before 8001 µs, all three
    assert _page(letters[1:], 3) == (letters[1:], None)


def test_a_full_page_in_one_microsecond_still_advances() -> None:
    letters = [letter(5_000_000 + i) for i in range(4)]
    items, cursor = _page(letters, 3)
    assert (items, cursor) == (letters[:3], 5_000)
