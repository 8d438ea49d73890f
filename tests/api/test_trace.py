"""Traceability over real HTTP: batch and sales fed through real MQTT ingest into each store.

Devices publish to a private Mosquitto; ``IngestService.in_process`` spools,
validates and stores them; the API (uvicorn on a free port) answers from the
store. The public page and the QR code are checked on the same data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from api.main import create_app
from api.routers.trace import qr_png
from api.server import ServerThread
from ingest.service import IngestService
from marketview.live_mqtt import LiveView
from schemas.registry import Registry
from stallwatch.localservices import Mosquitto
from stallwatch.options import api_options
from stallwatch.settings import Settings
from storage.base import Store
from storage.interfaces.sales import SaleRow
from storage.traceability import TraceStatus
from tests.api.conftest import MARKET, Api, Tokens
from tests.conftest import BOTH_STORES
from tests.ingest.helpers import Publisher, ingest_mqtt, now_iso, sale_payload, wait_until

pytestmark = pytest.mark.mosquitto

CODE = "TM-20261121-A01-0001"
ORPHAN = "TM-20261121-A01-0099"  # sold from, never registered at intake
PORK = "TM-20261121-B01-0001"  # meat vendor V02's pork-belly batch
HOSTILE_SUPPLIER = '<script>alert("x")</script> & 寿光批发'
BATCH_TOPIC = f"markets/{MARKET}/intake/IN-1/batch"
SALE_TOPIC = f"markets/{MARKET}/scales/S-A01/sale"
QUANTITY_G = 3_000
VERIFIED = TraceStatus.VERIFIED


def batch_payload(
    *,
    quantity_g: int = QUANTITY_G,
    msg_id: int = 1,
    trace_code: str = CODE,
    vendor: str = "V01",
    plu: str = "1001",
    origin: str = "山东寿光",
    tested: bool = True,
) -> bytes:
    body: dict[str, object] = {
        "msg_id": msg_id,
        "ts": now_iso(timedelta(hours=-2)),
        "trace_code": trace_code,
        "vendor": vendor,
        "plu": plu,
        "origin": origin,
        "supplier": HOSTILE_SUPPLIER,
        "quantity_g": quantity_g,
        "certificate_no": "HG-2026-000123",
        "rapid_test": {"result": "pass", "inhibition_pct": 12.5},
    }
    if not tested:  # markets test a sample: this batch came in without a test
        del body["rapid_test"]
    return json.dumps(body, ensure_ascii=False).encode()


@dataclass(frozen=True)
class Fed:
    sales: list[SaleRow]


def ingest_over_mqtt(
    broker: Mosquitto,
    registry: Registry,
    store: Store,
    spool: Path,
    messages: list[tuple[str, bytes]],
) -> None:
    """Publish as devices do and wait until ingest has stored every message."""
    options = ingest_mqtt(broker.port, "ingest-trace-test")
    service = IngestService.in_process(options, registry, store, spool, batch_size=100)
    service.start()
    publisher = Publisher(broker.port, client_id="trace-devices")
    try:
        assert service.receiver.subscribed.wait(10)
        publisher.publish_all(messages)
        wait_until(lambda: service.status().stored == len(messages), what="every message stored")
    finally:
        publisher.close()
        service.stop()
    assert service.status().rejected == 0


@pytest.fixture
def app_with_pages(
    settings: Settings, api_registry: Registry, store: Store, live: LiveView
) -> FastAPI:
    return create_app(options=api_options(settings), registry=api_registry, store=store, live=live)


@pytest.fixture
def fed(
    mosquitto_server: Mosquitto,
    api_registry: Registry,
    store: Store,
    tmp_path: Path,
) -> Fed:
    sales = [
        (SALE_TOPIC, sale_payload(i, ts=now_iso(timedelta(minutes=i - 30)), trace_code=CODE))
        for i in (1, 2, 3)
    ]
    orphan = (SALE_TOPIC, sale_payload(4, trace_code=ORPHAN))
    # Meat is not rapid-tested at intake (the pesticide test is for vegetables and fruit).
    pork_batch = batch_payload(
        msg_id=2, trace_code=PORK, vendor="V02", plu="2001", origin="河南", tested=False
    )
    # The reproduced lie: the vegetable stall's scale names the meat vendor's pork batch.
    cabbage_as_pork = (SALE_TOPIC, sale_payload(5, trace_code=PORK))
    # And sells pork belly, which the vegetable stall is not registered for.
    pork_at_the_vegetable_stall = (SALE_TOPIC, sale_payload(6, plu="2001", trace_code=PORK))
    ingest_over_mqtt(
        mosquitto_server,
        api_registry,
        store,
        tmp_path / "ingest.spool.db",
        [
            (BATCH_TOPIC, batch_payload()),
            (BATCH_TOPIC, pork_batch),
            *sales,
            orphan,
            cabbage_as_pork,
            pork_at_the_vegetable_stall,
        ],
    )
    return Fed(sales=store.sales_of_batch(MARKET, CODE))


@pytest.fixture
def web(
    app_with_pages: FastAPI, store: Store, live: LiveView, tokens: Tokens, settings: Settings
) -> Iterator[Api]:
    with ServerThread(app_with_pages) as server, httpx.Client(base_url=server.url) as client:
        yield Api(server.url, client, app_with_pages, settings, store, live, tokens)


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_trace_shows_batch_every_sale_and_oversold_remainder(fed: Fed, web: Api) -> None:
    response = web.get(f"/api/v1/markets/{MARKET}/trace/{CODE}")

    assert response.status_code == 200, response.text
    body = response.json()
    weights = [sale.weight_g for sale in fed.sales]
    assert weights == [1001, 1002, 1003]
    assert body["batch"]["trace_code"] == CODE
    assert body["batch"]["origin"] == "山东寿光"
    assert body["batch"]["supplier"] == HOSTILE_SUPPLIER
    assert body["batch"]["certificate_no"] == "HG-2026-000123"
    assert body["batch"]["rapid_test"] == {"result": "pass", "inhibition_pct": "12.5"}
    assert body["batch"]["quantity_g"] == QUANTITY_G
    assert body["batch"]["vendor"] == {"id": "V01", "name": "王记蔬菜", "stall": "A01"}
    assert body["batch"]["product"]["name_zh"] == "大白菜"
    assert body["batch"]["intake_at"].endswith("+08:00")
    assert [sale["weight_g"] for sale in body["sales"]] == weights
    assert [sale["scale"] for sale in body["sales"]] == ["S-A01"] * 3
    assert [sale["trace_status"] for sale in body["sales"]] == ["verified"] * 3
    assert [sale["total_fen"] for sale in body["sales"]] == [s.total_fen for s in fed.sales]
    assert body["sales"][0]["total_yuan"] == f"{fed.sales[0].total_fen / 100:.2f}"
    assert body["sold_g"] == sum(weights) == 3_006
    assert body["remaining_g"] == QUANTITY_G - 3_006 == -6
    assert body["oversold"] is True


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_receipt_and_its_batch_and_qr_code(fed: Fed, web: Api) -> None:
    sale = fed.sales[1]
    path = f"/api/v1/markets/{MARKET}/receipts/S-A01/{sale.msg_id}"

    body = web.get(path).json()
    qr = web.get(f"{path}/qr.png")

    assert body["sale"]["msg_id"] == sale.msg_id
    assert body["sale"]["weight_g"] == sale.weight_g
    assert body["sale"]["trace_code"] == CODE
    assert body["sale"]["vendor"]["stall"] == "A01"
    assert body["batch"]["trace_code"] == CODE
    assert qr.status_code == 200
    assert qr.headers["content-type"] == "image/png"
    assert qr.content.startswith(b"\x89PNG\r\n\x1a\n")
    # The same URL encodes to the same image: the code points at the receipt's page.
    assert qr.content == qr_png(f"{web.url}/trace/{MARKET}/receipt/S-A01/{sale.msg_id}")


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_sales_that_falsely_name_a_batch_are_not_its_sales(fed: Fed, web: Api) -> None:
    # Sales 5 and 6 of the vegetable stall name the meat vendor's pork batch.
    body = web.get(f"/api/v1/markets/{MARKET}/trace/{PORK}").json()

    assert body["batch"]["vendor"]["id"] == "V02"
    assert body["sales"] == []
    assert (body["sold_g"], body["remaining_g"], body["oversold"]) == (0, QUANTITY_G, False)


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_a_batch_not_tested_at_intake_says_so_in_the_api_and_on_its_page(
    fed: Fed, web: Api
) -> None:
    body = web.get(f"/api/v1/markets/{MARKET}/trace/{PORK}").json()
    page = web.get(f"/trace/{MARKET}/{PORK}")

    assert body["batch"]["trace_code"] == PORK
    assert body["batch"]["rapid_test"] is None  # not tested: null, not a pass
    assert page.status_code == 200
    shown = rapid_test_shown(page.text)
    assert "进场未检测" in shown
    assert "Not tested at intake" in shown
    for verdict in ("合格", "Passed", "Failed", "抑制率"):
        assert verdict not in shown
    assert 'class="notice"' not in page.text
    tested = rapid_test_shown(web.get(f"/trace/{MARKET}/{CODE}").text)
    assert '合格 <span class="en">Passed</span>' in tested
    assert "12.5%" in tested
    assert "进场未检测" not in tested


def rapid_test_shown(page: str) -> str:
    """What a batch's public page says of its rapid test at intake."""
    found = re.search(r'<dd id="rapid-test">(.*?)</dd>', page, re.DOTALL)
    assert found is not None, page
    return found.group(1)


def test_sales_of_an_unregistered_batch_are_shown_without_a_batch(fed: Fed, web: Api) -> None:
    body = web.get(f"/api/v1/markets/{MARKET}/trace/{ORPHAN}").json()
    assert body["batch"] is None
    assert body["remaining_g"] is None
    assert body["oversold"] is False
    assert [sale["msg_id"] for sale in body["sales"]] == [4]
    receipt = web.get(f"/api/v1/markets/{MARKET}/receipts/S-A01/4").json()
    assert receipt["batch"] is None
    assert receipt["sale"]["trace_status"] == "unknown_batch"
    assert receipt["sale"]["origin_verified"] is False


@pytest.mark.parametrize("store_kind", BOTH_STORES)
@pytest.mark.parametrize(
    ("msg_id", "status"), [(5, "other_vendor"), (6, "outside_categories"), (4, "unknown_batch")]
)
def test_a_receipt_whose_trace_code_does_not_check_out_shows_no_batch(
    fed: Fed, web: Api, msg_id: int, status: str
) -> None:
    receipt = web.get(f"/api/v1/markets/{MARKET}/receipts/S-A01/{msg_id}").json()
    page = web.get(f"/trace/{MARKET}/receipt/S-A01/{msg_id}")

    assert receipt["sale"]["trace_status"] == status
    assert receipt["sale"]["origin_verified"] is False
    assert receipt["batch"] is None
    assert page.status_code == 200
    assert "产地无法核实" in page.text
    assert "Origin could not be verified" in page.text
    for batch_detail in ("河南", "山东寿光", "HG-2026-000123", "合格"):
        assert batch_detail not in page.text


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_a_verified_receipt_shows_its_batch(fed: Fed, web: Api) -> None:
    sale = fed.sales[0]
    receipt = web.get(f"/api/v1/markets/{MARKET}/receipts/S-A01/{sale.msg_id}").json()
    page = web.get(f"/trace/{MARKET}/receipt/S-A01/{sale.msg_id}")

    assert receipt["sale"]["trace_status"] == "verified"
    assert receipt["sale"]["origin_verified"] is True
    assert receipt["batch"]["origin"] == "山东寿光"
    assert "山东寿光" in page.text
    assert "产地无法核实" not in page.text


def test_unknown_things_are_404_and_bad_input_422(fed: Fed, web: Api) -> None:
    def status(path: str) -> tuple[int, str]:
        response = web.get(path)
        return response.status_code, response.json()["error"]["code"]

    base = f"/api/v1/markets/{MARKET}"
    assert status(f"{base}/trace/TM-NOT-KNOWN") == (404, "not_found")
    assert status("/api/v1/markets/nowhere/trace/TM-NOT-KNOWN") == (404, "unknown_market")
    assert status(f"{base}/receipts/S-A01/999") == (404, "not_found")
    assert status(f"{base}/receipts/S-A01/999/qr.png") == (404, "not_found")
    assert status(f"{base}/trace/abc")[0] == 422  # shorter than a trace code
    assert status(f"{base}/trace/-starts-with-dash")[0] == 422
    assert status(f"{base}/trace/{'x' * 65}")[0] == 422
    assert status(f"{base}/receipts/S-A01/-1")[0] == 422
    assert status(f"{base}/receipts/S-A01/{2**63}")[0] == 422
    assert status(f"{base}/receipts/S-A01/1.5")[0] == 422


def test_public_page_of_a_receipt_escapes_and_shows_no_device_ids(fed: Fed, web: Api) -> None:
    sale = fed.sales[0]
    page = web.get(f"/trace/{MARKET}/receipt/S-A01/{sale.msg_id}")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; 寿光批发" in html
    assert "<script" not in html
    for shown in ("测试市场", "大白菜", "山东寿光", "HG-2026-000123", "合格"):
        assert shown in html
    assert "A01 王记蔬菜" in html
    assert f"¥{sale.total_fen // 100}.{sale.total_fen % 100:02d}" in html
    assert "1.001 kg" in html
    for device_or_id in ("S-A01", "IN-1", "V01"):
        assert device_or_id not in html


def test_public_page_of_a_batch_and_unknown_pages(fed: Fed, web: Api) -> None:
    page = web.get(f"/trace/{MARKET}/{CODE}")
    assert page.status_code == 200
    assert "山东寿光" in page.text
    assert CODE in page.text

    for path in (
        f"/trace/{MARKET}/TM-NOT-KNOWN",
        f"/trace/nowhere/{CODE}",
        f"/trace/{MARKET}/receipt/S-A01/999",
    ):
        missing = web.get(path)
        assert missing.status_code == 404, path
        assert missing.headers["content-type"].startswith("text/html")
        assert "未找到" in missing.text


@pytest.mark.parametrize("store_kind", BOTH_STORES)
def test_a_later_failed_test_is_kept_beside_the_intake_test_and_shown_to_shoppers(
    fed: Fed,
    web: Api,
    mosquitto_server: Mosquitto,
    api_registry: Registry,
    store: Store,
    tmp_path: Path,
) -> None:
    before = web.get(f"/api/v1/markets/{MARKET}/trace/{CODE}").json()
    assert (before["test_state"], [t["at_intake"] for t in before["tests"]]) == ("passed", [True])
    report = {
        "msg_id": 3,
        "ts": now_iso(timedelta(minutes=-10)),
        "trace_code": CODE,
        "vendor": "V01",
        "plu": "1001",
        "rapid_test": {"result": "fail", "inhibition_pct": 61.5},
    }
    ingest_over_mqtt(
        mosquitto_server,
        api_registry,
        store,
        tmp_path / "report.spool.db",
        [(f"markets/{MARKET}/intake/IN-1/test", json.dumps(report).encode())],
    )

    body = web.get(f"/api/v1/markets/{MARKET}/trace/{CODE}").json()
    assert body["batch"]["rapid_test"] == {"result": "pass", "inhibition_pct": "12.5"}  # kept
    assert [(t["result"], t["inhibition_pct"], t["at_intake"]) for t in body["tests"]] == [
        ("pass", "12.5", True),
        ("fail", "61.5", False),
    ]
    assert body["test_state"] == "failed"
    sale = fed.sales[0]
    receipt = web.get(f"/api/v1/markets/{MARKET}/receipts/S-A01/{sale.msg_id}").json()
    assert (receipt["test_state"], len(receipt["tests"])) == ("failed", 2)
    page = web.get(f"/trace/{MARKET}/receipt/S-A01/{sale.msg_id}").text
    assert 'id="latest-test-failed"' in page  # a shopper who bought from it is told
    assert "61.5%" in re.search(r'<dd class="later-test">(.*?)</dd>', page, re.DOTALL).group(1)  # type: ignore[union-attr]
    untested = web.get(f"/api/v1/markets/{MARKET}/trace/{PORK}").json()
    assert (untested["tests"], untested["test_state"]) == ([], "untested")
    assert 'id="latest-test-failed"' not in web.get(f"/trace/{MARKET}/{PORK}").text
