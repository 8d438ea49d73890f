"""The trace and receipt indexes on a real influxd: lookups read a bounded set of points.

InfluxQL cannot say how many points a query touched, so the store runs
through a transport that forwards every request to the real server and keeps
the statements: the tests check what each lookup asks for (one index bucket,
exact point times, a short time range of one scale) and count, from the data
they wrote, how many points those conditions cover.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from schemas.messages import BatchIntake, RapidTest, RapidTestResult, Sale, expected_total_fen
from stallwatch.localservices import Influxd
from storage.influx.client import InfluxClient, RetryPolicy
from storage.influx.indexes import (
    RECEIPT_EVERY,
    RECEIPT_INDEX,
    TRACE_INDEX,
    IndexedDay,
    SaleEntriesWritten,
    bucket,
    receipt_selected,
    with_trace_entries,
)
from storage.influx.influxql import Query
from storage.influx.lineprotocol import reading_to_line
from storage.influx.reader import chunks
from storage.influx.rollups import ROLLUP_FORMAT_COMPLETE
from storage.influx.store import InfluxStore
from storage.influx.verification import ABSENT_FRESH_NS
from storage.records import Reading, point_time_ns, to_ns
from storage.traceability import LATE_BATCH_GRACE_NS, TraceStatus

pytestmark = pytest.mark.influx

MARKET = "nanmen"
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
NO_WAIT = RetryPolicy(attempts=1)
NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class Statement:
    text: str
    params: dict[str, object]

    @property
    def measurement(self) -> str:
        return self.text.split(" FROM ", 1)[1].split(" ", 1)[0].split(".")[-1].strip('"')


def _own(params: dict[str, object], text: str) -> dict[str, object]:
    """The parameters a statement uses, of those its request binds."""
    return {name: value for name, value in params.items() if re.search(rf"\${name}\b", text)}


def _format_check(text: str) -> bool:
    """A store's look, before its first write, at whether the database is new (not what
    these tests count)."""
    return text == "SHOW MEASUREMENTS" or ROLLUP_FORMAT_COMPLETE in text


class RecordingTransport(httpx.BaseTransport):
    """Forwards to the real server; keeps each query request's statements."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.requests: list[list[Statement]] = []
        self.writes = 0
        self.written_lines: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/write":
            body = request.read()
            if request.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            lines = body.decode().splitlines()
            if not all(line.startswith(ROLLUP_FORMAT_COMPLETE) for line in lines):
                self.writes += 1
                self.written_lines += lines
        if request.method == "GET" and request.url.path == "/query":
            params = json.loads(request.url.params.get("params", "{}"))
            texts = request.url.params["q"].split("; ")
            if not any(_format_check(text) for text in texts):
                self.requests.append([Statement(text, _own(params, text)) for text in texts])
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()

    def statements(self) -> list[Statement]:
        return [statement for request in self.requests for statement in request]


@pytest.fixture
def recording() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture
def database() -> str:
    return f"ix_{uuid.uuid4().hex}"


@pytest.fixture
def store(
    influx_server: Influxd, recording: RecordingTransport, database: str
) -> Iterator[InfluxStore]:
    with InfluxStore(
        influx_server.url, database, create_database=True, retry=NO_WAIT, transport=recording
    ) as opened:
        yield opened


def sale(
    msg_id: int,
    at: datetime,
    code: str,
    *,
    scale: str = "S01",
    vendor: str = "V01",
    plu: str = "1001",
) -> Reading:
    message = Sale(
        msg_id=msg_id,
        ts=at,
        vendor=vendor,
        plu=plu,
        weight_g=500,
        tare_g=None,
        unit_price_fen_per_kg=1_600,
        total_fen=expected_total_fen(500, 1_600),
        trace_code=code,
    )
    return Reading(MARKET, scale, to_ns(at) + 1_000_777, message)


def batch(msg_id: int, at: datetime, code: str, *, vendor: str = "V01") -> Reading:
    message = BatchIntake(
        msg_id=msg_id,
        ts=at,
        trace_code=code,
        vendor=vendor,
        plu="1001",
        origin="山东寿光",
        supplier="寿光蔬菜批发市场",
        quantity_g=250_000,
        certificate_no="SD-2024-001",
        rapid_test=RapidTest(result=RapidTestResult.PASS, inhibition_pct=Decimal("12.5")),
    )
    return Reading(MARKET, "I01", to_ns(at) + 1_000_777, message)


def _vendor(n: int) -> str:
    return f"V{n % 40:02d}"


def busy_market(days: int = 3) -> list[Reading]:
    """300 batches of 40 vendors over ``days`` and each vendor's verified sales of them."""
    readings: list[Reading] = []
    for n in range(300):
        intake = T0 + timedelta(days=n % days, minutes=n)
        readings.append(batch(n + 1, intake, f"TC-{n:04d}", vendor=_vendor(n)))
        for k in range(4):
            at = intake + timedelta(hours=1 + k)
            readings.append(
                sale(n * 10 + k, at, f"TC-{n:04d}", scale=f"S{n % 40:02d}", vendor=_vendor(n))
            )
    return readings


def _time_conditions(statement: Statement) -> dict[str, int]:
    """The statement's conditions on time: operator → bound."""
    found: dict[str, int] = {}
    for operator in ("=", ">=", "<=", "<"):
        for param, value in statement.params.items():
            if f"time {operator} ${param}" in statement.text and isinstance(value, int):
                found[operator] = value
    return found


# -- trace codes ---------------------------------------------------------------------------


def test_a_batch_is_one_index_bucket_and_its_points_by_time(
    store: InfluxStore, recording: RecordingTransport
) -> None:
    readings = busy_market()
    assert store.write(readings) == []
    code = "TC-0123"
    recording.requests.clear()

    found = store.batch(MARKET, code)

    assert found is not None
    assert (found.trace_code, found.vendor, found.msg_id) == (code, _vendor(123), 124)
    index_read, point_read = recording.requests
    (entries,) = index_read
    assert entries.measurement == TRACE_INDEX
    assert entries.params["bucket0"] == bucket(code)
    assert entries.params["code0"] == code
    # The bucket holds the entries of the codes that hash to it, not the market's 300.
    same_bucket = sum(1 for n in range(300) if bucket(f"TC-{n:04d}") == bucket(code))
    assert same_bucket < 10
    assert all(s.measurement == "batch" and "=" in _time_conditions(s) for s in point_read)


def test_an_unknown_code_reads_one_bucket_and_nothing_else(
    store: InfluxStore, recording: RecordingTransport
) -> None:
    assert store.write(busy_market()) == []
    recording.requests.clear()

    assert store.batch(MARKET, "TC-NONE") is None
    assert store.sales_of_batch(MARKET, "TC-NONE") == []
    assert [s.measurement for s in recording.statements()] == [TRACE_INDEX, TRACE_INDEX]


def test_sales_of_a_batch_read_its_vendors_product_from_the_grace_window(
    store: InfluxStore, recording: RecordingTransport
) -> None:
    readings = busy_market()
    code, vendor = "TC-0042", _vendor(42)
    intake = T0 + timedelta(days=0, minutes=42)
    long_before = sale(9_001, intake - timedelta(days=2), code, scale="S02", vendor=vendor)
    other_vendor = sale(9_002, intake + timedelta(hours=3), code, scale="S77", vendor="V77")
    assert store.write([*readings, long_before, other_vendor]) == []
    recording.requests.clear()

    rows = store.sales_of_batch(MARKET, code)

    assert [row.msg_id for row in rows] == [420, 421, 422, 423]
    assert {row.trace_status for row in rows} == {TraceStatus.VERIFIED}
    series_reads = [s for s in recording.statements() if s.measurement == "sale"]
    own = next(s for s in series_reads if "first0" in s.params)
    assert (own.params["vendor0"], own.params["plu0"]) == (vendor, "1001")
    first = _time_conditions(own)[">="]
    assert first == to_ns(intake) - LATE_BATCH_GRACE_NS
    # The other sales naming the code are another vendor's and one from before the window.
    assert series_reads == [own]


def test_a_sale_naming_an_unknown_code_is_found_by_its_index_entry(
    store: InfluxStore, recording: RecordingTransport
) -> None:
    lost = [
        sale(5_001, T0 + timedelta(hours=1), "TC-LOST", scale="S03", vendor="V03"),
        sale(5_002, T0 + timedelta(days=2), "TC-LOST", scale="S09", vendor="V09", plu="2002"),
    ]
    assert store.write([*busy_market(), *lost]) == []
    recording.requests.clear()

    rows = store.sales_of_batch(MARKET, "TC-LOST")

    assert [(row.msg_id, row.trace_status) for row in rows] == [
        (5_001, TraceStatus.UNKNOWN_BATCH),
        (5_002, TraceStatus.UNKNOWN_BATCH),
    ]
    # Each is a day of one scale's series of the product, as its index entry says.
    days = [s for s in recording.statements() if s.measurement == "sale"]
    assert sorted(str(s.params[p]) for s in days for p in s.params if p.startswith("scale")) == [
        "S03",
        "S09",
    ]
    for read in days:
        bounds = _time_conditions(read)
        assert bounds["<"] - bounds[">="] == 86_400 * 10**9
        assert bounds[">="] % (86_400 * 10**9) == 0


def test_a_late_batch_finds_the_earlier_sales_through_the_index(store: InfluxStore) -> None:
    early = sale(1, T0, "TC-LATE")
    assert store.write([early]) == []
    assert store.write([batch(1, T0 + timedelta(hours=2), "TC-LATE")]) == []
    assert [row.trace_status for row in store.sales_of_batch(MARKET, "TC-LATE")] == [
        TraceStatus.VERIFIED
    ]
    # A later write's sale finds the batch through the index, not a scan of batches.
    assert store.write([sale(2, T0 + timedelta(hours=3), "TC-LATE")]) == []
    assert [row.trace_status for row in store.sales_of_batch(MARKET, "TC-LATE")] == [
        TraceStatus.VERIFIED,
        TraceStatus.VERIFIED,
    ]


def test_the_write_path_looks_batches_up_in_the_index(
    influx_server: Influxd, recording: RecordingTransport, database: str
) -> None:
    with InfluxStore(influx_server.url, database, create_database=True, retry=NO_WAIT) as first:
        assert first.write(busy_market()) == []
    # A second process, whose cache holds no batch: it must look the code up.
    with InfluxStore(influx_server.url, database, retry=NO_WAIT, transport=recording) as second:
        assert second.write([sale(7_777, T0 + timedelta(hours=5), "TC-0007", vendor="V07")]) == []
        (row,) = [r for r in second.sales_of_batch(MARKET, "TC-0007") if r.msg_id == 7_777]
    assert row.trace_status is TraceStatus.VERIFIED
    lookups = [s for s in recording.requests[0] if s.measurement != "msg_id_ledger"]
    assert [s.measurement for s in lookups] == [TRACE_INDEX]
    assert bucket("TC-0007") in lookups[0].params.values()


def test_unverified_sales_read_only_the_series_the_index_names(
    store: InfluxStore, recording: RecordingTransport
) -> None:
    odd = [
        sale(9_001, T0 + timedelta(hours=1), "TC-ODD", scale="S03", vendor="V03"),
        sale(9_002, T0 + timedelta(hours=2), "TC-ODD", scale="S03", vendor="V03"),
        sale(9_003, T0 + timedelta(hours=2), "TC-0005", scale="S09", vendor="V09"),  # V05's
        sale(9_004, T0 + timedelta(days=2), "TC-ODD", scale="S04", vendor="V04"),  # later
    ]
    assert store.write([*busy_market(), *odd]) == []
    day = (T0, T0 + timedelta(days=1))
    recording.requests.clear()

    rows = store.unverified_sales(MARKET, *day)

    assert [(r.vendor, r.scale, r.trace_status, r.sales) for r in rows] == [
        ("V03", "S03", TraceStatus.UNKNOWN_BATCH, 2),
        ("V09", "S09", TraceStatus.OTHER_VENDOR, 1),
    ]
    entries, series = recording.requests
    assert [s.measurement for s in entries] == [TRACE_INDEX]
    # The range covers two UTC days; S04's entry is of a day after those.
    assert sorted((s.measurement, _param(s, "scale")) for s in series) == [
        ("sale", "S03"),
        ("sale", "S09"),
    ]
    # The batch comes: its sales are verified, and their index entry no longer counts.
    assert store.write([batch(9_009, T0, "TC-ODD", vendor="V03")]) == []
    assert [r.vendor for r in store.unverified_sales(MARKET, *day)] == ["V09"]


def test_unverified_sales_of_many_series_scan_the_range_once(
    store: InfluxStore, recording: RecordingTransport
) -> None:
    readings = [
        sale(n, T0 + timedelta(seconds=n), f"TC-X{n}", scale=f"S{n:03d}", vendor=f"V{n:03d}")
        for n in range(250)
    ]
    assert store.write(readings) == []
    recording.requests.clear()

    rows = store.unverified_sales(MARKET, T0, T0 + timedelta(hours=1))

    assert len(rows) == 250
    assert {(r.trace_status, r.sales) for r in rows} == {(TraceStatus.UNKNOWN_BATCH, 1)}
    _, (scan,) = recording.requests
    assert "GROUP BY" in scan.text


def _param(statement: Statement, prefix: str) -> object:
    (value,) = [v for name, v in statement.params.items() if name.startswith(prefix)]
    return value


def test_a_code_just_found_without_a_batch_is_looked_up_again_only_after_the_write(
    influx_server: Influxd, recording: RecordingTransport, database: str
) -> None:
    clock = [to_ns(T0)]
    with (
        InfluxStore(
            influx_server.url,
            database,
            create_database=True,
            retry=NO_WAIT,
            transport=recording,
            clock=lambda: clock[0],
        ) as ingest,
        InfluxStore(influx_server.url, database, retry=NO_WAIT) as desk,
    ):
        assert ingest.write([sale(1, T0, "TC-NEW")]) == []
        assert _looked_up_before_the_write(recording) == ["TC-NEW"]
        # The desk (another process) registers the batch; a second later this writer's
        # next sale skips the look-up before its write, and the one after finds it.
        assert desk.write([batch(1, T0 + timedelta(minutes=1), "TC-NEW")]) == []
        recording.requests.clear()
        clock[0] += 10**9
        assert ingest.write([sale(2, T0 + timedelta(minutes=2), "TC-NEW")]) == []
        assert _looked_up_before_the_write(recording) == []
        assert [row.trace_status for row in ingest.sales_of_batch(MARKET, "TC-NEW")] == [
            TraceStatus.VERIFIED,
            TraceStatus.VERIFIED,
        ]
        # Later than ABSENT_FRESH_NS, an absent code is looked up before the write again.
        assert ingest.write([sale(3, T0, "TC-NONE")]) == []
        recording.requests.clear()
        clock[0] += ABSENT_FRESH_NS + 1
        assert ingest.write([sale(4, T0 + timedelta(minutes=3), "TC-NONE")]) == []
        assert _looked_up_before_the_write(recording) == ["TC-NONE"]


def _looked_up_before_the_write(recording: RecordingTransport) -> list[str]:
    """The codes the first request of a write (ledger and batches) asked the index for."""
    return sorted(
        str(value)
        for statement in recording.requests[0]
        if statement.measurement == TRACE_INDEX
        for name, value in statement.params.items()
        if name.startswith("code")
    )


def test_a_sale_entry_is_sent_once_and_its_sales_stay_findable(
    store: InfluxStore, recording: RecordingTransport
) -> None:
    assert store.write([sale(1, T0, "TC-ODD"), sale(2, T0, "TC-ODD", scale="S02")]) == []
    entries = [line for line in recording.written_lines if line.startswith(TRACE_INDEX)]
    assert len(entries) == 2  # one per scale
    recording.written_lines.clear()
    later = T0 + timedelta(hours=3)
    assert store.write([sale(3, later, "TC-ODD"), sale(4, later, "TC-ODD", scale="S03")]) == []
    # S01's entry for the day is stored already; S03's is new.
    (new,) = [line for line in recording.written_lines if line.startswith(TRACE_INDEX)]
    assert "S03" in new
    assert sorted(row.msg_id for row in store.sales_of_batch(MARKET, "TC-ODD")) == [1, 2, 3, 4]


def test_trace_entries_written_before_are_left_out() -> None:
    readings = [sale(1, T0, "TC-A"), sale(2, T0, "TC-B")]
    statuses = {0: TraceStatus.UNKNOWN_BATCH, 1: TraceStatus.UNKNOWN_BATCH}
    lines = [reading_to_line(reading) for reading in readings]
    every = with_trace_entries(lines, readings, readings, statuses)
    assert len(every.lines) == 4
    assert [source.message.msg_id for _, source in every.sale_entries] == [1, 2]
    first_entry = every.sale_entries[0][0]
    written = SaleEntriesWritten()
    written.remember([first_entry])
    rest = with_trace_entries(lines, readings, readings, statuses, written_before=written)
    assert rest.lines == [*lines, every.sale_entries[1][0]]
    assert rest.sources == [*readings, readings[1]]


# -- receipts ------------------------------------------------------------------------------


def _consecutive(count: int) -> list[int]:
    return list(range(1, count + 1))


def _step_1000(count: int) -> list[int]:
    return list(range(1000, 1000 * (count + 1), 1000))


def _epoch_ms(count: int) -> list[int]:
    """epoch-milliseconds × 1000 + n: a sale every few seconds, n counting within a ms."""
    rng = random.Random(10)
    ms, ids = to_ns(T0) // NS_PER_MS, []
    for _ in range(count):
        ms += rng.randint(1, 20_000)
        ids.append(ms * 1000 + rng.randint(0, 2))
    return ids


SCHEMES = {"consecutive": _consecutive, "step 1000": _step_1000, "epoch ms": _epoch_ms}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_receipt_is_a_short_range_of_its_scales_series(
    store: InfluxStore, recording: RecordingTransport, scheme: str
) -> None:
    ids = SCHEMES[scheme](640)
    readings = [
        sale(msg_id, T0 + timedelta(seconds=7 * n), "TC-0001") for n, msg_id in enumerate(ids)
    ]
    neighbours = [
        sale(msg_id, T0 + timedelta(seconds=7 * n), "TC-0001", scale="S02")
        for n, msg_id in enumerate(ids)
    ]
    assert store.write([*readings, *neighbours]) == []
    assert sum(map(receipt_selected, ids)) >= 3  # the scale has index entries
    times = sorted(point_time_ns(r) for r in readings)

    for index in [0, 1, 63, 64, 200, 333, 500, 638, 639]:
        recording.requests.clear()
        found = store.sale_by_receipt(MARKET, "S01", ids[index])

        assert found is not None
        assert (found.scale, found.msg_id) == ("S01", ids[index])
        bounds_request, sale_request = recording.requests
        assert [s.measurement for s in bounds_request] == [RECEIPT_INDEX, RECEIPT_INDEX]
        (read,) = sale_request
        assert read.params["scale"] == "S01"
        limits = _time_conditions(read)
        assert limits, "a scale with index entries is never scanned whole"
        low, high = limits.get(">=", times[0]), limits.get("<", times[-1] + 1)
        covered = sum(1 for t in times if low <= t < high)
        assert covered <= 4 * RECEIPT_EVERY, (index, covered)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_receipt_that_does_not_exist_is_none(store: InfluxStore, scheme: str) -> None:
    ids = SCHEMES[scheme](300)
    readings = [
        sale(msg_id, T0 + timedelta(seconds=7 * n), "TC-0001") for n, msg_id in enumerate(ids)
    ]
    assert store.write(readings) == []
    missing = [ids[100] + 1 if ids[101] - ids[100] > 1 else ids[100] - 1, ids[-1] + 1]
    missing = [m for m in missing if m not in ids] + [0, -1, 2**63]
    for msg_id in missing:
        assert store.sale_by_receipt(MARKET, "S01", msg_id) is None, msg_id
    assert store.sale_by_receipt(MARKET, "S99", ids[5]) is None
    assert store.sale_by_receipt("elsewhere", "S01", ids[5]) is None


def test_a_receipt_in_the_same_millisecond_as_its_floor_is_found(store: InfluxStore) -> None:
    # Point times carry msg_id mod 10⁶ below the millisecond: the id after 999_999 has
    # smaller sub-millisecond digits than it, in the same millisecond.
    selected = next(n for n in range(999_999, 0, -1_000_000 // 64) if receipt_selected(n))
    ids = [selected, *range(selected + 1, selected + 4)]
    same_ms = [sale(msg_id, T0, "TC-0001") for msg_id in ids]
    assert store.write(same_ms) == []
    for msg_id in ids:
        found = store.sale_by_receipt(MARKET, "S01", msg_id)
        assert found is not None
        assert found.msg_id == msg_id


def test_a_scale_without_index_entries_is_scanned(
    influx_server: Influxd, store: InfluxStore, database: str
) -> None:
    # Written as a version before the indexes did: raw points only.
    old = [sale(n, T0 + timedelta(seconds=n), "TC-0001") for n in range(1, 200)]
    with InfluxClient(influx_server.url) as client:
        client.write(database, [reading_to_line(r) for r in old])
    found = store.sale_by_receipt(MARKET, "S01", 150)
    assert found is not None
    assert found.msg_id == 150


# -- building the indexes of days written before them ------------------------------------


def _count(client: InfluxClient, database: str, measurement: str, field: str) -> int:
    series = client.query(database, Query(f'SELECT COUNT("{field}") FROM "{measurement}"'))  # noqa: S608
    return sum(int(row["count"]) for one in series for row in one.rows)  # type: ignore[call-overload]


def test_index_day_builds_both_indexes_from_raw_points_idempotently(
    influx_server: Influxd, store: InfluxStore, database: str
) -> None:
    day = T0.date()
    readings = [
        batch(1, T0, "TC-OLD"),
        sale(1_000, T0 + timedelta(hours=1), "TC-OLD"),  # verified: no trace entry
        *[
            sale(n, T0 + timedelta(hours=2, seconds=n), "TC-GONE", scale="S02")
            for n in range(1, 400)
        ],
        batch(2, T0 + timedelta(days=1), "TC-NEXT-DAY"),
    ]
    statuses = {1_000: TraceStatus.VERIFIED}
    lines = []
    for reading in readings:
        message = reading.message
        status = None
        if isinstance(message, Sale):
            status = statuses.get(message.msg_id, TraceStatus.UNKNOWN_BATCH)
        lines.append(reading_to_line(reading, status))
    with InfluxClient(influx_server.url) as client:
        client.write(database, lines)
        assert store.batch(MARKET, "TC-OLD") is None  # not indexed yet

        first = store.index_day(MARKET, day)
        counts = (
            _count(client, database, TRACE_INDEX, "trace_code"),
            _count(client, database, RECEIPT_INDEX, "point_ns"),
        )
        again = store.index_day(MARKET, day)
        assert (
            _count(client, database, TRACE_INDEX, "trace_code"),
            _count(client, database, RECEIPT_INDEX, "point_ns"),
        ) == (counts)

    receipts = sum(receipt_selected(n) for n in [1_000, *range(1, 400)])
    # The batch, and one entry for the day of S02's sales naming TC-GONE.
    assert first == again == IndexedDay(day, 2, receipts)
    assert counts == (2, receipts)
    old = store.batch(MARKET, "TC-OLD")
    assert old is not None
    assert old.msg_id == 1
    assert [row.msg_id for row in store.sales_of_batch(MARKET, "TC-OLD")] == [1_000]
    assert len(store.sales_of_batch(MARKET, "TC-GONE")) == 399
    assert store.batch(MARKET, "TC-NEXT-DAY") is None  # another day
    assert store.index_day(MARKET, day + timedelta(days=1)) == IndexedDay(date(2024, 5, 2), 1, 0)
    assert store.batch(MARKET, "TC-NEXT-DAY") is not None
    found = store.sale_by_receipt(MARKET, "S02", 250)
    assert found is not None
    assert found.msg_id == 250


def test_a_write_naming_many_unknown_codes_looks_them_all_up(store: InfluxStore) -> None:
    readings = [
        sale(
            n,
            T0 + timedelta(seconds=n),
            f"SD370782-20240501-{n:06d}-UNKNOWN",
            scale=f"S{n % 300:03d}",
        )
        for n in range(1, 1_201)
    ]
    assert store.write(readings) == []
    assert store.write([batch(1, T0, "SD370782-20240501-000001-UNKNOWN")]) == []
    (first,) = store.sales_of_batch(MARKET, "SD370782-20240501-000001-UNKNOWN")
    assert first.trace_status is TraceStatus.VERIFIED


def test_index_entries_ride_in_the_readings_request(
    influx_server: Influxd, recording: RecordingTransport, database: str
) -> None:
    readings = [sale(n, T0 + timedelta(seconds=n), "TC-3", scale=f"S{n % 5}") for n in range(100)]
    with InfluxStore(
        influx_server.url,
        database,
        create_database=True,
        retry=NO_WAIT,
        transport=recording,
        batch_lines=100,
    ) as store:
        assert store.write(readings) == []
        # One request for the 100 sales and their index entries, one for the ledger.
        assert recording.writes == 2
        assert len(store.sales_of_batch(MARKET, "TC-3")) == len(readings)


def test_a_small_last_chunk_rides_with_the_one_before() -> None:
    assert chunks(5_219, 5_000) == [(0, 5_219)]
    assert chunks(12_000, 5_000) == [(0, 5_000), (5_000, 10_000), (10_000, 12_000)]
    assert chunks(0, 5_000) == []
    assert chunks(3, 2) == [(0, 2), (2, 3)]
