"""InfluxQL quoting and bound parameters, with hostile inputs, also against a real influxd."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from stallwatch.localservices import Influxd
from storage.influx.client import InfluxClient
from storage.influx.influxql import (
    Condition,
    InfluxQLError,
    Query,
    Select,
    equals,
    int_literal,
    placeholders,
    quote_ident,
    quote_string,
    time_before,
    time_from,
)
from storage.influx.lineprotocol import build_line

HOSTILE = [
    "plain",
    "it's",
    'say "hi"',
    "back\\slash",
    "trailing\\",
    "\\'",
    "x' OR '1'='1",
    'x" OR "1"="1',
    "semi; DROP DATABASE x",
    "$param",
    "new\nline",
    "中文 市场",
    "🍅",
    "-- comment",
    "/* c */",
]


# -- quoting --------------------------------------------------------------------------


def test_quote_ident_escapes_double_quote_backslash_and_newline() -> None:
    assert quote_ident('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert quote_ident("it's") == '"it\'s"'


def test_quote_string_escapes_single_quote_backslash_and_newline() -> None:
    assert quote_string("a'b\\c\nd") == "'a\\'b\\\\c\\nd'"
    assert quote_string('say "hi"') == "'say \"hi\"'"


def test_int_literal_takes_only_real_ints() -> None:
    assert int_literal(42) == "42"
    assert int_literal(-(2**63)) == str(-(2**63))
    for bad in (True, "1", 1.0, 2**63):
        with pytest.raises(InfluxQLError):
            int_literal(bad)  # type: ignore[arg-type]


# -- placeholders and Query ------------------------------------------------------------


def test_placeholders_ignore_quoted_text() -> None:
    text = "SELECT * FROM \"$m\" WHERE a = $a AND b = '$not' AND c = $c_1 AND d = 'x\\'$no'"
    assert placeholders(text) == {"a", "c_1"}


@pytest.mark.parametrize("text", ["SELECT 'unterminated", "SELECT $", 'SELECT "x'])
def test_malformed_text_is_refused(text: str) -> None:
    with pytest.raises(InfluxQLError):
        placeholders(text)


def test_query_requires_each_placeholder_bound_and_each_value_used() -> None:
    assert Query("SELECT * FROM m WHERE a = $a", {"a": 1}).params_json() == '{"a":1}'
    with pytest.raises(InfluxQLError, match="without values"):
        Query("SELECT * FROM m WHERE a = $a", {})
    with pytest.raises(InfluxQLError, match="without placeholders"):
        Query("SELECT * FROM m", {"a": 1})


@pytest.mark.parametrize("value", [1.5, None, b"x", 2**63, [1]])
def test_query_refuses_values_it_cannot_bind_exactly(value: object) -> None:
    with pytest.raises(InfluxQLError):
        Query("SELECT * FROM m WHERE a = $a", {"a": value})  # type: ignore[dict-item]


def test_params_json_keeps_large_integers_exact_and_text_verbatim() -> None:
    query = Query("SELECT * FROM m WHERE time >= $t AND s = $s", {"t": 2**62 + 1, "s": "中\"'"})
    assert query.params_json() == '{"t":4611686018427387905,"s":"中\\"\'"}'


def test_select_renders_quoted_identifiers_and_bound_values() -> None:
    select = Select(
        'we"ird',
        where=(equals("market", "m1"), time_from(10), time_before(20)),
        retention_policy="rp 1",
        group_by=("vendor", "plu"),
        newest_first=True,
        limit=1,
    )
    query = select.query()
    assert query.text == (
        'SELECT * FROM "rp 1"."we\\"ird" WHERE "market" = $market AND time >= $start '
        'AND time < $end GROUP BY "vendor", "plu" ORDER BY time DESC LIMIT 1'
    )
    assert query.params == {"market": "m1", "start": 10, "end": 20}


def test_select_count() -> None:
    query = Select("dead_letter", count_of="payload_size", group_by=("market",)).query()
    assert query.text == 'SELECT COUNT("payload_size") FROM "dead_letter" GROUP BY "market"'


def test_select_refuses_the_same_parameter_twice() -> None:
    with pytest.raises(InfluxQLError, match="twice"):
        Select("m", where=(equals("a", "1"), equals("a", "2"))).query()


def test_condition_refuses_unknown_operators() -> None:
    with pytest.raises(InfluxQLError):
        Condition("a", "=~", "a", "x")


# -- against the real server -------------------------------------------------------------


@pytest.fixture
def client(influx_server: Influxd) -> Iterator[InfluxClient]:
    with InfluxClient(influx_server.url) as influx:
        yield influx


@pytest.fixture
def database(client: InfluxClient) -> str:
    name = f"ql_{uuid.uuid4().hex}"
    client.create_database(name)
    return name


@pytest.fixture
def hostile_points(client: InfluxClient, database: str) -> str:
    """A measurement with one point per hostile string: tag ``n`` and string field ``s``."""
    lines = [build_line("h", {"n": str(i)}, {"s": value}, i + 1) for i, value in enumerate(HOSTILE)]
    client.write(database, lines)
    return database


@pytest.mark.influx
@pytest.mark.parametrize("value", HOSTILE)
def test_bound_parameters_match_exactly_one_hostile_value(
    client: InfluxClient, hostile_points: str, value: str
) -> None:
    (series,) = client.query(hostile_points, Select("h", where=(equals("s", value),)).query())
    assert [row["s"] for row in series.rows] == [value]


@pytest.mark.influx
@pytest.mark.parametrize("value", HOSTILE)
def test_quoted_string_literals_match_exactly_one_hostile_value(
    client: InfluxClient, hostile_points: str, value: str
) -> None:
    # The one test that builds text around a value: it checks quote_string itself.
    query = Query(f"SELECT * FROM h WHERE s = {quote_string(value)}")  # noqa: S608
    (series,) = client.query(hostile_points, query)
    assert [row["s"] for row in series.rows] == [value]


@pytest.mark.influx
def test_hostile_database_name_is_one_identifier(client: InfluxClient) -> None:
    # 1.x itself refuses '/' and '\\' in database names ("invalid name").
    name = f"we\"ird 'db' 中 {uuid.uuid4().hex}; DROP DATABASE x"
    client.create_database(name)
    client.write(name, ["m v=1i 1"])
    (series,) = client.query(name, Query("SELECT * FROM m"))
    assert series.rows == [{"time": 1, "v": 1}]
