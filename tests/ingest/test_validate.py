"""The edge check, without a broker: topic, registry, payload and time rules."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest

from ingest.validate import OVERSIZED_KEEP_BYTES, Limits, Validator
from schemas.messages import BatchIntake, ScaleStatus
from schemas.registry import Registry, load_market
from storage.records import UNREGISTERED, DeadLetter, Reading
from tests.ingest.helpers import SALE_TOPIC, now_iso, sale_payload, write_market


@pytest.fixture
def validator(tmp_path: Path) -> Validator:
    return Validator(
        Registry([load_market(write_market(tmp_path))]), Limits(max_payload_bytes=2048)
    )


def test_valid_sale_becomes_a_reading_of_the_registered_device(validator: Validator) -> None:
    received = time.time_ns()
    result = validator.check(SALE_TOPIC, sale_payload(7), received)
    assert isinstance(result, Reading)
    assert (result.market, result.device, result.received_ns) == ("tm", "S-A01", received)
    assert result.message.msg_id == 7


def test_rejection_keeps_topic_raw_bytes_and_registered_ids(validator: Validator) -> None:
    payload = sale_payload(1, weight_g=0)
    result = validator.check(SALE_TOPIC, payload, time.time_ns())
    assert isinstance(result, DeadLetter)
    assert (result.topic, result.payload, result.market, result.device) == (
        SALE_TOPIC,
        payload,
        "tm",
        "S-A01",
    )
    assert result.reason.startswith("invalid payload: weight_g")


def test_unregistered_ids_never_become_tags(validator: Validator) -> None:
    result = validator.check("markets/evil/scales/S-X/sale", sale_payload(1), time.time_ns())
    assert isinstance(result, DeadLetter)
    assert (result.market, result.device) == (UNREGISTERED, UNREGISTERED)


def test_oversized_payload_is_truncated_but_its_size_kept(validator: Validator) -> None:
    payload = b"x" * 5000
    result = validator.check(SALE_TOPIC, payload, time.time_ns())
    assert isinstance(result, DeadLetter)
    assert result.payload_size == 5000
    assert len(result.payload) == OVERSIZED_KEEP_BYTES
    assert "too large" in result.reason


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (timedelta(minutes=4), True),
        (timedelta(minutes=6), False),
        (timedelta(days=-6), True),
        (timedelta(days=-8), False),
    ],
)
def test_device_time_window(validator: Validator, offset: timedelta, accepted: bool) -> None:
    result = validator.check(SALE_TOPIC, sale_payload(1, ts=now_iso(offset)), time.time_ns())
    assert isinstance(result, Reading) is accepted


def test_last_will_is_accepted_whatever_its_connect_time(validator: Validator) -> None:
    will = ScaleStatus(msg_id=0, ts="2026-01-01T00:00:00+08:00", online=False, will=True)  # type: ignore[arg-type]
    result = validator.check(
        "markets/tm/scales/S-A01/status", will.model_dump_json().encode(), time.time_ns()
    )
    assert isinstance(result, Reading)


def test_batch_for_unknown_vendor_is_rejected(validator: Validator) -> None:
    body = {
        "msg_id": 1,
        "ts": now_iso(),
        "trace_code": "TM-1-0001",
        "vendor": "V99",
        "plu": "1001",
        "origin": "山东寿光",
        "supplier": "新发地",
        "quantity_g": 50000,
        "certificate_no": "HG-1",
        "rapid_test": {"result": "pass", "inhibition_pct": "12.5"},
    }
    payload = json.dumps(body, ensure_ascii=False).encode()
    result = validator.check("markets/tm/intake/IN-1/batch", payload, time.time_ns())
    assert isinstance(result, DeadLetter)
    assert "unknown vendor 'V99'" in result.reason
    ok = validator.check(
        "markets/tm/intake/IN-1/batch", payload.replace(b"V99", b"V02"), time.time_ns()
    )
    assert isinstance(ok, Reading)


def _batch_body(**changes: object) -> bytes:
    body: dict[str, object] = {
        "msg_id": 2,
        "ts": now_iso(),
        "trace_code": "TM-1-0002",
        "vendor": "V02",
        "plu": "1001",
        "origin": "山东寿光",
        "supplier": "新发地",
        "quantity_g": 50000,
        "certificate_no": "HG-2",
    }
    return json.dumps(body | changes, ensure_ascii=False).encode()


def test_a_batch_without_a_rapid_test_is_accepted_as_not_tested(validator: Validator) -> None:
    for payload in (_batch_body(), _batch_body(rapid_test=None)):
        result = validator.check("markets/tm/intake/IN-1/batch", payload, time.time_ns())
        assert isinstance(result, Reading), result
        assert isinstance(result.message, BatchIntake)
        assert result.message.rapid_test is None


@pytest.mark.parametrize(
    ("test", "missing"),
    [({"result": "pass"}, "inhibition_pct"), ({"inhibition_pct": "12.5"}, "result")],
)
def test_half_a_rapid_test_is_dead_lettered_naming_the_missing_field(
    validator: Validator, test: dict[str, str], missing: str
) -> None:
    payload = _batch_body(rapid_test=test)
    result = validator.check("markets/tm/intake/IN-1/batch", payload, time.time_ns())
    assert isinstance(result, DeadLetter)
    assert result.reason == f"invalid payload: rapid_test.{missing}: Field required"
    assert result.payload == payload


def test_a_sale_outside_the_stalls_categories_is_kept_but_flagged(validator: Validator) -> None:
    # V01 sells vegetables (the categories of its products); pork belly is meat.
    pork = validator.check(SALE_TOPIC, sale_payload(1, plu="2001"), time.time_ns())
    cabbage = validator.check(SALE_TOPIC, sale_payload(2), time.time_ns())

    assert isinstance(pork, Reading)
    assert pork.outside_categories
    assert isinstance(cabbage, Reading)
    assert not cabbage.outside_categories


@pytest.mark.parametrize(
    ("prefix", "key"),
    [
        # The reviewer's case: the first value is invalid, the last one valid.
        (b'"weight_g": -5, ', "weight_g"),
        (b'"msg_id": 3, ', "msg_id"),
        # The message is invalid anyway (unknown field): the repeat is still the reason.
        (b'"x": {"a": 1, "a": 2}, ', "a"),
    ],
)
def test_a_repeated_key_anywhere_is_dead_lettered_with_that_reason(
    validator: Validator, prefix: bytes, key: str
) -> None:
    payload = b"{" + prefix + sale_payload(3, weight_g=1033)[1:]
    result = validator.check(SALE_TOPIC, payload, time.time_ns())
    assert isinstance(result, DeadLetter)
    assert result.reason == f"duplicate key {key!r}"


@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": "), (" , ", " : ")])
def test_a_repeated_key_is_found_whatever_the_spacing(
    validator: Validator, separators: tuple[str, str]
) -> None:
    fields = list(json.loads(sale_payload(4, weight_g=1033)).items())
    body = (
        "{"
        + separators[0].join(
            f"{json.dumps(k)}{separators[1]}{json.dumps(v)}" for k, v in [("weight_g", -5), *fields]
        )
        + "}"
    )
    result = validator.check(SALE_TOPIC, body.encode(), time.time_ns())
    assert isinstance(result, DeadLetter)
    assert result.reason == "duplicate key 'weight_g'"


def price_with_promo(promo_text_members: str) -> bytes:
    """A price payload whose promotion has ``text`` given as raw JSON members."""
    until = json.dumps(now_iso(timedelta(hours=1)))
    promo = f'{{"price_fen_per_kg": 300, {promo_text_members}, "until": {until}}}'
    head = json.dumps(
        {"msg_id": 5, "ts": now_iso(), "vendor": "V01", "plu": "1001", "price_fen_per_kg": 398}
    )
    return f'{head[:-1]}, "promo": {promo}}}'.encode()


def test_a_repeated_key_in_a_nested_object_of_a_valid_message(validator: Validator) -> None:
    payload = price_with_promo('"text": "特价", "text": "特价"')
    result = validator.check("markets/tm/screens/P-A01/price", payload, time.time_ns())
    assert isinstance(result, DeadLetter)
    assert result.reason == "duplicate key 'text'"


def test_text_that_looks_like_keys_is_not_a_repeated_key(validator: Validator) -> None:
    payload = price_with_promo('"text": "a\\":b\\" :c"')
    result = validator.check("markets/tm/screens/P-A01/price", payload, time.time_ns())
    assert isinstance(result, Reading), result
    assert result.message == result.message.model_validate_json(payload)


def test_a_disabled_device_is_dead_lettered_with_that_reason(tmp_path: Path) -> None:
    text = write_market(tmp_path).read_text(encoding="utf-8")
    disabled = tmp_path / "disabled.toml"
    disabled.write_text('disabled_devices = ["S-A01"]\n' + text, encoding="utf-8")
    validator = Validator(Registry([load_market(disabled)]), Limits(max_payload_bytes=2048))

    result = validator.check(SALE_TOPIC, sale_payload(1), time.time_ns())

    assert isinstance(result, DeadLetter)
    assert (result.market, result.device, result.reason) == (
        "tm",
        "S-A01",
        "device 'S-A01' is disabled",
    )
