"""ensure_v2_dbrp against a local stub of InfluxDB 2.x's /api/v2 (no real 2.x exists here).

The stub answers the four endpoints involved the way the 2.x OpenAPI document
describes them (``/api/v2/orgs``, ``/api/v2/buckets``, ``/api/v2/dbrps``), checks
the token, and records every request so the tests can assert what was sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from stallwatch.localservices import free_port
from storage._exceptions import StoreAuthError, StoreUnavailable
from storage.influx.v2setup import V2SetupError, ensure_v2_dbrp

TOKEN = "stub-token"
ORG, ORG_ID = "market-ops", "0a1b2c3d4e5f6071"


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class V2State:
    buckets: list[dict[str, Any]] = field(default_factory=list)
    dbrps: list[dict[str, Any]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)

    def mutations(self) -> list[tuple[str, str]]:
        return [(c.method, c.path) for c in self.calls if c.method != "GET"]


class _Handler(BaseHTTPRequestHandler):
    state: V2State

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output clean."""

    def _reply(self, status: int, body: object | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.state.calls.append(Call(self.command, url.path, query, body))
        if self.headers.get("Authorization") != f"Token {TOKEN}":
            self._reply(401, {"code": "unauthorized", "message": "unauthorized access"})
            return
        route = {
            ("GET", "/api/v2/orgs"): self._orgs,
            ("GET", "/api/v2/buckets"): self._list_buckets,
            ("POST", "/api/v2/buckets"): self._create_bucket,
            ("GET", "/api/v2/dbrps"): self._list_dbrps,
            ("POST", "/api/v2/dbrps"): self._create_dbrp,
        }.get((self.command, url.path))
        if route is None:
            self._reply(404, {"code": "not found", "message": "path not found"})
            return
        route(query, body)

    do_GET = _handle
    do_POST = _handle

    def _orgs(self, query: dict[str, str], _: Any) -> None:
        if query.get("org") not in (None, ORG):
            self._reply(404, {"code": "not found", "message": "organization name not found"})
            return
        self._reply(200, {"links": {"self": "/api/v2/orgs"}, "orgs": [{"id": ORG_ID, "name": ORG}]})

    def _list_buckets(self, query: dict[str, str], _: Any) -> None:
        found = [
            b
            for b in self.state.buckets
            if b["name"] == query.get("name", b["name"])
            and b["orgID"] == query.get("orgID", b["orgID"])
        ]
        self._reply(200, {"links": {"self": self.path}, "buckets": found})

    def _create_bucket(self, _: dict[str, str], body: Any) -> None:
        if body.get("orgID") != ORG_ID or not body.get("name"):
            self._reply(400, {"code": "invalid", "message": "orgID and name are required"})
            return
        bucket = {
            "id": f"b{len(self.state.buckets):015d}",
            "orgID": ORG_ID,
            "name": body["name"],
            "type": "user",
            "retentionRules": body.get("retentionRules", []),
        }
        self.state.buckets.append(bucket)
        self._reply(201, bucket)

    def _list_dbrps(self, query: dict[str, str], _: Any) -> None:
        if "orgID" not in query and "org" not in query:
            self._reply(400, {"code": "invalid", "message": "either org or orgID must be provided"})
            return
        found = [
            d
            for d in self.state.dbrps
            if d["orgID"] == query.get("orgID", d["orgID"])
            and d["database"] == query.get("db", d["database"])
            and d["retention_policy"] == query.get("rp", d["retention_policy"])
        ]
        self._reply(200, {"content": found})

    def _create_dbrp(self, _: dict[str, str], body: Any) -> None:
        required = ("orgID", "bucketID", "database", "retention_policy")
        if any(not body.get(key) for key in required):
            self._reply(400, {"code": "invalid", "message": f"{required} are required"})
            return
        dbrp = {
            "id": f"d{len(self.state.dbrps):015d}",
            "orgID": body["orgID"],
            "bucketID": body["bucketID"],
            "database": body["database"],
            "retention_policy": body["retention_policy"],
            "default": bool(body.get("default")),
            "virtual": False,
        }
        self.state.dbrps.append(dbrp)
        self._reply(201, dbrp)


@pytest.fixture
def stub() -> Iterator[tuple[str, V2State]]:
    state = V2State()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_creates_the_bucket_and_a_default_mapping(stub: tuple[str, V2State]) -> None:
    url, state = stub
    ensure_v2_dbrp(url, TOKEN, ORG, "stallwatch", "stallwatch")

    (bucket,) = state.buckets
    assert bucket["name"] == "stallwatch"
    assert state.dbrps == [
        {
            "id": state.dbrps[0]["id"],
            "orgID": ORG_ID,
            "bucketID": bucket["id"],
            "database": "stallwatch",
            "retention_policy": "autogen",
            "default": True,
            "virtual": False,
        }
    ]
    assert state.mutations() == [("POST", "/api/v2/buckets"), ("POST", "/api/v2/dbrps")]
    assert all(call.path.startswith("/api/v2/") for call in state.calls)


def test_is_idempotent(stub: tuple[str, V2State]) -> None:
    url, state = stub
    ensure_v2_dbrp(url, TOKEN, ORG, "stallwatch", "stallwatch")
    ensure_v2_dbrp(url, TOKEN, ORG, "stallwatch", "stallwatch")
    assert len(state.buckets) == 1
    assert len(state.dbrps) == 1
    assert state.mutations() == [("POST", "/api/v2/buckets"), ("POST", "/api/v2/dbrps")]


def test_reuses_an_existing_bucket_and_adds_a_second_rp_as_non_default(
    stub: tuple[str, V2State],
) -> None:
    url, state = stub
    ensure_v2_dbrp(url, TOKEN, ORG, "stallwatch", "stallwatch")
    ensure_v2_dbrp(url, TOKEN, ORG, "stallwatch-short", "stallwatch", retention_policy="short")
    assert [(d["retention_policy"], d["default"]) for d in state.dbrps] == [
        ("autogen", True),
        ("short", False),
    ]


def test_replaces_a_virtual_mapping_that_points_elsewhere(stub: tuple[str, V2State]) -> None:
    url, state = stub
    state.dbrps.append(
        {
            "id": "virtual0000000001",
            "orgID": ORG_ID,
            "bucketID": "someotherbucket0",
            "database": "stallwatch",
            "retention_policy": "autogen",
            "default": True,
            "virtual": True,
        }
    )
    ensure_v2_dbrp(url, TOKEN, ORG, "stallwatch", "stallwatch")
    explicit = [d for d in state.dbrps if not d["virtual"]]
    assert [(d["bucketID"], d["default"]) for d in explicit] == [(state.buckets[0]["id"], True)]


def test_refuses_to_remap_an_explicit_mapping_to_another_bucket(stub: tuple[str, V2State]) -> None:
    url, state = stub
    ensure_v2_dbrp(url, TOKEN, ORG, "first", "stallwatch")
    with pytest.raises(V2SetupError, match="already mapped"):
        ensure_v2_dbrp(url, TOKEN, ORG, "second", "stallwatch")
    assert len(state.dbrps) == 1


def test_a_wrong_token_is_an_auth_error(stub: tuple[str, V2State]) -> None:
    url, state = stub
    with pytest.raises(StoreAuthError, match="401"):
        ensure_v2_dbrp(url, "wrong", ORG, "stallwatch", "stallwatch")
    assert state.buckets == []


def test_an_unknown_org_is_a_setup_error(stub: tuple[str, V2State]) -> None:
    url, _ = stub
    with pytest.raises(V2SetupError):
        ensure_v2_dbrp(url, TOKEN, "no-such-org", "stallwatch", "stallwatch")


def test_an_unreachable_server_is_unavailable() -> None:
    with pytest.raises(StoreUnavailable):
        ensure_v2_dbrp(f"http://127.0.0.1:{free_port()}", TOKEN, ORG, "b", "db", timeout=2.0)
