"""The committed JSON Schema and AsyncAPI files match the models and say what the models say."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from schemas import commandexport, export, messages
from schemas.commands import SuspendedBatches
from schemas.messages import DeviceKind, DeviceMessage, ScaleStatus
from schemas.topics import CHANNELS, parse_topic
from stallwatch import brokerauth

SCHEMA_DIR = Path(export.__file__).resolve().parent
ASYNCAPI = SCHEMA_DIR / export.ASYNCAPI_FILE
CHANNEL_LIST = export.channels()


def committed_jsonschema(model: type[DeviceMessage]) -> dict[str, Any]:
    path = SCHEMA_DIR / export.JSONSCHEMA_DIR / export.jsonschema_file_name(model)
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    return loaded


def asyncapi_examples(
    document: dict[str, Any], channel: export.Channel
) -> Iterator[tuple[str, dict[str, Any]]]:
    message = document["components"]["messages"][channel.name]
    for example in message["examples"]:
        yield example["name"], example["payload"]


# -- in sync -------------------------------------------------------------------


def test_committed_files_equal_a_fresh_rendering() -> None:
    stale = export.stale_files(SCHEMA_DIR)
    assert stale == [], "run `python -m schemas.export` to regenerate"


def test_rendering_is_deterministic() -> None:
    assert export.rendered_files() == export.rendered_files()


def test_check_mode_names_stale_files_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export.main(["--out", str(tmp_path)]) == 0
    assert export.main(["--out", str(tmp_path), "--check"]) == 0
    sale = tmp_path / "jsonschema" / "sale.v1.json"
    sale.write_text(sale.read_text(encoding="utf-8").replace("Sale", "Sold"), encoding="utf-8")
    (tmp_path / "jsonschema" / "old-name.v1.json").write_text("{}", encoding="utf-8")
    capsys.readouterr()
    assert export.main(["--out", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert f"stale: {sale}" in err
    assert "old-name.v1.json" in err


def test_export_replaces_stale_and_removes_orphaned_files(tmp_path: Path) -> None:
    orphan = tmp_path / "jsonschema" / "old-name.v1.json"
    orphan.parent.mkdir()
    orphan.write_text("{}", encoding="utf-8")
    written = export.export_all(tmp_path)
    assert not orphan.exists()
    assert sorted(p.relative_to(tmp_path) for p in written) == sorted(export.rendered_files())
    assert export.stale_files(tmp_path) == []


def test_one_schema_file_per_channel_with_the_agreed_names() -> None:
    names = sorted(export.render_jsonschemas())
    assert names == sorted(
        [
            "sale.v1.json",
            "scale-status.v1.json",
            "gate-count.v1.json",
            "price-set.v1.json",
            "batch-intake.v1.json",
            "rapid-test-report.v1.json",
            "suspended-batches.v1.json",  # the command scales and screens receive
        ]
    )
    assert len(names) == len(CHANNELS) + 1


def test_documents_name_the_ingest_user_the_broker_acl_grants() -> None:
    assert export.INGEST_USER == brokerauth.INGEST_USER


def test_every_device_kind_has_an_address_parameter_name() -> None:
    assert set(export.DEVICE_PARAMETER) == set(DeviceKind)


# -- JSON Schema -------------------------------------------------------------------


@pytest.mark.parametrize("channel", CHANNEL_LIST, ids=lambda c: c.name)
def test_committed_schema_is_valid_draft_2020_12(channel: export.Channel) -> None:
    schema = committed_jsonschema(channel.model)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == f"urn:stallwatch:device-contract:{channel.name}:v1"
    assert schema["title"].startswith(channel.model.__name__)
    assert channel.address in schema["description"]
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("channel", CHANNEL_LIST, ids=lambda c: c.name)
def test_asyncapi_examples_validate_against_schema_and_model(
    channel: export.Channel, asyncapi: dict[str, Any]
) -> None:
    validator = jsonschema.Draft202012Validator(committed_jsonschema(channel.model))
    examples = list(asyncapi_examples(asyncapi, channel))
    assert examples
    for name, payload in examples:
        validator.validate(payload)
        # json.dumps also proves YAML kept every value a JSON type (no YAML dates).
        parsed = channel.model.model_validate_json(json.dumps(payload))
        assert parsed.model_dump(mode="json", exclude_none=True) == payload, name


def invalid_payload(channel: export.Channel, asyncapi: dict[str, Any]) -> dict[str, Any]:
    _, payload = next(asyncapi_examples(asyncapi, channel))
    return payload | {"msg_id": -1, "unexpected": True}


@pytest.mark.parametrize("channel", CHANNEL_LIST, ids=lambda c: c.name)
def test_schema_rejects_a_bad_payload(channel: export.Channel, asyncapi: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(committed_jsonschema(channel.model))
    bad = invalid_payload(channel, asyncapi)
    failed = {tuple(error.path) or error.validator for error in validator.iter_errors(bad)}
    assert failed == {("msg_id",), "additionalProperties"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("weight_g", -5),
        ("weight_g", True),
        ("unit_price_fen_per_kg", 2_000_001),
        ("ts", 17),
        ("trace_code", "-SG20250516-0042"),  # the first character must be a letter or digit
        ("trace_code", "_SG20250516-0042"),
        ("total_fen", 10_000_001),
        ("total_fen", -1),
    ],
)
def test_sale_schema_rejects_what_the_model_rejects(
    field: str, value: object, asyncapi: dict[str, Any]
) -> None:
    sale = next(c for c in CHANNEL_LIST if c.name == "sale")
    validator = jsonschema.Draft202012Validator(committed_jsonschema(sale.model))
    _, payload = next(asyncapi_examples(asyncapi, sale))
    errors = list(validator.iter_errors(payload | {field: value}))
    assert [tuple(error.path) for error in errors] == [(field,)]


@pytest.mark.parametrize(
    ("test", "accepted"),
    [
        (None, True),  # not tested at intake
        ({"result": "fail", "inhibition_pct": "61.0"}, True),
        ({"result": "pass"}, False),  # half a test
        ({"inhibition_pct": "12.5"}, False),
        ({}, False),
    ],
)
def test_batch_schema_and_model_agree_on_the_optional_rapid_test(
    test: dict[str, Any] | None, accepted: bool, asyncapi: dict[str, Any]
) -> None:
    channel = next(c for c in CHANNEL_LIST if c.model is messages.BatchIntake)
    schema = committed_jsonschema(channel.model)
    assert "rapid_test" not in schema["required"]
    validator = jsonschema.Draft202012Validator(schema)
    _, payload = next(asyncapi_examples(asyncapi, channel))
    payloads = [payload | {"rapid_test": test}]
    if test is None:  # absent and null mean the same
        payloads.append({k: v for k, v in payload.items() if k != "rapid_test"})
    for one in payloads:
        assert validator.is_valid(one) is accepted
        try:
            parsed = channel.model.model_validate_json(json.dumps(one))
        except ValidationError:
            assert not accepted
        else:
            assert accepted
            assert isinstance(parsed, messages.BatchIntake)
            assert (parsed.rapid_test is None) is (test is None)


def test_asyncapi_shows_a_batch_without_a_rapid_test(asyncapi: dict[str, Any]) -> None:
    channel = next(c for c in CHANNEL_LIST if c.model is messages.BatchIntake)
    untested = [payload for _, payload in asyncapi_examples(asyncapi, channel)]
    assert any("rapid_test" not in payload for payload in untested)
    assert any("rapid_test" in payload for payload in untested)


_CODE_POINTS = re.compile(r"U\+([0-9A-F]{4})(?:–U\+([0-9A-F]{4}))?")


def stated_code_points(text: str) -> set[str]:
    """Every character named by ``U+XXXX`` or ``U+XXXX–U+YYYY`` in ``text``."""
    stated: set[str] = set()
    for first, last in _CODE_POINTS.findall(text):
        stated.update(map(chr, range(int(first, 16), int(last or first, 16) + 1)))
    return stated


def forbidden_in_text() -> set[str]:
    """What the model refuses in free text: control characters (Cc) and a few format ones."""
    controls = {chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cc"}
    return controls | messages._FORBIDDEN_FORMAT_CHARS


@pytest.mark.parametrize("channel", CHANNEL_LIST, ids=lambda c: c.name)
def test_each_schema_states_the_rules_json_schema_cannot_express(channel: export.Channel) -> None:
    description = committed_jsonschema(channel.model)["description"]
    assert "No key may appear twice in an object, at any depth" in description
    assert stated_code_points(description) == forbidden_in_text()
    assert "trimmed" in description
    assert "`msg_id` already used by the device with other content is rejected" in description


def test_the_topics_doc_states_the_same_rules() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "topics.md").read_text(encoding="utf-8")
    assert "a key that appears twice in an object" in doc
    assert stated_code_points(doc) == forbidden_in_text()
    assert "starting with a letter or digit" in doc.split("### Sale")[1].split("###")[0]
    assert "msg_id reused with different content" in doc


# -- AsyncAPI ----------------------------------------------------------------------


def test_asyncapi_version_and_defaults(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["defaultContentType"] == "application/json"
    assert asyncapi["info"]["version"] == "1.0.0"
    assert asyncapi["servers"]["broker"]["protocol"] == "mqtt"


@pytest.mark.parametrize(("kind", "suffix"), list(CHANNELS))
def test_every_channel_appears_with_its_topic_address(
    kind: DeviceKind, suffix: str, asyncapi: dict[str, Any]
) -> None:
    model = CHANNELS[(kind, suffix)]
    channel = asyncapi["channels"][export.channel_name(model)]
    address: str = channel["address"]
    parameters = re.findall(r"\{(\w+)\}", address)
    assert parameters == ["market", export.DEVICE_PARAMETER[kind]]
    assert set(channel["parameters"]) == set(parameters)
    concrete = address.replace("{market}", "nanmen").replace(f"{{{parameters[1]}}}", "dev-1")
    topic = parse_topic(concrete)
    assert (topic.kind, topic.channel, topic.model) == (kind, suffix, model)


def test_channels_are_exactly_those_of_the_contract(asyncapi: dict[str, Any]) -> None:
    assert sorted(asyncapi["channels"]) == sorted(
        [*(export.channel_name(m) for m in CHANNELS.values()), "scale-command", "screen-command"]
    )


def test_commands_are_retained_sent_by_stallwatch_and_received_by_the_device(
    asyncapi: dict[str, Any],
) -> None:
    for name, kind in (("scale-command", "scale"), ("screen-command", "screen")):
        channel = asyncapi["channels"][name]
        assert channel["address"] == f"markets/{{market}}/{kind}s/{{{kind}}}/command"
        operations = [
            op for op in asyncapi["operations"].values() if op["channel"]["$ref"].endswith(name)
        ]
        assert sorted(op["action"] for op in operations) == ["receive", "send"]
        assert all(
            op["bindings"]["mqtt"] == {"qos": 1, "retain": True, "bindingVersion": "0.2.0"}
            for op in operations
        )
    examples = asyncapi["components"]["messages"]["suspended-batches"]["examples"]
    for example in examples:  # each validates against the model
        SuspendedBatches.model_validate(example["payload"])
    assert [len(e["payload"]["suspended"]) for e in examples] == [1, 0]
    assert commandexport.COMMAND_USER == brokerauth.COMMAND_USER


def test_each_channel_has_a_device_send_and_an_ingest_receive_at_qos_1(
    asyncapi: dict[str, Any],
) -> None:
    by_channel: dict[str, set[str]] = {}
    for operation in asyncapi["operations"].values():
        channel_name = operation["channel"]["$ref"].removeprefix("#/channels/")
        if channel_name.endswith("-command"):
            continue  # commands: the test above
        assert operation["bindings"]["mqtt"]["qos"] == 1
        assert operation["bindings"]["mqtt"]["retain"] is False
        by_channel.setdefault(channel_name, set()).add(operation["action"])
    assert by_channel == {
        name: {"send", "receive"} for name in asyncapi["channels"] if not name.endswith("-command")
    }


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def all_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from all_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from all_refs(item)


def test_every_reference_resolves(asyncapi: dict[str, Any]) -> None:
    refs = set(all_refs(asyncapi))
    assert refs
    for ref in refs:
        assert resolve(asyncapi, ref) is not None


def test_operation_messages_belong_to_their_channel(asyncapi: dict[str, Any]) -> None:
    for operation in asyncapi["operations"].values():
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"{channel_ref}/messages/")


def test_messages_reference_the_component_schema_of_their_model(asyncapi: dict[str, Any]) -> None:
    for channel in CHANNEL_LIST:
        message = asyncapi["components"]["messages"][channel.name]
        assert message["payload"] == {"$ref": f"#/components/schemas/{channel.model.__name__}"}
        assert message["contentType"] == "application/json"


def test_component_schemas_validate_the_examples(asyncapi: dict[str, Any]) -> None:
    """The embedded copies agree with the standalone files: same examples pass."""
    schemas = asyncapi["components"]["schemas"]
    for channel in CHANNEL_LIST:
        document = {"components": {"schemas": schemas}} | schemas[channel.model.__name__]
        validator = jsonschema.Draft7Validator(document)
        for _, payload in asyncapi_examples(asyncapi, channel):
            validator.validate(payload)


def test_security_is_username_password(asyncapi: dict[str, Any]) -> None:
    schemes = asyncapi["components"]["securitySchemes"]
    assert [scheme["type"] for scheme in schemes.values()] == ["userPassword"]
    (server_security,) = asyncapi["servers"]["broker"]["security"]
    assert resolve(asyncapi, server_security["$ref"])["type"] == "userPassword"


def test_scale_status_documents_the_last_will(asyncapi: dict[str, Any]) -> None:
    status = next(c for c in CHANNEL_LIST if c.model is ScaleStatus)
    will = asyncapi["operations"]["sendScaleStatus"]["x-last-will"]
    assert will["topic"] == status.address
    assert will["qos"] == 1
    parsed = ScaleStatus.model_validate_json(json.dumps(will["payload"]))
    assert (parsed.online, parsed.will) == (False, True)
