"""The point codec (``storage.records``) that both stores and the live view use."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from schemas.messages import DeviceMessage
from schemas.topics import parse_topic
from storage.records import (
    device_time,
    from_ns,
    pct_to_permille,
    permille_to_pct,
    point_ns,
    point_time_ns,
    reading_as_dead_letter,
    span_ns,
    time_bound_ns,
    to_ns,
)
from tests.storage.factories import MARKET, T0, at, batch, gate_count, price, reading, sale, status

_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2025, 5, 12, 8, 0, 0, 123_457, tzinfo=UTC),
        _EARLIEST,
        _LATEST,
    ],
)
def test_datetime_round_trips_through_ns_exactly(moment: datetime) -> None:
    assert from_ns(to_ns(moment)) == moment
    assert from_ns(to_ns(moment)).utcoffset() == timedelta(0)


def test_to_ns_is_exact_where_a_float_is_not() -> None:
    # 2**53 ns is about 104 days: every later moment loses digits as a float.
    moment = datetime(2262, 4, 11, 23, 47, 16, 854_775, tzinfo=UTC)
    assert to_ns(moment) == 9_223_372_036_854_775_000
    assert to_ns(_LATEST) == 253_402_300_799_999_999_000
    assert to_ns(_EARLIEST) == -62_135_596_800_000_000_000


def test_to_ns_of_another_zone_is_the_same_instant() -> None:
    assert to_ns(T0) == to_ns(T0.astimezone(UTC))


@pytest.mark.parametrize("ns", [0, 1, 999, 1_000, -1, -1_000, -1_001, 1_747_008_000_123_456_789])
def test_from_ns_floors_to_the_microsecond(ns: int) -> None:
    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1_000)
    assert from_ns(ns) == expected
    assert to_ns(from_ns(ns)) == ns - ns % 1_000


def test_span_ns_is_exact_for_days_and_microseconds() -> None:
    assert span_ns(timedelta(days=400, microseconds=1)) == 400 * 86_400 * 10**9 + 1_000
    assert span_ns(timedelta(seconds=-1)) == -(10**9)


def test_point_time_is_device_millisecond_plus_msg_id_digits() -> None:
    message = sale(msg_id=3_000_042, ts=at(ms=7) + timedelta(microseconds=999))
    point = point_time_ns(reading(message, "S-A01"))
    assert point == to_ns(at(ms=7)) + 42
    assert point == point_ns(message.ts, message.msg_id)
    assert device_time(point) == at(ms=7)


def test_point_ns_of_a_stored_device_time_is_the_stored_point() -> None:
    message = price(msg_id=999_999, ts=at(ms=1) + timedelta(microseconds=500))
    stored_ts = device_time(point_time_ns(reading(message, "P-A01")))
    assert point_ns(stored_ts, message.msg_id) == point_time_ns(reading(message, "P-A01"))


def test_last_will_is_stamped_with_its_arrival() -> None:
    will = reading(status(will=True, online=False), "S-A01", received_ns=to_ns(T0) + 123)
    assert point_time_ns(will) == to_ns(T0) + 123


@pytest.mark.parametrize("ns", [0, 1, 999_999, 1_000_000, -1, -999_999, -1_000_000, -1_000_001])
def test_device_time_truncates_towards_earlier_milliseconds(ns: int) -> None:
    assert to_ns(device_time(ns)) == ns - ns % 1_000_000
    assert device_time(ns) <= from_ns(ns)


@pytest.mark.parametrize(
    ("moment", "bound"),
    [
        (datetime(1970, 1, 1, tzinfo=UTC), 0),
        (datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC), 1_000_000),
        (datetime(1970, 1, 1, 0, 0, 0, 1_000, tzinfo=UTC), 1_000_000),
        (datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), 0),
    ],
)
def test_time_bound_is_the_next_whole_millisecond(moment: datetime, bound: int) -> None:
    assert time_bound_ns(moment) == bound


@pytest.mark.parametrize(
    ("pct", "permille"),
    [
        (Decimal("0"), 0),
        (Decimal("0.0"), 0),
        (Decimal("0.1"), 1),
        (Decimal("45.5"), 455),
        (Decimal("45.50"), 455),
        (Decimal("99.9"), 999),
        (Decimal("100"), 1000),
        (Decimal("1E+2"), 1000),
    ],
)
def test_percent_round_trips_through_permille(pct: Decimal, permille: int) -> None:
    assert pct_to_permille(pct) == permille
    assert permille_to_pct(permille) == pct
    assert pct_to_permille(permille_to_pct(permille)) == permille


@pytest.mark.parametrize("permille", [0, 1, 999, 1000])
def test_permille_reads_back_with_one_decimal(permille: int) -> None:
    assert permille_to_pct(permille).as_tuple().exponent == -1


@pytest.mark.parametrize(
    "pct", [Decimal("12.25"), Decimal("0.01"), Decimal("NaN"), Decimal("Infinity")]
)
def test_percent_finer_than_a_tenth_is_refused(pct: Decimal) -> None:
    with pytest.raises(ValueError, match="decimal place"):
        pct_to_permille(pct)


@pytest.mark.parametrize(
    ("message", "device"),
    [
        (sale(), "S-A01"),
        (price(), "P-A01"),
        (batch(), "IN-1"),
        (gate_count(), "G-1"),
        (status(), "S-A01"),
    ],
)
def test_refused_reading_becomes_a_dead_letter_on_its_own_topic(
    message: DeviceMessage, device: str
) -> None:
    refused = reading(message, device)
    letter = reading_as_dead_letter(refused, "refused: test")
    topic = parse_topic(letter.topic)
    assert (topic.market, topic.device, topic.model) == (MARKET, device, type(message))
    assert (letter.market, letter.device, letter.reason) == (MARKET, device, "refused: test")
    assert letter.received_ns == refused.received_ns
    assert type(message).model_validate(json.loads(letter.payload)) == message
