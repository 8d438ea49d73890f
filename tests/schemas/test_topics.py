"""The MQTT topic layout: formatting, parsing and what parsing refuses."""

from __future__ import annotations

import pytest

from schemas.messages import DeviceKind, GateCount, Sale, ScaleStatus
from schemas.topics import CHANNELS, ROOT, SUBSCRIPTION, Topic, TopicError, parse_topic, topic_for


@pytest.mark.parametrize(("kind", "channel"), list(CHANNELS))
def test_every_channel_round_trips(kind: DeviceKind, channel: str) -> None:
    text = topic_for("nanmen", kind, "dev-01.a_b", channel)
    parsed = parse_topic(text)
    assert parsed == Topic("nanmen", kind, "dev-01.a_b", channel)
    assert str(parsed) == text
    assert parsed.model is CHANNELS[(kind, channel)]


def test_layout_is_root_market_kind_device_channel() -> None:
    assert (
        topic_for("nanmen", DeviceKind.SCALE, "S-017", "sale") == "markets/nanmen/scales/S-017/sale"
    )
    assert topic_for("m1", DeviceKind.INTAKE, "in-1", "batch") == "markets/m1/intake/in-1/batch"


def test_parsed_topic_selects_the_payload_model() -> None:
    assert parse_topic("markets/m/scales/s1/sale").model is Sale
    assert parse_topic("markets/m/scales/s1/status").model is ScaleStatus
    assert parse_topic("markets/m/gates/g1/count").model is GateCount


def test_subscription_has_one_level_per_topic_level() -> None:
    assert SUBSCRIPTION.split("/") == [ROOT, "+", "+", "+", "+"]
    example = topic_for("m", DeviceKind.SCREEN, "p1", "price")
    assert len(SUBSCRIPTION.split("/")) == len(example.split("/"))


def test_maximum_length_identifiers_are_accepted() -> None:
    longest = "a" * 32
    assert parse_topic(f"markets/{longest}/scales/{longest}/sale").device == longest


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "markets",
        "markets/m/scales/s1",
        "markets/m/scales/s1/sale/extra",
        "/markets/m/scales/s1/sale",
        "markets/m/scales/s1/sale/",
        "market/m/scales/s1/sale",
        "MARKETS/m/scales/s1/sale",
        "markets//scales/s1/sale",
        "markets/m/scales//sale",
        "markets/+/scales/s1/sale",
        "markets/m/scales/#",
        "markets/m/scales/-s1/sale",
        "markets/m/scales/s 1/sale",
        "markets/m/scales/s1/SALE",
        f"markets/m/scales/{'a' * 33}/sale",
        f"markets/{'a' * 33}/scales/s1/sale",
        "$share/g/markets/m/scales/s1/sale",
    ],
)
def test_malformed_topics_are_rejected(topic: str) -> None:
    with pytest.raises(TopicError, match="does not match"):
        parse_topic(topic)


def test_trailing_newline_is_rejected() -> None:
    with pytest.raises(TopicError, match="does not match"):
        parse_topic("markets/m/scales/s1/sale\n")


def test_unknown_device_kind_is_rejected() -> None:
    with pytest.raises(TopicError, match="unknown device kind 'fridges'"):
        parse_topic("markets/m/fridges/f1/temperature")


@pytest.mark.parametrize(
    "topic",
    [
        "markets/m/scales/s1/count",
        "markets/m/gates/g1/sale",
        "markets/m/screens/p1/batch",
        "markets/m/intake/i1/price",
        "markets/m/scales/s1/price",
    ],
)
def test_channel_of_another_kind_is_rejected(topic: str) -> None:
    with pytest.raises(TopicError, match="devices have no channel"):
        parse_topic(topic)


def test_error_message_truncates_hostile_topics() -> None:
    with pytest.raises(TopicError) as caught:
        parse_topic("x" * 10_000)
    assert len(str(caught.value)) < 300


def test_topic_error_is_a_value_error() -> None:
    assert issubclass(TopicError, ValueError)
