"""InfluxClient against a real influxd (with and without auth).

MockTransport stands in only for what 1.6.7 never answers (429/503 with Retry-After)
and to inspect requests as sent.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from stallwatch.localservices import Influxd, influxd
from storage._exceptions import (
    StoreAuthError,
    StoreQueryError,
    StoreRejected,
    StoreUnavailable,
)
from storage.backoff import EQUAL_JITTER, Backoff
from storage.influx.client import (
    QUERY_CHUNK_SIZE,
    InfluxClient,
    InfluxDatabaseNotFound,
    RetryPolicy,
    error_text,
    parse_retry_after,
)
from storage.influx.influxql import Query, Select, equals, quote_ident, quote_string, statements

NOW = 1_714_550_400.0  # the injected wall clock


class Sleeps(list[float]):
    """Records the pauses a RetryPolicy asks for instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _policy(sleeps: Sleeps, **overrides: float) -> RetryPolicy:
    settings = {"attempts": 4, "base_delay": 0.2, "max_delay": 5.0, **overrides}
    return RetryPolicy(
        attempts=int(settings["attempts"]),
        backoff=Backoff(
            first=settings["base_delay"],
            cap=settings["max_delay"],
            jitter=EQUAL_JITTER,
            random=lambda: 1.0,
        ),
        sleep=sleeps,
    )


def _mock_client(
    handler: Callable[[httpx.Request], httpx.Response],
    sleeps: Sleeps | None = None,
    *,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> InfluxClient:
    return InfluxClient(
        "http://influx.invalid:8086",
        token=token,
        username=username,
        password=password,
        transport=httpx.MockTransport(handler),
        retry=_policy(sleeps if sleeps is not None else Sleeps()),
        clock=lambda: NOW,
    )


def _scripted(
    *responses: httpx.Response,
) -> tuple[Callable[[httpx.Request], httpx.Response], list[httpx.Request]]:
    """A handler answering with ``responses`` in turn, and the requests it saw."""
    seen: list[httpx.Request] = []
    pending = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return pending.pop(0)

    return handler, seen


# -- pure helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("1.5", 1.5),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def test_error_text_reads_each_generations_error_shape() -> None:
    request = httpx.Request("POST", "http://x/write")
    v1 = httpx.Response(400, json={"error": "partial write: dropped=1"}, request=request)
    v2 = httpx.Response(
        404, json={"code": "not found", "message": "bucket not found"}, request=request
    )
    v3 = httpx.Response(
        400, json={"error": "parsing failed", "data": [{"line_number": 2}]}, request=request
    )
    plain = httpx.Response(502, text="Bad Gateway from proxy", request=request)
    assert error_text(v1) == "partial write: dropped=1"
    assert error_text(v2) == "bucket not found"
    assert error_text(v3) == 'parsing failed: [{"line_number": 2}]'
    assert error_text(plain) == "Bad Gateway from proxy"


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy().backoff
    assert (policy.first, policy.cap, policy.jitter) == (0.2, 5.0, EQUAL_JITTER)
    high = Backoff(first=0.5, cap=3.0, jitter=EQUAL_JITTER, random=lambda: 1.0)
    assert [high.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    low = Backoff(first=0.5, cap=3.0, jitter=EQUAL_JITTER, random=lambda: 0.0)
    assert low.delay(2) == 0.5  # equal jitter never waits less than half


def test_credentials_are_either_a_token_or_user_and_password() -> None:
    with pytest.raises(ValueError, match="either"):
        InfluxClient("http://x", token="t", username="u", password="p")
    with pytest.raises(ValueError, match="password"):
        InfluxClient("http://x", username="u")


# -- requests as sent (MockTransport) ---------------------------------------------------------


def test_write_posts_gzip_line_protocol_with_ns_precision() -> None:
    handler, seen = _scripted(httpx.Response(204))
    with _mock_client(handler) as client:
        client.write("db 1", ["m v=1i 1", 'm s="中" 2'], retention_policy="rp1")
    (request,) = seen
    assert request.method == "POST"
    assert request.url.path == "/write"
    assert dict(request.url.params) == {"db": "db 1", "precision": "ns", "rp": "rp1"}
    assert request.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(request.content).decode() == 'm v=1i 1\nm s="中" 2'


def test_token_auth_header() -> None:
    handler, seen = _scripted(httpx.Response(204))
    with _mock_client(handler, token="s3cret") as client:
        client.ping()
    assert seen[0].headers["Authorization"] == "Token s3cret"


def test_password_travels_as_basic_auth_not_in_the_url() -> None:
    handler, seen = _scripted(httpx.Response(204))
    with _mock_client(handler, username="admin", password="s3cret-pa55") as client:
        client.write("db", ["m v=1i 1"])
    assert seen[0].headers["Authorization"] == "Basic YWRtaW46czNjcmV0LXBhNTU="
    assert "s3cret" not in str(seen[0].url)
    assert "admin" not in str(seen[0].url)


def test_a_listing_is_a_chunked_get_with_ns_epoch_and_bound_params() -> None:
    handler, seen = _scripted(httpx.Response(200, json={"results": [{"statement_id": 0}]}))
    with _mock_client(handler) as client:
        assert client.query("db", Query("SELECT * FROM m WHERE a = $a", {"a": "x'y"})) == []
    params = dict(seen[0].url.params)
    assert seen[0].method == "GET"
    assert params["epoch"] == "ns"
    assert params["chunked"] == "true"
    assert json.loads(params["params"]) == {"a": "x'y"}


def test_a_group_by_is_asked_unchunked() -> None:
    handler, seen = _scripted(httpx.Response(200, json={"results": [{"statement_id": 0}]}))
    with _mock_client(handler) as client:
        assert client.query("db", Query('SELECT COUNT("v") FROM m GROUP BY "g"')) == []
    assert "chunked" not in dict(seen[0].url.params)


def _series(values: list[list[object]], **extra: object) -> dict[str, object]:
    return {"name": "m", "tags": {"g": "a"}, "columns": ["time", "v"], "values": values, **extra}


def test_an_answer_cut_at_the_row_limit_is_asked_again_chunked_and_its_chunks_merged() -> None:
    def chunk(values: list[list[object]], partial: bool) -> str:
        return json.dumps(
            {"results": [{"statement_id": 0, "series": [_series(values)], "partial": partial}]}
        )

    cut = {"results": [{"statement_id": 0, "series": [_series([[1, 10]], partial=True)]}]}
    body = chunk([[1, 10]], True) + "\n" + chunk([[2, 20]], False) + "\n"
    handler, seen = _scripted(httpx.Response(200, json=cut), httpx.Response(200, text=body))
    with _mock_client(handler) as client:
        (series,) = client.query("db", Query("SELECT * FROM m GROUP BY g"))
    assert series.tags == {"g": "a"}
    assert series.rows == [{"time": 1, "v": 10}, {"time": 2, "v": 20}]
    assert [request.url.params.get("chunked") for request in seen] == [None, "true"]


# -- retries (MockTransport: 1.6.7 never answers 429/503) --------------------------------------


def test_retry_after_seconds_is_honoured() -> None:
    sleeps = Sleeps()
    handler, seen = _scripted(
        httpx.Response(503, headers={"Retry-After": "2"}, json={"error": "busy"}),
        httpx.Response(204),
    )
    with _mock_client(handler, sleeps) as client:
        client.write("db", ["m v=1i 1"])
    assert sleeps == [2.0]
    assert len(seen) == 2


def test_retry_after_http_date_is_honoured() -> None:
    sleeps = Sleeps()
    later = email.utils.formatdate(NOW + 3, usegmt=True)
    handler, _ = _scripted(
        httpx.Response(429, headers={"Retry-After": later}, text="slow down"),
        httpx.Response(204),
    )
    with _mock_client(handler, sleeps) as client:
        client.write("db", ["m v=1i 1"])
    assert sleeps == [3.0]


def test_a_retry_after_longer_than_the_cap_goes_back_to_the_caller() -> None:
    sleeps = Sleeps()
    handler, seen = _scripted(httpx.Response(503, headers={"Retry-After": "600"}))
    with _mock_client(handler, sleeps) as client, pytest.raises(StoreUnavailable) as caught:
        client.write("db", ["m v=1i 1"])
    assert caught.value.retry_after == 600.0
    assert sleeps == []
    assert len(seen) == 1


def test_outages_are_retried_with_backoff_then_raised() -> None:
    sleeps = Sleeps()
    handler, seen = _scripted(*[httpx.Response(500, text="oops")] * 4)
    with _mock_client(handler, sleeps) as client, pytest.raises(StoreUnavailable):
        client.write("db", ["m v=1i 1"])
    assert len(seen) == 4
    assert sleeps == [0.2, 0.4, 0.8]


@pytest.mark.parametrize("error", ["engine is closed", "query engine shutdown"])
def test_a_query_answered_while_the_server_shuts_down_is_an_outage(error: str) -> None:
    # What influxd 1.x answers, in a 200, to a query that reaches it while it closes
    # its engine (or its query executor): not reproducible on cue with the real server,
    # hence the mock.
    handler, _ = _scripted(
        *[httpx.Response(200, json={"results": [{"statement_id": 0, "error": error}]})]
    )
    with _mock_client(handler) as client, pytest.raises(StoreUnavailable, match=error):
        client.query("db", Query("SELECT * FROM m"))


def test_timeouts_are_outages_and_retried() -> None:
    sleeps = Sleeps()
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(204)

    with _mock_client(handler, sleeps) as client:
        client.write("db", ["m v=1i 1"])
    assert len(calls) == 2
    assert sleeps == [0.2]


def test_auth_errors_are_not_retried() -> None:
    sleeps = Sleeps()
    handler, seen = _scripted(httpx.Response(401, json={"error": "authorization failed"}))
    with _mock_client(handler, sleeps) as client, pytest.raises(StoreAuthError):
        client.write("db", ["m v=1i 1"])
    assert len(seen) == 1
    assert sleeps == []


def test_an_oversized_body_is_a_rejection_so_the_store_splits_it() -> None:
    handler, _ = _scripted(httpx.Response(413, json={"error": "Request Entity Too Large"}))
    with _mock_client(handler) as client, pytest.raises(StoreRejected):
        client.write("db", ["m v=1i 1"])


def test_v2_missing_bucket_is_a_missing_database() -> None:
    handler, _ = _scripted(
        httpx.Response(404, json={"code": "not found", "message": 'bucket "x" not found'})
    )
    with _mock_client(handler) as client, pytest.raises(InfluxDatabaseNotFound):
        client.write("x", ["m v=1i 1"])


# -- against the real influxd --------------------------------------------------------------


@pytest.fixture
def client(influx_server: Influxd) -> Iterator[InfluxClient]:
    with InfluxClient(influx_server.url, retry=_policy(Sleeps())) as influx:
        yield influx


@pytest.fixture
def database(client: InfluxClient) -> str:
    name = f"cl_{uuid.uuid4().hex}"
    client.create_database(name)
    return name


@pytest.mark.influx
def test_ping(client: InfluxClient) -> None:
    client.ping()


def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as sock:  # a port that is bound but never listens refuses connections
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sleeps = Sleeps()
        client = InfluxClient(f"http://127.0.0.1:{port}", retry=_policy(sleeps, attempts=2))
        with client, pytest.raises(StoreUnavailable, match="unreachable"):
            client.write("db", ["m v=1i 1"])
    assert sleeps == [0.2]


@pytest.mark.influx
def test_gzip_write_round_trips_exact_integers(client: InfluxClient, database: str) -> None:
    big = 2**62 + 12_345
    client.write(database, [f"m v={big}i,n=-5i 1714550400123456789"])
    (series,) = client.query(database, Select("m").query())
    assert series.rows == [{"time": 1714550400123456789, "v": big, "n": -5}]
    assert type(series.rows[0]["v"]) is int


@pytest.mark.influx
def test_large_results_arrive_complete(client: InfluxClient, database: str) -> None:
    count = QUERY_CHUNK_SIZE * 2 + 7
    client.write(database, [f"m v={n}i {n + 1}" for n in range(count)])
    (series,) = client.query(database, Select("m").query())
    assert [row["v"] for row in series.rows] == list(range(count))


@pytest.mark.influx
def test_a_servers_row_limit_truncates_nothing(tmp_path: Path) -> None:
    """1.x cuts an unchunked answer at ``max-row-limit`` and drops the later statements."""
    with (
        influxd(tmp_path / "limited", max_row_limit=5) as server,
        InfluxClient(server.url) as client,
    ):
        client.create_database("d")
        client.write("d", [f"m,g=g{n % 2} v={n}i {n + 1}" for n in range(12)])
        listed, grouped = Select("m").query(), Select("m", group_by=("g",)).query()

        answer = client.query("d", statements([listed, grouped]))

    by_statement = {(one.statement_id, one.tags.get("g")): one.rows for one in answer}
    assert [row["v"] for row in by_statement[(0, None)]] == list(range(12))
    assert [row["v"] for row in by_statement[(1, "g0")]] == list(range(0, 12, 2))
    assert [row["v"] for row in by_statement[(1, "g1")]] == list(range(1, 12, 2))


@pytest.mark.influx
def test_create_database_is_idempotent(client: InfluxClient, database: str) -> None:
    client.create_database(database)
    client.write(database, ["m v=1i 1"])


@pytest.mark.influx
def test_unparsable_line_is_rejected_with_the_servers_words(
    client: InfluxClient, database: str
) -> None:
    with pytest.raises(StoreRejected) as caught:
        client.write(database, ["m v=1i 1", "m v= 2"])
    assert "unable to parse 'm v= 2'" in caught.value.detail


@pytest.mark.influx
def test_field_type_conflict_is_rejected(client: InfluxClient, database: str) -> None:
    client.write(database, ['m v="text" 1'])
    with pytest.raises(StoreRejected) as caught:
        client.write(database, ["m v=1i 2"])
    assert "field type conflict" in caught.value.detail


@pytest.mark.influx
def test_writing_to_a_missing_database_says_so(client: InfluxClient) -> None:
    with pytest.raises(InfluxDatabaseNotFound, match="database not found"):
        client.write(f"missing_{uuid.uuid4().hex}", ["m v=1i 1"])


@pytest.mark.influx
def test_writing_to_a_missing_retention_policy_is_not_retried(
    influx_server: Influxd, database: str
) -> None:
    sleeps = Sleeps()
    client = InfluxClient(influx_server.url, retry=_policy(sleeps))
    with client, pytest.raises(InfluxDatabaseNotFound, match="retention policy not found"):
        client.write(database, ["m v=1i 1"], retention_policy="nope")
    assert sleeps == []


@pytest.mark.influx
def test_querying_a_missing_database_says_so(client: InfluxClient) -> None:
    with pytest.raises(InfluxDatabaseNotFound):
        client.query(f"missing_{uuid.uuid4().hex}", Select("m").query())


@pytest.mark.influx
def test_a_query_too_long_for_a_url_is_answered(client: InfluxClient, database: str) -> None:
    # A write's look-ups for hundreds of devices: far over httpx's 64 KiB URL limit.
    device = "sc-{:04d}-scale-at-the-far-end-of-hall-b".format
    client.write(database, [f"m,d={device(0)} v=1i 1", f"m,d={device(999)} v=2i 2"])
    selects = [
        Select("m", where=(equals("d", device(n), param=f"d{n}"),)).query() for n in range(1000)
    ]
    query = statements(selects)
    assert len(urlencode({"q": query.text, "params": query.params_json() or ""})) > 70_000
    found = client.query(database, query)
    assert sorted(row["v"] for series in found for row in series.rows) == [1, 2]


@pytest.mark.influx
def test_invalid_influxql_is_a_query_error(client: InfluxClient, database: str) -> None:
    with pytest.raises(StoreQueryError, match="error parsing query"):
        client.query(database, Query("SELECT * FROM"))


# -- authentication against an influxd with auth-enabled ------------------------------------


ADMIN, PASSWORD = "admin", "s3cret 'pass' \"word\""


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    with influxd(Path(tmp_path_factory.mktemp("influxd-auth")), auth=True) as server:
        assert isinstance(server, Influxd)
        # 1.x lets the very first user be created without credentials.
        with InfluxClient(server.url) as bootstrap:
            bootstrap.execute(
                Query(
                    f"CREATE USER {quote_ident(ADMIN)} WITH PASSWORD {quote_string(PASSWORD)} "
                    "WITH ALL PRIVILEGES"
                )
            )
        yield server


@pytest.mark.influx
def test_user_and_password_can_write_and_query(auth_server: Influxd) -> None:
    name = f"auth_{uuid.uuid4().hex}"
    with InfluxClient(auth_server.url, username=ADMIN, password=PASSWORD) as client:
        client.create_database(name)
        client.write(name, ["m v=7i 1"])
        (series,) = client.query(name, Select("m").query())
    assert series.rows == [{"time": 1, "v": 7}]


@pytest.mark.influx
def test_wrong_password_is_an_auth_error(auth_server: Influxd) -> None:
    sleeps = Sleeps()
    client = InfluxClient(auth_server.url, username=ADMIN, password="wrong", retry=_policy(sleeps))
    with client, pytest.raises(StoreAuthError, match="401"):
        client.write("anything", ["m v=1i 1"])
    assert sleeps == []


@pytest.mark.influx
def test_missing_credentials_are_an_auth_error(auth_server: Influxd) -> None:
    with InfluxClient(auth_server.url) as client:
        with pytest.raises(StoreAuthError):
            client.write("anything", ["m v=1i 1"])
        with pytest.raises(StoreAuthError):
            client.query("anything", Select("m").query())
