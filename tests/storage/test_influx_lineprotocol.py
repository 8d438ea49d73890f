"""Line protocol: escaping rules, the stallwatch schema, and round trips through a real influxd."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from schemas.messages import (
    BatchIntake,
    DeviceMessage,
    GateCount,
    PriceSet,
    Promotion,
    RapidTest,
    RapidTestResult,
    Sale,
    ScaleStatus,
)
from stallwatch.localservices import Influxd
from storage.influx import lineprotocol
from storage.influx.client import InfluxClient
from storage.influx.influxql import Query, Select, equals, quote_ident
from storage.influx.lineprotocol import (
    MAX_DEAD_LETTER_PAYLOAD,
    LineProtocolError,
    build_line,
    dead_letter_to_line,
    escape_key,
    escape_measurement,
    escape_tag_value,
    format_field_value,
    inhibition_permille,
    quote_string_field,
    reading_to_line,
    sale_trace_status_line,
    series_tags,
)
from storage.influx.reader import Reader
from storage.records import UNREGISTERED, DeadLetter, Reading, measurement_of
from storage.traceability import TraceStatus

TS = datetime(2024, 5, 1, 8, 30, 15, 250_000, tzinfo=UTC)
TS_MS_NS = 1_714_552_215_250_000_000  # TS in ns (whole milliseconds)
RECEIVED = 1_714_552_216_000_000_123

HOSTILE_STRINGS = [
    'double "quote"',
    "back\\slash",
    "trailing backslash\\",
    "\\",
    '\\"',
    "comma, and space",
    "equals=sign",
    "single 'quote'",
    "中文 寿光蔬菜",
    "emoji 🍅",
    "line one\nline two\n",
    "\nleading newline",
    "tab\there",
    "# not a comment",
    "",
    'ends with quote"',
    "$param and 'injection' \" OR 1=1",
]


# -- escaping ---------------------------------------------------------------------


def test_measurement_escapes_comma_and_space_only() -> None:
    assert escape_measurement("my meas,1=2") == "my\\ meas\\,1=2"


def test_keys_and_tag_values_escape_comma_equals_space() -> None:
    assert escape_key("a b,c=d") == "a\\ b\\,c\\=d"
    assert escape_tag_value("a b,c=d") == "a\\ b\\,c\\=d"


def test_a_series_key_gives_back_the_tags_it_was_written_with() -> None:
    tags = {"market": "nan men", "plu": "1,001", "vendor": "V=A 01", "note": "中文"}
    line = build_line("price", tags, {"price_fen_per_kg": 1}, 0)
    key = line.split(" price_fen_per_kg=")[0]  # a key as SHOW SERIES lists it
    assert series_tags(key) == tags


@pytest.mark.influx
def test_series_keys_lists_the_series_of_a_measurement_that_match(
    influx_server: Influxd,
) -> None:
    tags = [{"market": "m 1", "plu": "1,001", "vendor": "V=1"}, {"market": "m 2", "plu": "9"}]
    with InfluxClient(influx_server.url) as client:
        client.execute(Query('CREATE DATABASE "series_keys"'))
        client.write("series_keys", [build_line("price", t, {"p": 1}, 0) for t in tags])
        reader = Reader(client, "series_keys", None)
        assert reader.series_keys("price", (equals("market", "m 1"),)) == [tags[0]]
        assert sorted(map(str, reader.series_keys("price", ()))) == sorted(map(str, tags))


def test_tag_values_keep_quotes_and_non_ascii() -> None:
    assert escape_tag_value("\"中文'") == "\"中文'"


@pytest.mark.parametrize("bad", ["new\nline", "back\\slash", "tab\t", "nul\x00", "", "cr\r"])
def test_tag_values_that_generations_read_differently_are_refused(bad: str) -> None:
    with pytest.raises(LineProtocolError):
        escape_tag_value(bad)


@pytest.mark.parametrize("bad", ["_reserved", "time", "new\nline", "back\\slash", ""])
def test_unportable_keys_and_measurements_are_refused(bad: str) -> None:
    with pytest.raises(LineProtocolError):
        escape_key(bad)
    with pytest.raises(LineProtocolError):
        escape_measurement(bad)


def test_string_field_escapes_backslash_and_quote_and_keeps_newlines_raw() -> None:
    assert quote_string_field('a"b\\c\nd') == '"a\\"b\\\\c\nd"'
    assert quote_string_field("plain") == '"plain"'


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5, "5i"), (-7, "-7i"), (0, "0i"), (True, "true"), (False, "false"), ("x", '"x"')],
)
def test_field_values(value: int | bool | str, expected: str) -> None:
    assert format_field_value(value) == expected


@pytest.mark.parametrize("bad", [2**63, -(2**63) - 1, 1.5, Decimal("1")])
def test_field_values_outside_int64_or_not_integers_are_refused(bad: object) -> None:
    with pytest.raises(LineProtocolError):
        format_field_value(bad)  # type: ignore[arg-type]


def test_build_line_sorts_tags_and_drops_empty_ones() -> None:
    line = build_line("m", {"z": "1", "a": "2", "empty": ""}, {"f": 1, "s": "x y"}, 42)
    assert line == 'm,a=2,z=1 f=1i,s="x y" 42'


def test_build_line_needs_a_field() -> None:
    with pytest.raises(LineProtocolError):
        build_line("m", {"a": "b"}, {}, 1)


def test_tag_cache_stays_bounded() -> None:
    for n in range(70_000):
        escape_tag_value(f"v{n}")
    assert len(lineprotocol._TAG_CACHE) <= lineprotocol._CACHE_LIMIT
    assert escape_tag_value("a b") == "a\\ b"


# -- the schema ----------------------------------------------------------------------


def _sale(*, tare_g: int | None = 12) -> Sale:
    return Sale(
        msg_id=1_000_042,
        ts=TS,
        vendor="V01",
        plu="1001",
        weight_g=1_250,
        tare_g=tare_g,
        unit_price_fen_per_kg=1_600,
        total_fen=2_000,
        trace_code="TC-2024-0001",
    )


def test_sale_line() -> None:
    line = reading_to_line(Reading("nanmen", "S01", RECEIVED, _sale()))
    assert line == (
        "sale,market=nanmen,plu=1001,scale=S01,vendor=V01 msg_id=1000042i,weight_g=1250i,"
        'tare_g=12i,unit_price_fen_per_kg=1600i,total_fen=2000i,trace_code="TC-2024-0001",'
        f"received_ns={RECEIVED}i {TS_MS_NS + 42}"
    )


def test_sale_line_carries_its_trace_status_as_a_field() -> None:
    reading = Reading("nanmen", "S01", RECEIVED, _sale())
    line = reading_to_line(reading, TraceStatus.OTHER_VENDOR)
    assert 'trace_code="TC-2024-0001",trace_status="other_vendor",received_ns=' in line
    # a field, not a tag: a late batch rewrites it on the very same point
    assert line.split(" ")[0] == "sale,market=nanmen,plu=1001,scale=S01,vendor=V01"
    tags = {"market": "nanmen", "plu": "1001", "scale": "S01", "vendor": "V01"}
    assert sale_trace_status_line(tags, TS_MS_NS + 42, TraceStatus.VERIFIED) == (
        f'sale,market=nanmen,plu=1001,scale=S01,vendor=V01 trace_status="verified" {TS_MS_NS + 42}'
    )


def test_sale_line_without_tare_has_no_tare_field() -> None:
    assert "tare_g" not in reading_to_line(Reading("nanmen", "S01", RECEIVED, _sale(tare_g=None)))


def test_price_line_with_and_without_promo() -> None:
    promo = Promotion(price_fen_per_kg=900, text='限时 "特价"', until=TS + timedelta(hours=2))
    with_promo = PriceSet(
        msg_id=5, ts=TS, vendor="V01", plu="1001", price_fen_per_kg=1_000, promo=promo
    )
    until_ns = TS_MS_NS + 2 * 3600 * 10**9
    assert reading_to_line(Reading("nanmen", "P01", RECEIVED, with_promo)) == (
        'price,market=nanmen,plu=1001,vendor=V01 screen="P01",msg_id=5i,price_fen_per_kg=1000i,'
        'promo_price_fen_per_kg=900i,promo_text="限时 \\"特价\\"",'
        f"promo_until_ns={until_ns}i,received_ns={RECEIVED}i {TS_MS_NS + 5}"
    )
    plain = PriceSet(msg_id=6, ts=TS, vendor="V01", plu="1001", price_fen_per_kg=1_000)
    assert "promo" not in reading_to_line(Reading("nanmen", "P01", RECEIVED, plain))


def test_footfall_line() -> None:
    message = GateCount(msg_id=3, ts=TS, in_total=120, out_total=100)
    assert reading_to_line(Reading("nanmen", "G01", RECEIVED, message)) == (
        "footfall,gate=G01,market=nanmen msg_id=3i,in_total=120i,out_total=100i,"
        f"received_ns={RECEIVED}i {TS_MS_NS + 3}"
    )


def test_batch_line() -> None:
    message = BatchIntake(
        msg_id=8,
        ts=TS,
        trace_code="TC-2024-0001",
        vendor="V01",
        plu="1001",
        origin="山东寿光",
        supplier="寿光, 批发市场",
        quantity_g=200_000,
        certificate_no="SD 2024=01",
        rapid_test=RapidTest(result=RapidTestResult.FAIL, inhibition_pct=Decimal("55.5")),
    )
    assert reading_to_line(Reading("nanmen", "I01", RECEIVED, message)) == (
        "batch,market=nanmen,plu=1001,station=I01,vendor=V01 msg_id=8i,"
        'trace_code="TC-2024-0001",origin="山东寿光",supplier="寿光, 批发市场",quantity_g=200000i,'
        'certificate_no="SD 2024=01",rapid_test_passed=false,inhibition_permille=555i,'
        f"received_ns={RECEIVED}i {TS_MS_NS + 8}"
    )


def test_a_batch_not_tested_at_intake_has_no_test_fields() -> None:
    message = BatchIntake(
        msg_id=9,
        ts=TS,
        trace_code="TC-2024-0002",
        vendor="V01",
        plu="2001",
        origin="河南漯河",
        supplier="双汇 冷链",
        quantity_g=120_000,
        certificate_no="DQ=4111",
    )
    assert reading_to_line(Reading("nanmen", "I02", RECEIVED, message)) == (
        "batch,market=nanmen,plu=2001,station=I02,vendor=V01 msg_id=9i,"
        'trace_code="TC-2024-0002",origin="河南漯河",supplier="双汇 冷链",quantity_g=120000i,'
        f'certificate_no="DQ=4111",received_ns={RECEIVED}i {TS_MS_NS + 9}'
    )


@pytest.mark.parametrize(
    ("pct", "permille"),
    [(Decimal("0"), 0), (Decimal("12.5"), 125), (Decimal("50.0"), 500), (Decimal("100"), 1000)],
)
def test_inhibition_is_stored_as_exact_permille(pct: Decimal, permille: int) -> None:
    assert inhibition_permille(pct) == permille


def test_inhibition_with_two_decimals_is_refused() -> None:
    with pytest.raises(LineProtocolError):
        inhibition_permille(Decimal("12.25"))


def test_scale_status_line_with_optional_fields() -> None:
    message = ScaleStatus(
        msg_id=4,
        ts=TS,
        online=True,
        zero_ok=False,
        seal_intact=True,
        calibration_due=date(2025, 3, 1),
    )
    assert reading_to_line(Reading("nanmen", "S01", RECEIVED, message)) == (
        "scale_status,market=nanmen,scale=S01 msg_id=4i,online=true,will=false,zero_ok=false,"
        f'seal_intact=true,calibration_due="2025-03-01",received_ns={RECEIVED}i {TS_MS_NS + 4}'
    )


def test_last_will_is_stamped_with_arrival_time() -> None:
    will = ScaleStatus(msg_id=0, ts=TS - timedelta(days=1), online=False, will=True)
    line = reading_to_line(Reading("nanmen", "S01", RECEIVED, will))
    assert line == (
        "scale_status,market=nanmen,scale=S01 msg_id=0i,online=false,will=true,"
        f"received_ns={RECEIVED}i {RECEIVED}"
    )


def test_dead_letter_line_keeps_raw_bytes_as_base64() -> None:
    letter = DeadLetter(
        received_ns=RECEIVED,
        topic='markets/x"y/scales/S 1/sale',
        payload=b"\x00\xff{",
        reason="bad",
    )
    assert dead_letter_to_line(letter) == (
        f"dead_letter,device={UNREGISTERED},market={UNREGISTERED} "
        'topic="markets/x\\"y/scales/S 1/sale",reason="bad",payload_b64="AP97",payload_size=3i '
        f"{RECEIVED}"
    )


def test_oversized_dead_letter_payload_is_cut_but_its_size_kept() -> None:
    payload = b"x" * (MAX_DEAD_LETTER_PAYLOAD + 10)
    line = dead_letter_to_line(DeadLetter(received_ns=1, topic="t", payload=payload, reason="big"))
    encoded = line.split('payload_b64="')[1].split('"')[0]
    assert base64.b64decode(encoded) == payload[:MAX_DEAD_LETTER_PAYLOAD]
    assert f"payload_size={len(payload)}i" in line


# -- round trips through a real influxd -------------------------------------------------


@pytest.fixture
def client(influx_server: Influxd) -> Iterator[InfluxClient]:
    with InfluxClient(influx_server.url) as influx:
        yield influx


@pytest.fixture
def database(client: InfluxClient) -> str:
    name = f"lp_{uuid.uuid4().hex}"
    client.create_database(name)
    return name


@pytest.mark.influx
def test_hostile_string_fields_round_trip_unchanged(client: InfluxClient, database: str) -> None:
    lines = [
        build_line("hostile", {"n": str(n)}, {"s": value}, n + 1)
        for n, value in enumerate(HOSTILE_STRINGS)
    ]
    client.write(database, lines)

    (series,) = client.query(database, Select("hostile").query())
    assert [row["s"] for row in series.rows] == HOSTILE_STRINGS


@pytest.mark.influx
def test_hostile_names_and_tag_values_round_trip(client: InfluxClient, database: str) -> None:
    tag_values = ["a b", "a,b", "a=b", '"quoted"', "it's", "中文", "🍅", "#1", "=,= ,"]
    measurement = "odd meas,ure=ment"
    key = 'tag key, "with" = stuff'
    field = "field key,= 中"
    client.write(
        database,
        [
            build_line(measurement, {key: value}, {field: n}, n)
            for n, value in enumerate(tag_values)
        ],
    )

    (series,) = client.query(database, Select(measurement).query())
    assert [(row[key], row[field]) for row in series.rows] == [
        (value, n) for n, value in enumerate(tag_values)
    ]
    for value in tag_values:
        (match,) = client.query(
            database, Select(measurement, where=(equals(key, value, param="v"),)).query()
        )
        assert [row[key] for row in match.rows] == [value]
    assert quote_ident(measurement) == '"odd meas,ure=ment"'


def test_a_duplicate_dead_letter_gets_a_dup_tag_in_sorted_position() -> None:
    letter = DeadLetter(received_ns=5, topic="t", payload=b"", reason="r", market="m", device="d")
    assert dead_letter_to_line(letter, duplicate=2).startswith(
        "dead_letter,device=d,dup=2,market=m "
    )
    assert ",dup=" not in dead_letter_to_line(letter)


def test_each_line_starts_with_the_measurement_records_names() -> None:
    messages: list[DeviceMessage] = [
        _sale(),
        PriceSet(msg_id=1, ts=TS, vendor="V01", plu="1001", price_fen_per_kg=1_000),
        GateCount(msg_id=1, ts=TS, in_total=1, out_total=0),
        ScaleStatus(msg_id=1, ts=TS, online=True),
        BatchIntake(
            msg_id=1,
            ts=TS,
            trace_code="TC-1",
            vendor="V01",
            plu="1001",
            origin="o",
            supplier="s",
            quantity_g=1,
            certificate_no="c",
            rapid_test=RapidTest(result=RapidTestResult.PASS, inhibition_pct=Decimal("0")),
        ),
    ]
    for message in messages:
        line = reading_to_line(Reading("nanmen", "D01", RECEIVED, message))
        assert line.startswith(measurement_of(message) + ",")
