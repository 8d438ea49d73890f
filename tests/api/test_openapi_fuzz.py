"""Schemathesis against the full app's OpenAPI document, over real HTTP.

For every operation Hypothesis generates requests from the schema (valid and
invalid) and sends them, with an administrator token, to the API served by
uvicorn over a store that holds a little real data and the market database (so
the management routes are fuzzed too); every response must be no 5xx and
must conform to the document: status, content type, headers and body schema.

Every request valid by the document must also be accepted (schemathesis'
``positive_data_acceptance``): no 422 for it. So the document states every
constraint the endpoints enforce (days from 2000-01-01 by a pattern, decimal
strings, a rapid test's rate agreeing with its result), and rules the document
cannot state are not made 422s (an empty range is empty, a long one is paged, a
batch the registry or the clock contradicts is a 409, and so is a vendor the
market's rules refuse).

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from schemathesis import APIOperation, GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err, Ok
from schemathesis.openapi import from_url

from marketdb.database import open_database, session_factory
from marketdb.follow import RegistryFollower
from marketdb.management import Management
from marketdb.marketfile import import_market
from marketview.live_mqtt import LiveView
from schemas.registry import load_market
from stallwatch.settings import Settings
from storage.base import Store
from tests.api.conftest import Api, Feeder, Tokens, serve
from tests.ingest.helpers import now_iso, sale_payload
from tests.stallwatch.keepers import start_lock_keeper

pytestmark = pytest.mark.mosquitto

MAX_EXAMPLES = 25

#: Schemathesis' expected statuses plus the two of editing with versions: a valid edit
#: naming a version someone changed since is refused with 412 (like a 409, it depends on
#: what is stored), and one without If-Match with 428 (RFC 6585), not 422.
CHECKS = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]
[checks.missing_required_header]
expected-statuses = ["400", "401", "403", "406", "415", "422", "428"]
"""


def config(token: str) -> SchemathesisConfig:
    """:data:`CHECKS`, and the token as the document's bearer scheme: schemathesis then
    knows every case's credentials are given, not generated, and its auth checks remove
    or spoil them itself."""
    return SchemathesisConfig.from_str(CHECKS + f'[auth.openapi.HTTPBearer]\nbearer = "{token}"\n')


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
    "device": "S-A01",
    "trace_code": "TM-20261121-A01-0001",
    "scale": "S-A01",
    "msg_id": 1,
}


def fuzz(operation: APIOperation[Any, Any, Any, Any]) -> None:
    """Valid requests about the stored data, valid requests about anything, invalid requests."""
    names = set(re.findall(r"\{(\w+)\}", operation.path))
    known = {name: value for name, value in KNOWN_IDS.items() if name in names}
    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known),
        operation.as_strategy(GenerationMode.POSITIVE),
    ]
    takes_input = any(
        len(part) for part in (operation.path_parameters, operation.query, operation.body)
    )
    if takes_input:  # nothing to make invalid otherwise
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
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


@pytest.fixture
def managed_api(
    settings: Settings,
    market_file: Path,
    store: Store,
    live: LiveView,
    tokens: Tokens,
    tmp_path: Path,
) -> Iterator[Api]:
    """The API with the market database's management routes (the registry followed)."""
    engine = open_database(f"sqlite:///{tmp_path / 'market.db'}")
    sessions = session_factory(engine)
    with sessions() as session, session.begin():
        import_market(session, load_market(market_file).spec)
    management = Management(sessions)
    follower = RegistryFollower(sessions)
    keeper, publisher = start_lock_keeper(
        sessions, follower, settings.mqtt_port, "stallwatch-command-fuzz"
    )
    yield from serve(settings, follower, store, live, tokens, management, keeper)
    publisher.close()
    engine.dispose()


def test_no_server_errors_and_responses_match_the_schema(managed_api: Api, feeder: Feeder) -> None:
    api = managed_api
    seed(feeder)
    schema = from_url(f"{api.url}/openapi.json", config=config(api.tokens.administrator))
    results = list(schema.get_all_operations())
    invalid = [result.err() for result in results if isinstance(result, Err)]
    assert not invalid, invalid
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) >= 15
    failures: list[str] = []
    for operation in operations:
        # Every operation is fuzzed even after one fails, so one run reports them all.
        try:
            fuzz(operation)
        except (Failure, FailureGroup) as exc:
            failures.append(f"{operation.method.upper()} {operation.path}:\n{exc}")
    assert not failures, "\n\n".join(failures)
    # The token reached the routes (every answer a 401 would pass the checks above too):
    # the fuzzed edits that succeeded are in the audit log under its name.
    changes = api.get("/api/v1/audit", api.tokens.administrator).json()
    assert "admin" in {change["actor"] for change in changes}
