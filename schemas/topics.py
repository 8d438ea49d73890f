"""MQTT topic layout, shared by devices, simulators, ingest and the broker ACL.

``markets/{market}/{kind}/{device}/{channel}`` where ``kind``/``channel`` is one
of the pairs in :data:`CHANNELS`. Market and device ids are the registry's
identifiers, so a topic never contains wildcards or separators.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.messages import (
    BatchIntake,
    DeviceKind,
    DeviceMessage,
    GateCount,
    PriceSet,
    RapidTestReport,
    Sale,
    ScaleStatus,
)

ROOT = "markets"

#: (device kind, channel) -> payload model
CHANNELS: dict[tuple[DeviceKind, str], type[DeviceMessage]] = {
    (DeviceKind.SCALE, "sale"): Sale,
    (DeviceKind.SCALE, "status"): ScaleStatus,
    (DeviceKind.GATE, "count"): GateCount,
    (DeviceKind.SCREEN, "price"): PriceSet,
    (DeviceKind.INTAKE, "batch"): BatchIntake,
    (DeviceKind.INTAKE, "test"): RapidTestReport,
}

#: One subscription covers every channel: all topics have exactly five levels.
SUBSCRIPTION = f"{ROOT}/+/+/+/+"

_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}"
_TOPIC_RE = re.compile(rf"^{ROOT}/({_ID})/([a-z]+)/({_ID})/([a-z]+)$")


@dataclass(frozen=True, slots=True)
class Topic:
    market: str
    kind: DeviceKind
    device: str
    channel: str

    @property
    def model(self) -> type[DeviceMessage]:
        return CHANNELS[(self.kind, self.channel)]

    def __str__(self) -> str:
        return topic_for(self.market, self.kind, self.device, self.channel)


class TopicError(ValueError):
    """The topic is not one of the contract's topics."""


def topic_for(market: str, kind: DeviceKind, device: str, channel: str) -> str:
    return f"{ROOT}/{market}/{kind.value}/{device}/{channel}"


def parse_topic(topic: str) -> Topic:
    match = _TOPIC_RE.fullmatch(topic)
    if match is None:
        raise TopicError(
            f"topic {topic[:200]!r} does not match {ROOT}/<market>/<kind>/<device>/<channel>"
        )
    market, kind_text, device, channel = match.groups()
    try:
        kind = DeviceKind(kind_text)
    except ValueError:
        raise TopicError(f"unknown device kind {kind_text!r}") from None
    if (kind, channel) not in CHANNELS:
        raise TopicError(f"{kind.value} devices have no channel {channel!r}")
    return Topic(market, kind, device, channel)
