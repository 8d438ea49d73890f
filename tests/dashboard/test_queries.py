"""The dashboard's queries over both real stores and a real live view (private Mosquitto).

Readings go in through ``Store.write`` as ingest writes them; the dashboard's clock
is fixed, so "today" and "opening hours" are chosen by each test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dashboard import queries
from dashboard.i18n import Lang
from dashboard.pages import trace as trace_page
from dashboard.queries import BoardCache, BoardRows, DashboardData, TraceQuery
from marketview.live_mqtt import LiveView
from schemas.messages import (
    BatchIntake,
    DeviceKind,
    GateCount,
    PriceSet,
    RapidTest,
    RapidTestResult,
    Sale,
    ScaleStatus,
)
from schemas.registry import HealthCertificate, Market, MarketFile, Registry
from schemas.topics import topic_for
from simulators.clock import Pacer, VirtualClock
from simulators.events import epoch_ms
from stallwatch.demo import SimulatedClock
from stallwatch.localservices import Mosquitto
from stallwatch.options import live_mqtt_options
from stallwatch.settings import Settings
from storage.base import Store
from storage.records import Reading, to_ns
from storage.traceability import TraceStatus
from tests.conftest import BOTH_STORES, open_store
from tests.ingest.helpers import Publisher, wait_until, write_market
from tests.storage.contract.helpers import write_settled

TZ = ZoneInfo("Asia/Shanghai")
MARKET = "tm"
#: A Saturday, 10:00 in Shanghai: the market is open.
NOON_ISH = datetime(2026, 11, 21, 10, 0, tzinfo=TZ)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry.load([write_market(tmp_path)])


@pytest.fixture(params=BOTH_STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Every query test runs on the embedded store and on a real influxd."""
    with open_store(request.param, request, tmp_path, "dash") as backend:
        yield backend


@pytest.fixture
def start_live(
    registry: Registry, store: Store, mosquitto_server: Mosquitto, tmp_path: Path
) -> Iterator[Callable[[], LiveView]]:
    """Starts the live view when called: it loads what the test wrote to the store by then."""
    started: list[LiveView] = []

    def start() -> LiveView:
        settings = Settings(markets=(tmp_path / "tm.toml",), mqtt_url=mosquitto_server.url)
        view = LiveView(registry, store, live_mqtt_options(settings))
        view.start()
        started.append(view)
        wait_until(lambda: view.connected and view.synced, timeout=20, what="live view ready")
        return view

    yield start
    for view in started:
        view.stop()


def data_at(moment: datetime, registry: Registry, store: Store, live: LiveView) -> DashboardData:
    return DashboardData(registry=registry, store=store, live=live, now=lambda: moment)


def sale(msg_id: int, at: datetime, weight_g: int, *, trace: str = "TM-0001") -> Reading:
    message = Sale(
        msg_id=msg_id,
        ts=at,
        vendor="V01",
        plu="1001",
        weight_g=weight_g,
        unit_price_fen_per_kg=1000,
        total_fen=weight_g,  # 10 yuan/kg: one fen per gram
        trace_code=trace,
    )
    return Reading(MARKET, "S-A01", to_ns(at), message)


def gate(msg_id: int, at: datetime, people_in: int) -> Reading:
    message = GateCount(msg_id=msg_id, ts=at, in_total=people_in, out_total=0)
    return Reading(MARKET, "G-N", to_ns(at), message)


# -- parsing and diffing (no store) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("TM-20261121-A01-0001", TraceQuery(trace_code="TM-20261121-A01-0001")),
        ("  TM-0001 ", TraceQuery(trace_code="TM-0001")),
        ("S-A01:42", TraceQuery(scale="S-A01", msg_id=42)),
        ("S-A01 / 42", TraceQuery(scale="S-A01", msg_id=42)),
        ("S-A01#9223372036854775807", TraceQuery(scale="S-A01", msg_id=2**63 - 1)),
        ("S-A01:9223372036854775808", None),  # beyond a message id
        ("abc", None),  # too short for a trace code
        ("'; DROP TABLE sale; --", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_trace_query(text: str | None, expected: TraceQuery | None) -> None:
    assert queries.parse_trace_query(text) == expected


def test_row_transaction_holds_only_what_changed() -> None:
    old = BoardRows("v1", ({"plu": "1", "min": 1}, {"plu": "2", "min": 2}, {"plu": "3", "min": 3}))
    new = BoardRows("v2", ({"plu": "1", "min": 1}, {"plu": "2", "min": 5}, {"plu": "4", "min": 4}))
    assert queries.row_transaction(old, new) == {
        "add": [{"plu": "4", "min": 4}],
        "update": [{"plu": "2", "min": 5}],
        "remove": [{"plu": "3"}],
    }


# -- live prices ---------------------------------------------------------------------------


def test_board_cache_sends_everything_once_then_nothing_then_the_changed_row(
    registry: Registry,
    store: Store,
    start_live: Callable[[], LiveView],
    mosquitto_server: Mosquitto,
) -> None:
    now = datetime.now(UTC)
    for vendor, plu, screen, fen in (("V01", "1001", "P-A01", 398), ("V02", "2001", "P-B01", 3600)):
        message = PriceSet(msg_id=1, ts=now, vendor=vendor, plu=plu, price_fen_per_kg=fen)
        write_settled(store, [Reading(MARKET, screen, to_ns(now), message)])
    live = start_live()
    data = data_at(now, registry, store, live)
    cache = BoardCache()

    first = cache.update(data, MARKET, Lang.ZH, None)
    assert first.rows is not None
    assert [row["plu"] for row in first.rows] == ["1001", "2001"]
    assert first.rows[0]["min_text"] == "¥1.99/斤"
    assert cache.update(data, MARKET, Lang.ZH, first.tag) == queries.BoardUpdate(
        first.tag, None, None
    )

    publisher = Publisher(mosquitto_server.port)
    try:
        change = PriceSet(
            msg_id=2, ts=datetime.now(UTC), vendor="V02", plu="2001", price_fen_per_kg=3400
        )
        topic = topic_for(MARKET, DeviceKind.SCREEN, "P-B01", "price")
        publisher.publish_all([(topic, change.model_dump_json().encode())])
    finally:
        publisher.close()
    wait_until(lambda: live.board(MARKET).state.tag != first.tag, timeout=10, what="price applied")

    second = cache.update(data, MARKET, Lang.ZH, first.tag)
    assert second.rows is None
    assert second.transaction is not None
    assert second.transaction["add"] == second.transaction["remove"] == []
    [updated] = second.transaction["update"]
    assert updated["plu"] == "2001"
    assert updated["min_fen"] == 3400
    assert updated["min_text"] == "¥17.00/斤"
    # A browser whose version fell out of the cache gets the whole board again.
    assert cache.update(data, MARKET, Lang.ZH, "unknown-version").rows is not None


# -- overview ------------------------------------------------------------------------------


def test_turnover_by_day_reads_the_rollup_and_keeps_empty_days(
    registry: Registry, store: Store, start_live: Callable[[], LiveView]
) -> None:
    today = NOON_ISH.replace(hour=8)
    write_settled(
        store,
        [
            sale(1, today, 1234),
            sale(2, today + timedelta(minutes=30), 1000),
            sale(3, today - timedelta(days=2), 500),
            sale(4, today - timedelta(days=40), 999),  # outside the 30 days
        ],
    )
    frame = queries.turnover_by_day(data_at(NOON_ISH, registry, store, start_live()), MARKET)
    assert len(frame) == 30
    assert frame["day"].iloc[-1] == NOON_ISH.date()
    by_day = dict(zip(frame["day"], frame["turnover_fen"], strict=True))
    assert by_day[NOON_ISH.date()] == 2234
    assert by_day[NOON_ISH.date() - timedelta(days=2)] == 500
    assert by_day[NOON_ISH.date() - timedelta(days=1)] == 0
    assert int(frame["turnover_fen"].sum()) == 2734


def test_overview_compares_footfall_with_the_same_time_last_week(
    registry: Registry, store: Store, start_live: Callable[[], LiveView]
) -> None:
    opening = NOON_ISH.replace(hour=6)
    week = timedelta(days=7)
    write_settled(
        store,
        [
            gate(1, opening, 0),
            gate(2, opening + timedelta(hours=2), 120),
            gate(3, opening + timedelta(hours=3), 200),
            gate(4, opening - week, 0),
            gate(5, opening - week + timedelta(hours=2), 90),
            gate(6, opening - week + timedelta(hours=4, minutes=30), 400),  # after 10:00
            sale(1, opening + timedelta(hours=1), 2000),
        ],
    )
    overview = queries.overview(data_at(NOON_ISH, registry, store, start_live()), MARKET)
    assert overview.footfall_today == 200
    assert overview.footfall_last_week == 90
    assert overview.occupancy == 200
    assert overview.turnover_fen == 2000
    assert overview.transactions == 1


def test_the_demo_overview_compares_with_last_week_at_the_simulated_time_of_day(
    registry: Registry, store: Store, start_live: Callable[[], LiveView]
) -> None:
    # The demo plays the day at 60x: 90 s after opening the market stands at 07:30,
    # whatever the wall clock says, and last week counts up to 07:30 too.
    opening = NOON_ISH.replace(hour=6)
    week = timedelta(days=7)
    write_settled(
        store,
        [
            gate(1, opening, 0),
            gate(2, opening + timedelta(hours=1), 50),
            gate(3, opening - week, 0),
            gate(4, opening - week + timedelta(hours=1), 60),
            gate(5, opening - week + timedelta(hours=3), 300),  # after 07:30
        ],
    )
    wall = VirtualClock()
    simulated = SimulatedClock(opening)
    simulated.playing(Pacer.start(wall, 60, epoch_ms(opening)))
    wall.wait(90, lambda _: None)
    data = DashboardData(registry=registry, store=store, live=start_live(), now=simulated)

    playing = queries.overview(data, MARKET)
    simulated.stop(opening + timedelta(hours=4))
    over = queries.overview(data, MARKET)

    assert (playing.footfall_today, playing.footfall_last_week) == (50, 60)
    assert (over.footfall_today, over.footfall_last_week) == (50, 300)


def test_alerts_name_failed_batches_on_sale_oversold_batches_and_offline_scales(
    registry: Registry, store: Store, start_live: Callable[[], LiveView]
) -> None:
    at = NOON_ISH - timedelta(hours=2)
    write_settled(
        store,
        [
            Reading(MARKET, "IN-1", to_ns(at), _batch("TM-FAIL-1", at, passed=False, grams=5000)),
            Reading(MARKET, "IN-1", to_ns(at), _batch("TM-OVER-1", at, passed=True, grams=1000)),
            Reading(MARKET, "IN-1", to_ns(at), _batch("TM-FINE-1", at, passed=True, grams=9000)),
            # Not tested at intake (markets test a sample) and on sale: no alert.
            Reading(
                MARKET, "IN-1", to_ns(at), _batch("TM-UNTESTED-1", at, passed=None, grams=9000)
            ),
            sale(1, at + timedelta(minutes=5), 800, trace="TM-FAIL-1"),
            sale(2, at + timedelta(minutes=6), 700, trace="TM-OVER-1"),
            sale(3, at + timedelta(minutes=7), 700, trace="TM-OVER-1"),
            sale(4, at + timedelta(minutes=8), 700, trace="TM-FINE-1"),
            sale(5, at + timedelta(minutes=9), 700, trace="TM-UNTESTED-1"),
            _status("S-A01", at, online=True),
            _status("S-B01", at, online=False),
        ],
    )
    live = start_live()
    open_now = queries.alerts(data_at(NOON_ISH, registry, store, live), MARKET)
    found = {(row.kind, row.subject) for row in open_now.itertuples()}
    assert ("failed_on_sale", "TM-FAIL-1") in found
    assert ("oversold", "TM-OVER-1") in found
    assert ("offline", "S-B01") in found
    assert ("offline", "S-A01") not in found
    assert not any(subject in {"TM-FINE-1", "TM-UNTESTED-1"} for _, subject in found)
    # After closing time an offline scale is not an alert; the batches still are.
    evening_data = data_at(NOON_ISH.replace(hour=21), registry, store, live)
    evening = queries.alerts(evening_data, MARKET)
    kinds = set(evening["kind"])
    assert "offline" not in kinds
    assert {"failed_on_sale", "oversold"} <= kinds


def test_alerts_name_expired_and_expiring_licences_and_health_certificates(
    tmp_path: Path, store: Store, start_live: Callable[[], LiveView]
) -> None:
    spec = Registry.load([write_market(tmp_path)]).markets[MARKET].spec
    today = NOON_ISH.date()
    vendor = spec.vendors[0].model_copy(
        update={
            "food_licence_no": "JY13201000000001",
            "food_licence_expires": today + timedelta(days=12),
            "health_certificates": (
                HealthCertificate(holder="王五", number="JK-1", expires=today - timedelta(days=3)),
            ),
        }
    )
    registry = Registry(
        [Market(MarketFile(**{**dict(spec), "vendors": (vendor, *spec.vendors[1:])}))]
    )

    frame = queries.alerts(data_at(NOON_ISH, registry, store, start_live()), MARKET)

    documents = frame[frame["kind"].str.startswith("document_")]
    assert documents[["kind", "subject", "detail"]].values.tolist() == [
        [
            "document_expired",
            "V01 王记蔬菜",
            f"health_certificate JK-1 王五 {today - timedelta(days=3)}",
        ],
        [
            "document_expiring",
            "V01 王记蔬菜",
            f"food_licence JY13201000000001 {today + timedelta(days=12)}",
        ],
    ]


def test_other_vendors_sales_naming_a_batch_do_not_make_it_oversold(
    registry: Registry, store: Store, start_live: Callable[[], LiveView]
) -> None:
    at = NOON_ISH - timedelta(hours=2)
    pork = _batch("TM-B01-PORK", at, passed=True, grams=1000, vendor="V02", plu="2001")
    write_settled(
        store,
        [
            Reading(MARKET, "IN-1", to_ns(at), pork),
            # V01's scale names V02's 1 kg pork batch for 1.4 kg of its own cabbage.
            sale(1, at + timedelta(minutes=1), 700, trace="TM-B01-PORK"),
            sale(2, at + timedelta(minutes=2), 700, trace="TM-B01-PORK"),
        ],
    )
    data = data_at(NOON_ISH, registry, store, start_live())

    alerts = queries.alerts(data, MARKET)
    assert alerts.query("kind == 'oversold'").empty
    flagged = alerts.query("kind == 'unverified_sales'")[["subject", "detail"]]
    assert flagged.to_dict("records") == [{"subject": "S-A01", "detail": "V01: 2 other_vendor"}]
    chain = queries.trace_chain(data, MARKET, TraceQuery(trace_code="TM-B01-PORK"))
    assert isinstance(chain, queries.TraceChain)
    assert (chain.sales, chain.balance.sold_g, chain.balance.oversold) == ((), 0, False)


def test_a_batch_not_tested_at_intake_shows_as_not_tested_on_its_trace(
    registry: Registry, store: Store, start_live: Callable[[], LiveView]
) -> None:
    at = NOON_ISH - timedelta(hours=2)
    write_settled(
        store,
        [
            Reading(
                MARKET, "IN-1", to_ns(at), _batch("TM-UNTESTED-1", at, passed=None, grams=9000)
            ),
            sale(1, at + timedelta(minutes=5), 800, trace="TM-UNTESTED-1"),
        ],
    )
    data = data_at(NOON_ISH, registry, store, start_live())

    chain = queries.trace_chain(data, MARKET, TraceQuery(trace_code="TM-UNTESTED-1"))

    assert isinstance(chain, queries.TraceChain)
    assert (chain.batch.rapid_test_passed, chain.batch.inhibition_pct) == (None, None)
    assert (chain.balance.sold_g, chain.balance.oversold) == (800, False)
    for lang, untested in ((Lang.EN, "not tested"), (Lang.ZH, "未检测")):
        summary = _text(trace_page.chain_summary(chain, data, MARKET, lang, "http://web"))
        assert untested in summary
        assert "inhibition" not in summary
        assert "抑制率" not in summary
        timeline = trace_page.timeline(chain, data, MARKET, lang)
        assert timeline.data[1].name.endswith(untested)


def _text(component: object) -> str:
    """The text a Dash component shows, its children's included."""
    children = getattr(component, "children", component)
    if isinstance(children, list | tuple):
        return " ".join(_text(child) for child in children)
    return "" if children is None else str(children)


def test_sales_whose_trace_code_did_not_check_out_are_an_alert_and_in_the_tables(
    registry: Registry, store: Store, start_live: Callable[[], LiveView]
) -> None:
    at = NOON_ISH - timedelta(hours=2)
    pork = _batch("TM-B01-PORK", at, passed=True, grams=50_000, vendor="V02", plu="2001")
    write_settled(
        store,
        [
            Reading(MARKET, "IN-1", to_ns(at), pork),
            Reading(MARKET, "IN-1", to_ns(at), _batch("TM-FINE-1", at, passed=True, grams=9000)),
            sale(1, at + timedelta(minutes=1), 800, trace="TM-B01-PORK"),
            sale(2, at + timedelta(minutes=2), 700, trace="TM-B01-PORK"),
            sale(3, at + timedelta(minutes=3), 700, trace="TM-NOBODY-1"),
            sale(4, at + timedelta(minutes=4), 700, trace="TM-FINE-1"),
        ],
    )
    data = data_at(NOON_ISH, registry, store, start_live())

    unverified = queries.alerts(data, MARKET).query("kind == 'unverified_sales'")
    assert unverified[["subject", "detail"]].to_dict("records") == [
        {"subject": "S-A01", "detail": "V01: 1 unknown_batch, 2 other_vendor"}
    ]
    devices = {row["device"]: row for row in queries.device_table(data, MARKET, Lang.EN)}
    assert (devices["S-A01"]["unverified"], devices["S-B01"]["unverified"]) == (3, 0)
    # Today's messages: the scale's four sales, the desk's two batch records.
    assert (devices["S-A01"]["messages"], devices["IN-1"]["messages"]) == (4, 2)
    vendors = {row["vendor"]: row for row in queries.vendor_table(data, MARKET, Lang.EN)}
    assert (vendors["V01"]["unverified"], vendors["V02"]["unverified"]) == (3, 0)
    # A receipt naming the pork batch leads to no batch; a verified one does.
    lie = queries.trace_chain(data, MARKET, TraceQuery(scale="S-A01", msg_id=1))
    assert isinstance(lie, queries.UnverifiedReceipt)
    assert lie.receipt.trace_status is TraceStatus.OTHER_VENDOR
    chain = queries.trace_chain(data, MARKET, TraceQuery(scale="S-A01", msg_id=4))
    assert isinstance(chain, queries.TraceChain)
    assert chain.batch.trace_code == "TM-FINE-1"


def _batch(
    code: str,
    at: datetime,
    *,
    passed: bool | None,
    grams: int,
    vendor: str = "V01",
    plu: str = "1001",
) -> BatchIntake:
    """A batch; ``passed=None``: not tested at intake."""
    test = None
    if passed is not None:
        test = RapidTest(
            result=RapidTestResult.PASS if passed else RapidTestResult.FAIL,
            inhibition_pct=Decimal("20.0") if passed else Decimal("71.0"),
        )
    return BatchIntake(
        msg_id=abs(hash(code)) % 10**9,
        ts=at,
        trace_code=code,
        vendor=vendor,
        plu=plu,
        origin="山东寿光",
        supplier="寿光批发",
        quantity_g=grams,
        certificate_no="C-1",
        rapid_test=test,
    )


def test_device_states_come_from_the_live_view_or_before_it_synced_from_the_store(
    registry: Registry, store: Store, start_live: Callable[[], LiveView], tmp_path: Path
) -> None:
    at = NOON_ISH - timedelta(hours=1)
    write_settled(store, [_status("S-A01", at, online=True), _status("S-B01", at, online=False)])
    settings = Settings(markets=(tmp_path / "tm.toml",), mqtt_url="mqtt://127.0.0.1:9")
    not_started = LiveView(registry, store, live_mqtt_options(settings))
    assert not not_started.synced
    for live in (not_started, start_live()):
        devices = queries.device_table(data_at(NOON_ISH, registry, store, live), MARKET, Lang.EN)
        states = {row["device"]: row["status"] for row in devices}
        assert (states["S-A01"], states["S-B01"]) == ("online", "offline")


def _status(scale: str, at: datetime, *, online: bool) -> Reading:
    return Reading(MARKET, scale, to_ns(at), ScaleStatus(msg_id=7, ts=at, online=online))


# -- footfall ------------------------------------------------------------------------------


def test_heatmap_means_over_the_dates_that_had_footfall(
    registry: Registry, store: Store, start_live: Callable[[], LiveView]
) -> None:
    monday = datetime(2026, 11, 16, 7, 0, tzinfo=TZ)
    readings = []
    for week, people in ((0, 100), (1, 300)):  # two Mondays, 07:00-08:00
        start = monday - timedelta(days=7 * week)
        readings += [
            gate(10 * week + 1, start, 0),
            gate(10 * week + 2, start + timedelta(minutes=59), people),
        ]
    write_settled(store, readings)
    frame = queries.footfall_heatmap(data_at(NOON_ISH, registry, store, start_live()), MARKET)
    row = frame[(frame["weekday"] == 0) & (frame["hour"] == 7)]
    assert row["mean_in"].tolist() == [200.0]
    assert set(frame["weekday"]) == {0}


def test_footfall_daily_has_every_day_with_zeros(
    registry: Registry, store: Store, start_live: Callable[[], LiveView]
) -> None:
    start = NOON_ISH.replace(hour=7)
    write_settled(store, [gate(1, start, 0), gate(2, start + timedelta(minutes=30), 42)])
    frame = queries.footfall_daily(data_at(NOON_ISH, registry, store, start_live()), MARKET)
    assert len(frame) == queries.TREND_DAYS
    assert frame["people_in"].tolist()[-1] == 42
    assert int(frame["people_in"].sum()) == 42


def test_recent_shares_an_answer_for_its_time_to_live_only() -> None:
    now = [100.0]
    recent = queries.Recent(ttl_s=2.0, clock=lambda: now[0])
    calls: list[str] = []

    def compute(label: str) -> str:
        calls.append(label)
        return f"{label}#{len(calls)}"

    assert recent.get(("overview", "tm"), lambda: compute("tm")) == "tm#1"
    now[0] += 1.9  # a second browser, within the time to live: no query
    assert recent.get(("overview", "tm"), lambda: compute("tm")) == "tm#1"
    assert recent.get(("overview", "other"), lambda: compute("other")) == "other#2"
    now[0] += 0.2  # expired for tm
    assert recent.get(("overview", "tm"), lambda: compute("tm")) == "tm#3"
    assert calls == ["tm", "other", "tm"]
