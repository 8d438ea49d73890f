"""Export the device contracts as JSON Schema files and an AsyncAPI 3.0 document.

The pydantic models in :mod:`schemas.messages` are the source of truth. This
module renders them for people and tools that do not run Python: one JSON
Schema (draft 2020-12) per channel in ``schemas/jsonschema/<name>.v1.json`` and
``schemas/asyncapi.yaml`` describing the broker, topics, operations, security
and examples. Rendering is deterministic, so a test can compare the committed
files with a fresh rendering byte for byte::

    python -m schemas.export            # rewrite the committed files
    python -m schemas.export --check    # exit 1 and name the stale files
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from schemas.commandexport import (
    COMMAND_MESSAGE,
    COMMAND_SCHEMA_FILE,
    command_channel_documents,
    command_channels,
    command_jsonschema,
    command_message_document,
    command_operations,
)
from schemas.commands import SuspendedBatches
from schemas.messages import (
    MAX_ROUNDING_DOWN_FEN,
    MAX_TOTAL_FEN,
    SCHEMA_VERSION,
    BatchIntake,
    DeviceKind,
    DeviceMessage,
    GateCount,
    PriceSet,
    Promotion,
    RapidTest,
    RapidTestReport,
    RapidTestResult,
    Sale,
    ScaleStatus,
)
from schemas.topics import CHANNELS, SUBSCRIPTION, topic_for

PACKAGE_DIR = Path(__file__).resolve().parent
JSONSCHEMA_DIR = "jsonschema"
ASYNCAPI_FILE = "asyncapi.yaml"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
MQTT_BINDING_VERSION = "0.2.0"
INGEST_USER = "stallwatch-ingest"

#: Name of the device id in each kind's topic address, e.g. ``{scale}``.
DEVICE_PARAMETER: dict[DeviceKind, str] = {
    DeviceKind.SCALE: "scale",
    DeviceKind.GATE: "gate",
    DeviceKind.SCREEN: "screen",
    DeviceKind.INTAKE: "station",
}

_COMMON_RULES = (
    "No key may appear twice in an object, at any depth (parsers disagree on which value "
    "counts). Every timestamp must carry a UTC offset; integers must be JSON integers (not "
    "strings, floats or booleans). Free text is trimmed of surrounding whitespace before "
    "its length is checked, and must not contain control characters (U+0000–U+001F, "
    "U+007F–U+009F), line or paragraph separators (U+2028, U+2029) or bidi controls "
    "(U+202A–U+202E, U+2066–U+2069). A `msg_id` already used by the device with other "
    "content is rejected; the same content again is a redelivery and stored once."
)
_BEYOND_SCHEMA = "Enforced by stallwatch beyond this schema:"

#: Cross-field rules the models enforce that JSON Schema cannot state.
_MODEL_RULES: dict[type[DeviceMessage], str] = {
    Sale: (
        "`total_fen` must equal `weight_g` × `unit_price_fen_per_kg` / 1000 rounded half "
        f"up, or be up to {MAX_ROUNDING_DOWN_FEN} fen lower (抹零, rounding down to jiao "
        "or yuan), and never more than 1 fen higher. So `total_fen` ≤ "
        f"{MAX_TOTAL_FEN} also bounds weight × price: a weighing worth more than "
        f"¥{MAX_TOTAL_FEN // 100:,} is rejected."
    ),
    PriceSet: (
        "`promo.price_fen_per_kg` must be below `price_fen_per_kg`, and `promo.until` after `ts`."
    ),
    BatchIntake: "`rapid_test.inhibition_pct` has at most one decimal place.",
    RapidTestReport: (
        "`rapid_test.inhibition_pct` has at most one decimal place. A report never replaces "
        "the batch's intake test or an earlier report: all are kept, and the batch's state "
        "follows the latest by `ts`."
    ),
}

_KEBAB_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def channel_name(model: type[DeviceMessage]) -> str:
    """Stable channel/file name of a message type: ``ScaleStatus`` -> ``scale-status``."""
    return _KEBAB_BOUNDARY.sub("-", model.__name__).lower()


def schema_id(model: type[DeviceMessage]) -> str:
    return f"urn:stallwatch:device-contract:{channel_name(model)}:v{SCHEMA_VERSION}"


def jsonschema_file_name(model: type[DeviceMessage]) -> str:
    return f"{channel_name(model)}.v{SCHEMA_VERSION}.json"


@dataclass(frozen=True, slots=True)
class Channel:
    """One entry of :data:`schemas.topics.CHANNELS`, with the names the documents use."""

    kind: DeviceKind
    suffix: str
    model: type[DeviceMessage]

    @property
    def name(self) -> str:
        return channel_name(self.model)

    @property
    def device_parameter(self) -> str:
        return DEVICE_PARAMETER[self.kind]

    @property
    def address(self) -> str:
        return topic_for("{market}", self.kind, "{" + self.device_parameter + "}", self.suffix)


def channels() -> list[Channel]:
    return [Channel(kind, suffix, model) for (kind, suffix), model in CHANNELS.items()]


# -- examples ------------------------------------------------------------------

_CST = timezone(timedelta(hours=8))
_MORNING = datetime(2025, 5, 17, 7, 42, 13, 250_000, tzinfo=_CST)
_LAST_WILL_EXAMPLE = "last-will"


@dataclass(frozen=True, slots=True)
class Example:
    name: str
    summary: str
    message: DeviceMessage

    def payload(self) -> dict[str, Any]:
        dumped: dict[str, Any] = self.message.model_dump(mode="json", exclude_none=True)
        return dumped


def examples() -> dict[type[DeviceMessage], list[Example]]:
    """Valid example payloads per message type (built from the models, so they validate)."""
    return {
        Sale: [
            Example(
                "sale",
                "1.25 kg of tomatoes at ¥6/斤 (1200 fen/kg): ¥15.00.",
                Sale(
                    msg_id=18_204,
                    ts=_MORNING,
                    vendor="v-chen",
                    plu="1001",
                    weight_g=1_250,
                    tare_g=12,
                    unit_price_fen_per_kg=1_200,
                    total_fen=1_500,
                    trace_code="SG20250516-0042",
                ),
            ),
            Example(
                "sale-rounded-down",
                "¥14.56 rounded down to ¥14.50 (抹零).",
                Sale(
                    msg_id=18_205,
                    ts=_MORNING + timedelta(seconds=41),
                    vendor="v-chen",
                    plu="1002",
                    weight_g=1_234,
                    unit_price_fen_per_kg=1_180,
                    total_fen=1_450,
                    trace_code="SG20250516-0043",
                ),
            ),
        ],
        ScaleStatus: [
            Example(
                "heartbeat",
                "Periodic status of a healthy scale.",
                ScaleStatus(
                    msg_id=18_206,
                    ts=_MORNING + timedelta(minutes=1),
                    online=True,
                    zero_ok=True,
                    calibration_due=date(2025, 11, 30),
                    seal_intact=True,
                ),
            ),
            Example(
                _LAST_WILL_EXAMPLE,
                "Last Will set at connect time; the broker publishes it when the scale drops.",
                ScaleStatus(
                    msg_id=18_100, ts=_MORNING - timedelta(hours=1), online=False, will=True
                ),
            ),
        ],
        GateCount: [
            Example(
                "counters",
                "Cumulative counters of the north gate.",
                GateCount(msg_id=9_310, ts=_MORNING, in_total=48_213, out_total=47_902),
            )
        ],
        PriceSet: [
            Example(
                "price",
                "Regular price ¥8/斤 (1600 fen/kg).",
                PriceSet(
                    msg_id=512, ts=_MORNING, vendor="v-chen", plu="1001", price_fen_per_kg=1_600
                ),
            ),
            Example(
                "price-with-promotion",
                "Regular ¥8/斤 with a morning offer of ¥6.40/斤.",
                PriceSet(
                    msg_id=513,
                    ts=_MORNING,
                    vendor="v-chen",
                    plu="1001",
                    price_fen_per_kg=1_600,
                    promo=Promotion(
                        price_fen_per_kg=1_280, text="早市特价", until=_MORNING + timedelta(hours=3)
                    ),
                ),
            ),
        ],
        BatchIntake: [
            Example(
                "batch",
                "250 kg of tomatoes from Shouguang that passed the rapid test.",
                BatchIntake(
                    msg_id=77,
                    ts=_MORNING - timedelta(hours=2),
                    trace_code="SG20250516-0042",
                    vendor="v-chen",
                    plu="1001",
                    origin="山东寿光",
                    supplier="寿光蔬菜批发市场 王记",
                    quantity_g=250_000,
                    certificate_no="HG-370783-2025-0516-118",
                    rapid_test=RapidTest(
                        result=RapidTestResult.PASS, inhibition_pct=Decimal("12.5")
                    ),
                ),
            ),
            Example(
                "batch-untested",
                "120 kg of pork belly, not rapid-tested at intake (markets test a sample).",
                BatchIntake(
                    msg_id=79,
                    ts=_MORNING - timedelta(hours=1, minutes=55),
                    trace_code="SG20250516-0051",
                    vendor="v-liu",
                    plu="2001",
                    origin="河南漯河",
                    supplier="双汇冷链配送 3号车",
                    quantity_g=120_000,
                    certificate_no="DQ-4111-2025-0516-027",
                ),
            ),
        ],
        RapidTestReport: [
            Example(
                "retest",
                "A spot check at noon of the same tomatoes: 61.0 % inhibition, failed.",
                RapidTestReport(
                    msg_id=78,
                    ts=_MORNING + timedelta(hours=4),
                    trace_code="SG20250516-0042",
                    vendor="v-chen",
                    plu="1001",
                    rapid_test=RapidTest(
                        result=RapidTestResult.FAIL, inhibition_pct=Decimal("61.0")
                    ),
                ),
            )
        ],
    }


# -- JSON Schema -----------------------------------------------------------------


def _doc(model: type[DeviceMessage]) -> str:
    return inspect.getdoc(model) or model.__name__


def _rules_beyond_schema(model: type[DeviceMessage]) -> str:
    rules = [_MODEL_RULES[model]] if model in _MODEL_RULES else []
    return " ".join([_BEYOND_SCHEMA, *rules, _COMMON_RULES])


def _describe(model: type[DeviceMessage], channel: Channel) -> str:
    parts = [
        _doc(model),
        f"Topic: `{channel.address}`, QoS 1, JSON (UTF-8).",
        _rules_beyond_schema(model),
    ]
    return "\n\n".join(parts)


def message_jsonschema(channel: Channel) -> dict[str, Any]:
    """The standalone JSON Schema (draft 2020-12) of one channel's payload."""
    body = channel.model.model_json_schema(mode="validation")
    header: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": schema_id(channel.model),
        "title": f"{channel.model.__name__} (stallwatch device contract v{SCHEMA_VERSION})",
        "description": _describe(channel.model, channel),
    }
    return header | {key: value for key, value in body.items() if key not in header}


def _dump_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def render_jsonschemas() -> dict[str, str]:
    """File name (``sale.v1.json``) -> file content, one per channel, and the command's."""
    files = {
        jsonschema_file_name(channel.model): _dump_json(message_jsonschema(channel))
        for channel in channels()
    }
    files[COMMAND_SCHEMA_FILE] = _dump_json(command_jsonschema(JSON_SCHEMA_DIALECT))
    return files


# -- AsyncAPI ------------------------------------------------------------------------

_SECURITY_SCHEME = "mqttUserPassword"
_QOS1_OPERATION_BINDING = {
    "mqtt": {"qos": 1, "retain": False, "bindingVersion": MQTT_BINDING_VERSION}
}


def _info() -> dict[str, Any]:
    return {
        "title": "stallwatch device contracts",
        "version": f"{SCHEMA_VERSION}.0.0",
        "description": (
            "MQTT contracts between the devices of a smart farmers' market (智慧农贸市场) "
            "and stallwatch: stall scales publish sales and status, gate counters publish "
            "cumulative foot traffic, price screens publish prices and promotions, intake "
            "stations publish incoming produce batches.\n\n"
            "Money is integer fen (分); unit prices are fen per kilogram; weights are integer "
            "grams; timestamps are RFC 3339 with an explicit offset. Every message carries "
            "`msg_id`, a per-device sequence number: with the device time it identifies the "
            "reading, so a redelivered message overwrites itself instead of counting twice.\n\n"
            "Generated from `schemas/messages.py` by `python -m schemas.export`; do not edit."
        ),
        "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        "tags": [
            {"name": "device", "description": "Operations performed by market devices."},
            {"name": "ingest", "description": "Operations performed by stallwatch ingest."},
            {
                "name": "stallwatch",
                "description": "Commands stallwatch sends to devices (retained).",
            },
        ],
    }


def _servers() -> dict[str, Any]:
    return {
        "broker": {
            "host": "{host}:{port}",
            "protocol": "mqtt",
            "protocolVersion": "5.0",
            "title": "Market MQTT broker",
            "description": (
                "Mosquitto 2 with users, client ids and access rules generated from the market "
                "files (`stallwatch broker-auth`, dynamic-security plugin). MQTT 5 is preferred: "
                "3.1.1 clients work the same way but cannot be told that a publish was refused."
            ),
            "variables": {
                "host": {"default": "localhost", "description": "Broker host name."},
                "port": {"default": "1883", "description": "Broker TCP port."},
            },
            "security": [{"$ref": f"#/components/securitySchemes/{_SECURITY_SCHEME}"}],
        }
    }


def _channel_document(channel: Channel) -> dict[str, Any]:
    device = channel.device_parameter
    return {
        "address": channel.address,
        "title": channel.model.__name__,
        "description": _doc(channel.model),
        "parameters": {
            "market": {"$ref": "#/components/parameters/market"},
            device: {
                "description": (
                    f"Id of the {device} in the market file; it is also the device's MQTT "
                    "user name and client id, and the broker lets it publish only under its "
                    "own id."
                ),
            },
        },
        "messages": {channel.name: {"$ref": f"#/components/messages/{channel.name}"}},
    }


def _last_will(channel: Channel) -> dict[str, Any]:
    will = next(e for e in examples()[ScaleStatus] if e.name == _LAST_WILL_EXAMPLE)
    return {
        "topic": channel.address,
        "qos": 1,
        "retain": False,
        "payload": will.payload(),
        "description": (
            "Register this Last Will on CONNECT. The broker publishes it if the scale "
            "disconnects without DISCONNECT (power or network loss, keep-alive timeout). "
            "Its `ts` and `msg_id` are those of connect time; ingest stamps it on arrival."
        ),
    }


def _send_operation(channel: Channel) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": "send",
        "channel": {"$ref": f"#/channels/{channel.name}"},
        "title": f"Device publishes {channel.model.__name__}",
        "summary": f"A {channel.device_parameter} publishes on its own `{channel.suffix}` topic.",
        "description": (
            "Publish with QoS 1 and retain off, and keep the message until PUBACK arrives: "
            "resending after a reconnect is safe because `msg_id` and `ts` identify it. "
            "Never publish under another device's id: the broker drops the message, answers "
            "PUBACK reason code 0x87 (Not authorized; on MQTT 3.1.1 a plain PUBACK) and then "
            "closes the connection."
        ),
        "tags": [{"name": "device"}],
        "bindings": _QOS1_OPERATION_BINDING,
        "messages": [{"$ref": f"#/channels/{channel.name}/messages/{channel.name}"}],
    }
    if channel.model is ScaleStatus:
        operation["x-last-will"] = _last_will(channel)
    return operation


def _receive_operation(channel: Channel) -> dict[str, Any]:
    return {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{channel.name}"},
        "title": f"Ingest receives {channel.model.__name__}",
        "summary": f"stallwatch ingest validates and stores {channel.name} messages.",
        "description": (
            f"Ingest connects as `{INGEST_USER}` with a persistent session (MQTT 5 clean "
            f"start off, session expiry set) and subscribes to `{SUBSCRIPTION}` with QoS 1, "
            f"or to `$share/<group>/{SUBSCRIPTION}` when several instances split the load. "
            "It acknowledges a message only once it is durable; messages that fail "
            "validation are kept in the dead-letter store with the reason."
        ),
        "tags": [{"name": "ingest"}],
        "bindings": _QOS1_OPERATION_BINDING,
        "messages": [{"$ref": f"#/channels/{channel.name}/messages/{channel.name}"}],
    }


def _operation_id(action: str, channel: Channel) -> str:
    return f"{action}{channel.model.__name__}"


def _operations() -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for channel in channels():
        operations[_operation_id("send", channel)] = _send_operation(channel)
        operations[_operation_id("ingest", channel)] = _receive_operation(channel)
    return operations | command_operations(command_channels(DEVICE_PARAMETER))


def _message_document(channel: Channel) -> dict[str, Any]:
    return {
        "name": channel.name,
        "title": channel.model.__name__,
        "summary": _doc(channel.model).splitlines()[0],
        "description": _rules_beyond_schema(channel.model),
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{channel.model.__name__}"},
        "examples": [
            {"name": example.name, "summary": example.summary, "payload": example.payload()}
            for example in examples()[channel.model]
        ],
    }


def _component_schemas() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (channel.model, "validation") for channel in channels()
    ]
    _, definitions = models_json_schema(
        [*models, (SuspendedBatches, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = definitions["$defs"]
    return dict(sorted(schemas.items()))


def _components() -> dict[str, Any]:
    return {
        "schemas": _component_schemas(),
        "messages": {channel.name: _message_document(channel) for channel in channels()}
        | {COMMAND_MESSAGE: command_message_document()},
        "parameters": {
            "market": {
                "description": "Market id from the market file (`[market] id`).",
                "examples": ["nanmen"],
            }
        },
        "securitySchemes": {
            _SECURITY_SCHEME: {
                "type": "userPassword",
                "description": (
                    "Every device has its own user: the MQTT user name is the device id from "
                    "the market file and the password is generated by `stallwatch broker-auth`. "
                    "A device must connect with its device id as client id; any other client id "
                    "is refused (CONNACK 0x87). Services use `stallwatch-ingest` and "
                    "`stallwatch-api` (both read `markets/#`) with client ids starting with "
                    "`stallwatch-`. Devices may write only their own topics and read nothing."
                ),
            }
        },
    }


def asyncapi_document() -> dict[str, Any]:
    return {
        "asyncapi": "3.0.0",
        "id": "urn:stallwatch:device-contracts",
        "info": _info(),
        "defaultContentType": "application/json",
        "servers": _servers(),
        "channels": {channel.name: _channel_document(channel) for channel in channels()}
        | command_channel_documents(command_channels(DEVICE_PARAMETER)),
        "operations": _operations(),
        "components": _components(),
    }


_GENERATED_HEADER = (
    "# Generated by `python -m schemas.export` from schemas/messages.py. Do not edit.\n"
)


class _Dumper(yaml.SafeDumper):
    """Safe YAML with multi-line strings as literal blocks, for a readable diff."""

    def ignore_aliases(self, data: Any) -> bool:
        # Shared sub-dicts (the QoS binding) must be written out, not as &id001 anchors.
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def render_asyncapi() -> str:
    rendered: str = yaml.dump(
        asyncapi_document(),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=False,
    )
    return _GENERATED_HEADER + rendered


# -- files -------------------------------------------------------------------------


def rendered_files() -> dict[Path, str]:
    """Relative path under the output directory -> content, for every generated file."""
    files = {Path(JSONSCHEMA_DIR) / name: text for name, text in render_jsonschemas().items()}
    files[Path(ASYNCAPI_FILE)] = render_asyncapi()
    return files


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _unexpected_schema_files(out_dir: Path, expected: dict[Path, str]) -> list[Path]:
    """JSON files in the schema folder that no channel renders any more (renamed channels)."""
    folder = out_dir / JSONSCHEMA_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.json") if p.relative_to(out_dir) not in expected)


def stale_files(out_dir: Path) -> list[Path]:
    """Generated files that are missing, differ from a fresh rendering, or should not exist."""
    expected = rendered_files()
    differing = [out_dir / rel for rel, text in expected.items() if _read(out_dir / rel) != text]
    return differing + _unexpected_schema_files(out_dir, expected)


def export_all(out_dir: Path) -> list[Path]:
    """Write every generated file under ``out_dir``; returns their paths."""
    expected = rendered_files()
    for leftover in _unexpected_schema_files(out_dir, expected):
        leftover.unlink()
    written: list[Path] = []
    for rel, text in expected.items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if _read(path) != text:
            path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas.export",
        description="Export the device contracts as JSON Schema and AsyncAPI 3.0 files.",
    )
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if any file is stale"
    )
    parser.add_argument(
        "--out", type=Path, default=PACKAGE_DIR, help="output directory (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.out)
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        if stale:
            print("run `python -m schemas.export` to regenerate", file=sys.stderr)
        return 1 if stale else 0
    for path in export_all(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
