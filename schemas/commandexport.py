"""The commands devices receive (``schemas.commands``) in the exported contract: their
JSON Schema and their AsyncAPI channels, operations and examples.

``schemas.export`` merges these into the files it writes; kept apart because commands
run the other way (stallwatch publishes, the device receives) and are retained.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from schemas.commands import (
    COMMAND_CHANNEL,
    COMMANDED_KINDS,
    SuspendedBatches,
    Suspension,
    SuspensionReason,
    command_topic,
)
from schemas.messages import SCHEMA_VERSION, DeviceKind

COMMAND_USER: Final = "stallwatch-command"
COMMAND_MESSAGE: Final = "suspended-batches"
COMMAND_SCHEMA_FILE: Final = f"{COMMAND_MESSAGE}.v{SCHEMA_VERSION}.json"
_RETAINED_QOS1: Final = {"mqtt": {"qos": 1, "retain": True, "bindingVersion": "0.2.0"}}
_CST = timezone(timedelta(hours=8))
_NOON = datetime(2025, 5, 17, 12, 3, 40, tzinfo=_CST)

_RULES = (
    "The payload is the device's whole current set, never a change: apply it in place of "
    "what you hold, and only when its `msg_id` is above the last one applied (a late or "
    "repeated copy changes nothing). A scale must refuse to sell a listed `plu` under a "
    "listed `trace_code`; a price screen shows the product as suspended (暂停销售). "
    "An empty list lifts every suspension. The message is retained: subscribe with QoS 1 "
    "on every connect and the broker sends the current one at once."
)


@dataclass(frozen=True, slots=True)
class CommandChannel:
    kind: DeviceKind
    device_parameter: str

    @property
    def name(self) -> str:
        return f"{self.device_parameter}-command"

    @property
    def address(self) -> str:
        return command_topic("{market}", self.kind, "{" + self.device_parameter + "}")


def command_channels(device_parameter: dict[DeviceKind, str]) -> list[CommandChannel]:
    return [CommandChannel(kind, device_parameter[kind]) for kind in COMMANDED_KINDS]


def command_examples() -> list[tuple[str, str, SuspendedBatches]]:
    locked = SuspendedBatches(
        msg_id=1_747_454_620_000_000,
        ts=_NOON,
        suspended=(
            Suspension(
                trace_code="SG20250516-0042",
                plu="1001",
                since=_NOON - timedelta(seconds=1),
                reason=SuspensionReason.RAPID_TEST_FAILED,
            ),
        ),
    )
    lifted = SuspendedBatches(
        msg_id=1_747_461_000_000_000, ts=_NOON + timedelta(hours=2), suspended=()
    )
    return [
        ("locked", "The tomatoes that failed their noon spot check may not be sold.", locked),
        ("lifted", "A manager lifted the lock after a passed re-test: nothing suspended.", lifted),
    ]


def command_jsonschema(dialect: str) -> dict[str, Any]:
    body = SuspendedBatches.model_json_schema(mode="validation")
    header: dict[str, Any] = {
        "$schema": dialect,
        "$id": f"urn:stallwatch:device-contract:{COMMAND_MESSAGE}:v{SCHEMA_VERSION}",
        "title": f"SuspendedBatches (stallwatch device contract v{SCHEMA_VERSION})",
        "description": "\n\n".join(
            [
                inspect.getdoc(SuspendedBatches) or "",
                f"Topics: `{command_topic('{market}', DeviceKind.SCALE, '{scale}')}` and "
                f"`{command_topic('{market}', DeviceKind.SCREEN, '{screen}')}`, QoS 1, "
                "retained, JSON (UTF-8), published by stallwatch.",
                _RULES,
            ]
        ),
    }
    return header | {key: value for key, value in body.items() if key not in header}


def command_channel_documents(channels: list[CommandChannel]) -> dict[str, Any]:
    return {
        channel.name: {
            "address": channel.address,
            "title": f"SuspendedBatches for a {channel.device_parameter}",
            "description": inspect.getdoc(SuspendedBatches),
            "parameters": {
                "market": {"$ref": "#/components/parameters/market"},
                channel.device_parameter: {
                    "description": (
                        f"Id of the {channel.device_parameter}: it may subscribe to this one "
                        "command topic, its own, and publish to no command topic."
                    )
                },
            },
            "messages": {COMMAND_MESSAGE: {"$ref": f"#/components/messages/{COMMAND_MESSAGE}"}},
        }
        for channel in channels
    }


def command_operations(channels: list[CommandChannel]) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for channel in channels:
        ref = [{"$ref": f"#/channels/{channel.name}/messages/{COMMAND_MESSAGE}"}]
        kind = channel.device_parameter.capitalize()
        operations[f"receive{kind}Command"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel.name}"},
            "title": f"{kind} receives its suspended batches",
            "summary": f"A {channel.device_parameter} subscribes to its own `{COMMAND_CHANNEL}` "
            "topic.",
            "description": _RULES,
            "tags": [{"name": "device"}],
            "bindings": _RETAINED_QOS1,
            "messages": ref,
        }
        operations[f"lock{kind}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel.name}"},
            "title": f"stallwatch tells a {channel.device_parameter} what is suspended",
            "summary": "Published retained at QoS 1 when a batch is locked or unlocked, and "
            "again at stallwatch's start.",
            "description": (
                f"stallwatch publishes as `{COMMAND_USER}`, the only user that may publish to "
                "command topics, and counts a command as sent once the broker acknowledged it."
            ),
            "tags": [{"name": "stallwatch"}],
            "bindings": _RETAINED_QOS1,
            "messages": ref,
        }
    return operations


def command_message_document() -> dict[str, Any]:
    return {
        "name": COMMAND_MESSAGE,
        "title": "SuspendedBatches",
        "summary": (inspect.getdoc(SuspendedBatches) or "").splitlines()[0],
        "description": _RULES,
        "contentType": "application/json",
        "payload": {"$ref": "#/components/schemas/SuspendedBatches"},
        "examples": [
            {"name": name, "summary": summary, "payload": command.model_dump(mode="json")}
            for name, summary, command in command_examples()
        ],
    }
