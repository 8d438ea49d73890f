"""Commands stallwatch sends to devices, version 1: the state a device must hold.

A command is not a reading. Devices *receive* it on their own command topic,
``markets/{market}/{kind}/{device}/command``, published by stallwatch with QoS 1 and
**retained**, so a device that was offline gets it when it reconnects. It is not one of
the channels devices publish on (:data:`schemas.topics.CHANNELS`): the broker ACL built
from those would otherwise let a device publish to its own command topic and lift its
own lock.

Each command carries the device's **whole** set of suspended batches, not a change: the
broker keeps one retained message per topic, so a scale reconnecting after three locks
must find all three in the last one. Lifting the last lock publishes an empty list
(never a zero-length payload, which would delete the retained message and leave the
device unable to tell "nothing suspended" from "never told").

``msg_id`` only increases per device; a device applies a command only when its
``msg_id`` is above the last one it applied (a retained copy of an older state arriving
late changes nothing).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.messages import DeviceKind, MsgId, Plu, TraceCode
from schemas.topics import ROOT, topic_for

COMMAND_CHANNEL: Final = "command"
#: The devices that take commands: the scale stops selling, the screen shows 暂停销售.
COMMANDED_KINDS: Final = (DeviceKind.SCALE, DeviceKind.SCREEN)
#: More locked batches than any stall holds at once; bounds the retained payload.
MAX_SUSPENDED: Final = 256


class SuspensionReason(StrEnum):
    #: the batch's latest pesticide-residue rapid test failed
    RAPID_TEST_FAILED = "rapid_test_failed"
    #: a manager suspended it (a recall, a complaint), with a written reason on record
    MANAGER = "manager"


class Suspension(BaseModel):
    """A batch of one product the device must not sell (scale) or must show as suspended."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trace_code: TraceCode = Field(description="Trace code of the batch.")
    plu: Plu = Field(description="Product look-up code of the batch.")
    since: AwareDatetime = Field(description="When the batch was locked.")
    reason: SuspensionReason


class SuspendedBatches(BaseModel):
    """The batches a scale or price screen must hold suspended now (topic
    ``.../scales/{scale}/command`` or ``.../screens/{screen}/command``), all of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = Field(default=1, description="Contract version of this payload.")
    msg_id: MsgId = Field(description="Only ever increases per device; older ones are ignored.")
    ts: AwareDatetime = Field(description="When stallwatch published this state.")
    suspended: Annotated[tuple[Suspension, ...], Field(max_length=MAX_SUSPENDED)] = Field(
        description="Every batch suspended on this device now; empty when none is."
    )

    @model_validator(mode="after")
    def _each_batch_once(self) -> SuspendedBatches:
        keys = [(one.trace_code, one.plu) for one in self.suspended]
        if len(set(keys)) != len(keys):
            raise ValueError("a batch and product is listed twice in suspended")
        return self


#: (device kind) -> the command it receives
COMMANDS: Final[dict[DeviceKind, type[SuspendedBatches]]] = {
    kind: SuspendedBatches for kind in COMMANDED_KINDS
}


def command_topic(market: str, kind: DeviceKind, device: str) -> str:
    """The device's command topic; only scales and screens take commands."""
    if kind not in COMMANDS:
        raise ValueError(f"{kind.value} devices take no commands")
    return topic_for(market, kind, device, COMMAND_CHANNEL)


def is_command_topic(topic: str) -> bool:
    """Whether ``topic`` is a device's command topic, which ingest and the live view see
    (they subscribe to every five-level topic under ``markets/``) and must skip."""
    parts = topic.split("/")
    return len(parts) == 5 and parts[0] == ROOT and parts[4] == COMMAND_CHANNEL
