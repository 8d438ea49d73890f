"""Validation rules of the device contracts, exercised the way devices send them: as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel, ValidationError

from schemas.messages import (
    MAX_GATE_COUNT,
    MAX_ROUNDING_DOWN_FEN,
    MAX_TOTAL_FEN,
    MAX_UNIT_PRICE_FEN_PER_KG,
    MAX_WEIGHT_G,
    BatchIntake,
    GateCount,
    PriceSet,
    RapidTestResult,
    Sale,
    ScaleStatus,
    expected_total_fen,
)

M = TypeVar("M", bound=BaseModel)

TS = "2025-05-17T07:42:13.250+08:00"


def sale(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "v": 1,
        "msg_id": 42,
        "ts": TS,
        "vendor": "v-chen",
        "plu": "1001",
        "weight_g": 1_250,
        "unit_price_fen_per_kg": 1_200,
        "total_fen": 1_500,
        "trace_code": "SG20250516-0042",
    }
    return payload | changes


def price_set(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "msg_id": 7,
        "ts": TS,
        "vendor": "v-chen",
        "plu": "1001",
        "price_fen_per_kg": 1_600,
    }
    return payload | changes


def promo(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "price_fen_per_kg": 1_280,
        "text": "早市特价",
        "until": "2025-05-17T10:00:00+08:00",
    }
    return payload | changes


def batch(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "msg_id": 3,
        "ts": TS,
        "trace_code": "SG20250516-0042",
        "vendor": "v-chen",
        "plu": "1001",
        "origin": "山东寿光",
        "supplier": "寿光蔬菜批发市场",
        "quantity_g": 250_000,
        "certificate_no": "HG-2025-0516-118",
        "rapid_test": {"result": "pass", "inhibition_pct": 12.5},
    }
    return payload | changes


def parse(model: type[M], payload: dict[str, Any]) -> M:
    return model.model_validate_json(json.dumps(payload))


def rejection(model: type[BaseModel], payload: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """Type and location of the single error the payload must cause."""
    with pytest.raises(ValidationError) as caught:
        parse(model, payload)
    errors = caught.value.errors()
    assert len(errors) == 1, errors
    return errors[0]["type"], tuple(errors[0]["loc"])


# -- sale ------------------------------------------------------------------------


def test_valid_sale_parses_to_exact_integers() -> None:
    parsed = parse(Sale, sale())
    assert (parsed.weight_g, parsed.unit_price_fen_per_kg, parsed.total_fen) == (
        1_250,
        1_200,
        1_500,
    )
    assert parsed.ts == datetime(
        2025, 5, 17, 7, 42, 13, 250_000, tzinfo=timezone(timedelta(hours=8))
    )


@pytest.mark.parametrize("weight", [0, -1, -1_250])
def test_weight_must_be_positive(weight: int) -> None:
    assert rejection(Sale, sale(weight_g=weight)) == ("greater_than", ("weight_g",))


def test_weight_above_scale_capacity_is_rejected() -> None:
    assert rejection(Sale, sale(weight_g=MAX_WEIGHT_G + 1)) == ("less_than_equal", ("weight_g",))


def test_negative_tare_is_rejected() -> None:
    assert rejection(Sale, sale(tare_g=-1)) == ("greater_than_equal", ("tare_g",))


@pytest.mark.parametrize("price", [MAX_UNIT_PRICE_FEN_PER_KG + 1, 10**12])
def test_absurd_unit_price_is_rejected(price: int) -> None:
    assert rejection(Sale, sale(unit_price_fen_per_kg=price)) == (
        "less_than_equal",
        ("unit_price_fen_per_kg",),
    )


def test_zero_unit_price_is_rejected() -> None:
    assert rejection(Sale, sale(unit_price_fen_per_kg=0)) == (
        "greater_than",
        ("unit_price_fen_per_kg",),
    )


def test_total_above_the_cap_is_rejected() -> None:
    assert rejection(Sale, sale(total_fen=MAX_TOTAL_FEN + 1)) == ("less_than_equal", ("total_fen",))


def test_expected_total_rounds_half_up_in_integers() -> None:
    assert expected_total_fen(1_250, 1_200) == 1_500
    assert expected_total_fen(1_234, 1_180) == 1_456  # 1456.12
    assert expected_total_fen(1_001, 500) == 501  # 500.5 rounds up
    assert expected_total_fen(999, 500) == 500  # 499.5 rounds up


@pytest.mark.parametrize("total", [1_502, 1_600, 1_399, 0])
def test_total_that_does_not_match_weight_times_price_is_rejected(total: int) -> None:
    kind, loc = rejection(Sale, sale(total_fen=total))
    assert (kind, loc) == ("value_error", ())


@pytest.mark.parametrize(
    "total",
    [1_501, 1_500, 1_490, 1_450, 1_500 - MAX_ROUNDING_DOWN_FEN],
    ids=["one-fen-up", "exact", "to-jiao", "to-half-yuan", "limit"],
)
def test_rounding_down_up_to_one_yuan_is_allowed(total: int) -> None:
    """抹零: scales may drop the fen or jiao; a fen up covers the other rounding mode."""
    assert parse(Sale, sale(total_fen=total)).total_fen == total


def test_rounding_down_is_measured_from_the_rounded_total() -> None:
    # 1234 g × 1180 fen/kg = 1456.12 fen -> 1456; 抹零 to ¥14.50 is fine, ¥14.55 is fine.
    assert parse(Sale, sale(weight_g=1_234, unit_price_fen_per_kg=1_180, total_fen=1_450))
    assert rejection(Sale, sale(weight_g=1_234, unit_price_fen_per_kg=1_180, total_fen=1_355)) == (
        "value_error",
        (),
    )


# -- fields every message shares ------------------------------------------------


@pytest.mark.parametrize("ts", ["2025-05-17T07:42:13", "2025-05-17T07:42:13.250", "2025-05-17"])
def test_naive_or_date_only_timestamps_are_rejected(ts: str) -> None:
    kind, loc = rejection(Sale, sale(ts=ts))
    assert loc == ("ts",)
    assert kind in {"timezone_aware", "datetime_parsing"}


def test_naive_timestamp_is_rejected_as_naive() -> None:
    assert rejection(Sale, sale(ts="2025-05-17T07:42:13")) == ("timezone_aware", ("ts",))


def test_utc_designator_is_accepted() -> None:
    assert parse(Sale, sale(ts="2025-05-16T23:42:13Z")).ts == datetime(
        2025, 5, 16, 23, 42, 13, tzinfo=UTC
    )


def test_extra_fields_are_rejected() -> None:
    assert rejection(Sale, sale(discount_fen=10)) == ("extra_forbidden", ("discount_fen",))


def test_extra_fields_in_nested_objects_are_rejected() -> None:
    assert rejection(PriceSet, price_set(promo=promo(colour="red"))) == (
        "extra_forbidden",
        ("promo", "colour"),
    )


def test_unknown_contract_version_is_rejected() -> None:
    assert rejection(Sale, sale(v=2)) == ("literal_error", ("v",))


def test_missing_version_defaults_to_one() -> None:
    payload = sale()
    del payload["v"]
    assert parse(Sale, payload).v == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("msg_id", True),
        ("weight_g", True),
        ("unit_price_fen_per_kg", False),
        ("total_fen", True),
    ],
)
def test_booleans_are_not_accepted_as_integers(field: str, value: bool) -> None:
    assert rejection(Sale, sale(**{field: value})) == ("int_type", (field,))


@pytest.mark.parametrize("value", ["1250", 1250.0, 1250.5])
def test_integers_must_be_json_integers(value: object) -> None:
    assert rejection(Sale, sale(weight_g=value)) == ("int_type", ("weight_g",))


def test_booleans_are_not_accepted_as_gate_counts() -> None:
    payload = {"msg_id": 1, "ts": TS, "in_total": True, "out_total": 0}
    assert rejection(GateCount, payload) == ("int_type", ("in_total",))


def test_gate_counts_are_bounded() -> None:
    payload = {"msg_id": 1, "ts": TS, "in_total": MAX_GATE_COUNT, "out_total": 0}
    assert rejection(GateCount, payload) == ("less_than", ("in_total",))


def test_negative_message_id_is_rejected() -> None:
    assert rejection(Sale, sale(msg_id=-1)) == ("greater_than_equal", ("msg_id",))


@pytest.mark.parametrize("vendor", ["", "v chen", "v/chen", "+", "#", "-leading-dash", "x" * 33])
def test_identifiers_cannot_smuggle_topic_or_protocol_characters(vendor: str) -> None:
    kind, loc = rejection(Sale, sale(vendor=vendor))
    assert loc == ("vendor",)
    assert kind in {"string_pattern_mismatch", "string_too_short", "string_too_long"}


# -- price screen ------------------------------------------------------------------


def test_promotion_below_the_regular_price_is_accepted() -> None:
    parsed = parse(PriceSet, price_set(promo=promo()))
    assert parsed.promo is not None
    assert parsed.promo.price_fen_per_kg == 1_280


@pytest.mark.parametrize("promo_price", [1_600, 1_601])
def test_promotion_must_be_a_discount(promo_price: int) -> None:
    payload = price_set(promo=promo(price_fen_per_kg=promo_price))
    with pytest.raises(ValidationError, match=r"promo\.price_fen_per_kg must be below"):
        parse(PriceSet, payload)


def test_promotion_must_end_after_it_was_set() -> None:
    payload = price_set(promo=promo(until="2025-05-17T07:00:00+08:00"))
    with pytest.raises(ValidationError, match=r"promo\.until must be after ts"):
        parse(PriceSet, payload)


def test_promotion_end_must_have_an_offset() -> None:
    payload = price_set(promo=promo(until="2025-05-17T10:00:00"))
    assert rejection(PriceSet, payload) == ("timezone_aware", ("promo", "until"))


@pytest.mark.parametrize("text", ["限时\x00特价", "限时\n特价", "bell\x07", "del\x7f"])
def test_control_characters_in_text_are_rejected(text: str) -> None:
    payload = price_set(promo=promo(text=text))
    with pytest.raises(ValidationError, match="control characters are not allowed"):
        parse(PriceSet, payload)


def test_text_is_stripped_and_must_not_be_blank() -> None:
    assert rejection(PriceSet, price_set(promo=promo(text="   "))) == (
        "string_too_short",
        ("promo", "text"),
    )
    parsed = parse(PriceSet, price_set(promo=promo(text="  特价  ")))
    assert parsed.promo is not None
    assert parsed.promo.text == "特价"


# -- intake ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "result"), [(12.5, "pass"), ("12.5", "pass"), (0, "pass"), ("100.0", "fail")]
)
def test_inhibition_is_an_exact_decimal(value: object, result: str) -> None:
    parsed = parse(BatchIntake, batch(rapid_test={"result": result, "inhibition_pct": value}))
    assert parsed.rapid_test is not None
    assert parsed.rapid_test.inhibition_pct == Decimal(str(value))
    assert isinstance(parsed.rapid_test.inhibition_pct, Decimal)


@pytest.mark.parametrize(("value", "result"), [("49.9", "fail"), ("50.0", "pass"), ("75", "pass")])
def test_rapid_test_result_must_agree_with_the_inhibition_rate(value: str, result: str) -> None:
    with pytest.raises(ValidationError, match="contradicts inhibition"):
        parse(BatchIntake, batch(rapid_test={"result": result, "inhibition_pct": value}))


@pytest.mark.parametrize("value", [12.55, "12.55", "0.05"])
def test_inhibition_with_more_than_one_decimal_is_rejected(value: object) -> None:
    payload = batch(rapid_test={"result": "pass", "inhibition_pct": value})
    assert rejection(BatchIntake, payload)[0] == "decimal_max_places"


@pytest.mark.parametrize("value", [-0.1, 100.1])
def test_inhibition_is_a_percentage(value: float) -> None:
    payload = batch(rapid_test={"result": "fail", "inhibition_pct": value})
    assert rejection(BatchIntake, payload)[1] == ("rapid_test", "inhibition_pct")


def test_inhibition_cannot_be_a_boolean() -> None:
    payload = batch(rapid_test={"result": "pass", "inhibition_pct": True})
    assert rejection(BatchIntake, payload) == ("decimal_type", ("rapid_test", "inhibition_pct"))


def test_rapid_test_result_is_pass_or_fail() -> None:
    tested = parse(BatchIntake, batch()).rapid_test
    assert tested is not None
    assert tested.result is RapidTestResult.PASS
    payload = batch(rapid_test={"result": "ok", "inhibition_pct": 1})
    assert rejection(BatchIntake, payload) == ("enum", ("rapid_test", "result"))


def test_a_batch_may_come_in_without_a_rapid_test() -> None:
    # Markets test a sample of their batches: absent or null, the batch was not tested.
    without = batch()
    del without["rapid_test"]
    assert parse(BatchIntake, without).rapid_test is None
    assert parse(BatchIntake, batch(rapid_test=None)).rapid_test is None
    # A device that sends its test stays valid.
    tested = parse(BatchIntake, batch())
    assert tested.rapid_test is not None
    assert tested.rapid_test.inhibition_pct == Decimal("12.5")


@pytest.mark.parametrize(
    ("test", "missing"),
    [({"result": "pass"}, "inhibition_pct"), ({"inhibition_pct": "12.5"}, "result")],
)
def test_half_a_rapid_test_is_rejected(test: dict[str, Any], missing: str) -> None:
    assert rejection(BatchIntake, batch(rapid_test=test)) == ("missing", ("rapid_test", missing))


def test_control_characters_in_origin_are_rejected() -> None:
    with pytest.raises(ValidationError, match="control characters are not allowed"):
        parse(BatchIntake, batch(origin="山东\x1b[31m寿光"))


def test_batch_quantity_must_be_a_positive_integer() -> None:
    assert rejection(BatchIntake, batch(quantity_g=0)) == ("greater_than", ("quantity_g",))
    assert rejection(BatchIntake, batch(quantity_g=True)) == ("int_type", ("quantity_g",))


# -- scale status -----------------------------------------------------------------


def test_last_will_payload_parses() -> None:
    parsed = parse(ScaleStatus, {"msg_id": 1, "ts": TS, "online": False, "will": True})
    assert (parsed.online, parsed.will) == (False, True)


@pytest.mark.parametrize("value", [1, "yes"])
def test_status_flags_must_be_json_booleans(value: object) -> None:
    assert rejection(ScaleStatus, {"msg_id": 1, "ts": TS, "online": value}) == (
        "bool_type",
        ("online",),
    )


def test_calibration_date_is_a_date() -> None:
    payload = {"msg_id": 1, "ts": TS, "online": True, "calibration_due": "next year"}
    assert rejection(ScaleStatus, payload)[1] == ("calibration_due",)
