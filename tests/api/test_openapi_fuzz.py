"""Schemathesis against the full app's OpenAPI document, over real HTTP.

For every operation Hypothesis generates requests from the schema (valid and
invalid) and sends them, with a manager token, to the API served by uvicorn
over a store that holds a little real data; every response must be no 5xx and
must conform to the document: status, content type, headers and body schema.

Every request valid by the document must also be accepted (schemathesis'
``positive_data_acceptance``): no 422 for it. So the document states every
constraint the endpoints enforce (days from 2000-01-01 by a pattern, decimal
strings, a rapid test's rate agreeing with its result), and rules the document
cannot state are not made 422s (an empty range is empty, a long one is paged, a
batch the registry or the clock contradicts is a 409).

Bounded: at most :data:`MAX_EXAMPLES` requests per operation and kind of
request (three kinds, see :func:`fuzz`), no deadline (timing is not what this
test is about).

The operations are walked in one test rather than through schemathesis' pytest
integration: its lazy fixture loader sets ``node._nodeid``, which pytest 9 no
longer has.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from schemathesis import APIOperation, GenerationMode
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err, Ok
from schemathesis.openapi import from_url

from tests.api.conftest import Api, Feeder, bearer
from tests.ingest.helpers import now_iso, sale_payload

pytestmark = pytest.mark.mosquitto

MAX_EXAMPLES = 25


def seed(feeder: Feeder) -> None:
    """One reading of each kind, so some generated requests find data."""
    batch = {
        "msg_id": 1,
        "ts": now_iso(),
        "trace_code": "TM-20261121-A01-0001",
        "vendor": "V01",
        "plu": "1001",
        "origin": "山东寿光",
        "supplier": "寿光批发",
        "quantity_g": 50_000,
        "certificate_no": "HG-1",
        "rapid_test": {"result": "pass", "inhibition_pct": 3},
    }
    price = {"msg_id": 1, "ts": now_iso(), "vendor": "V01", "plu": "1001", "price_fen_per_kg": 398}
    count = {"msg_id": 1, "ts": now_iso(), "in_total": 10, "out_total": 3}
    feeder.ingest(
        [
            ("markets/tm/intake/IN-1/batch", json.dumps(batch, ensure_ascii=False).encode()),
            ("markets/tm/scales/S-A01/sale", sale_payload(1)),
            ("markets/tm/screens/P-A01/price", json.dumps(price).encode()),
            ("markets/tm/gates/G-N/count", json.dumps(count).encode()),
        ]
    )


#: Path parameters that name what :func:`seed` stored; random ones mostly hit 404.
KNOWN_IDS = {
    "market": "tm",
    "vendor": "V01",
    "stall": "A01",
    "plu": "1001",
    "trace_code": "TM-20261121-A01-0001",
    "scale": "S-A01",
    "msg_id": 1,
}


def fuzz(operation: APIOperation[Any, Any, Any, Any], headers: dict[str, str]) -> None:
    """Valid requests about the stored data, valid requests about anything, invalid requests."""
    names = set(re.findall(r"\{(\w+)\}", operation.path))
    known = {name: value for name, value in KNOWN_IDS.items() if name in names}
    # The token is a fixed header of every case, not one added when sending: a negative
    # case that removed it and got it back would be a valid request, accepted (ST201).
    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known, headers=headers),
        operation.as_strategy(GenerationMode.POSITIVE, headers=headers),
    ]
    takes_input = any(
        len(part) for part in (operation.path_parameters, operation.query, operation.body)
    )
    if takes_input:  # nothing to make invalid otherwise
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE, headers=headers))
    for strategy in strategies:

        @given(case=strategy)
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            # The same examples every run: a red CI run reproduces locally.
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def requests_conform(case: Any) -> None:
            case.call_and_validate()

        requests_conform()


def test_no_server_errors_and_responses_match_the_schema(api: Api, feeder: Feeder) -> None:
    seed(feeder)
    schema = from_url(f"{api.url}/openapi.json")
    results = list(schema.get_all_operations())
    invalid = [result.err() for result in results if isinstance(result, Err)]
    assert not invalid, invalid
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) >= 15
    failures: list[str] = []
    for operation in operations:
        # Every operation is fuzzed even after one fails, so one run reports them all.
        try:
            fuzz(operation, bearer(api.tokens.manager))
        except (Failure, FailureGroup) as exc:
            failures.append(f"{operation.method.upper()} {operation.path}:\n{exc}")
    assert not failures, "\n\n".join(failures)
