"""Traceability: a batch by its trace code, a sale by its receipt, the receipt's QR code,
and the public trace page the QR code points to.

Two routers: :data:`router` holds the JSON endpoints (mounted under ``/api/v1``),
:data:`pages` the server-rendered page for shoppers (mounted at the root, because
the URL is printed on receipts and must never change with the API version). Both
are public and read-only.

The page shows what a shopper may see: product, origin, supplier, certificate,
rapid test, intake date, the stall, and for a receipt the purchase. It shows no
device ids and no personal data; everything is HTML-escaped by Jinja2.

A scale can name any trace code, so a receipt shows a batch only when the
store verified the sale's link to it (``storage.traceability``: the batch is
registered, is the selling vendor's and is of the sold product, and the stall
may sell that product's category); otherwise it says plainly that the origin
could not be verified.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path as FilePath
from typing import Annotated, Literal

import jinja2
import segno
from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from api._exceptions import NotFound
from api.deps import MarketDep, MarketId, RegistryDep, StoreDep
from marketview import trace
from marketview.analytics import yuan
from marketview.foodsafety import BatchTest
from marketview.pricing import yuan_per_jin, yuan_per_kg
from marketview.recall import receipt_page_path
from schemas.messages import Identifier, TraceCode
from schemas.registry import Category, Market, SaleUnit
from storage.base import Store
from storage.interfaces.sales import SaleRow
from storage.interfaces.traceability import BatchRow
from storage.traceability import TraceStatus
from webpage.headers import page_headers, static_page_policy

router = APIRouter(tags=["traceability"])
pages = APIRouter(tags=["traceability"])

TraceCodeParam = Annotated[
    TraceCode,
    Path(description="Trace code printed on the batch and the receipt.", examples=["NANMEN-0001"]),
]
ScaleParam = Annotated[Identifier, Path(description="Scale id from the receipt.")]
MsgIdParam = Annotated[
    int, Path(ge=0, lt=2**63, description="The sale's message id, printed on the receipt.")
]

_TEMPLATES = FilePath(__file__).resolve().parent.parent / "templates"
_QR_SCALE = 8  # pixels per module: ~300 px for a trace URL, sharp on any phone
_QR_CACHE = "public, max-age=86400"


# -- response models -------------------------------------------------------------------


class VendorRef(BaseModel):
    id: str
    name: str | None = Field(description="Name from the market file; null if no longer listed.")
    stall: str | None = Field(description="Stall number; null if no longer listed.")


class ProductRef(BaseModel):
    plu: str
    name_zh: str | None = Field(description="Null if the market file no longer lists the PLU.")
    name_en: str | None
    category: Category | None
    unit: SaleUnit | None = Field(description="The unit the market quotes this product in.")


class RapidTestResult(BaseModel):
    result: Literal["pass", "fail"]
    inhibition_pct: str = Field(
        pattern=r"^[0-9]{1,3}(\.[0-9])?$",
        description="Enzyme inhibition rate in percent (GB/T 5009.199); 50 or more fails.",
    )


class BatchTestOut(BaseModel):
    at: datetime = Field(description="Time of the test, in the market's time zone.")
    result: Literal["pass", "fail"]
    inhibition_pct: str = Field(pattern=r"^[0-9]{1,3}(\.[0-9])?$")
    at_intake: bool = Field(description="False: a spot check or re-test after intake.")


TestState = Literal["passed", "failed", "untested"]
_TESTS_DESCRIPTION = (
    "Every rapid test of the batch, oldest first: its intake's, then each spot check or "
    "re-test (kept beside each other, never overwritten)."
)
_STATE_DESCRIPTION = (
    "The batch's food-safety state: its latest test's result, or `untested` without any "
    "test. A batch that passed at intake and failed later is `failed`."
)


class Batch(BaseModel):
    trace_code: str
    product: ProductRef
    origin: str = Field(description="Place of origin (产地).")
    supplier: str = Field(description="Supplier or wholesaler.")
    certificate_no: str = Field(description="Origin/quarantine certificate number (合格证).")
    rapid_test: RapidTestResult | None = Field(
        description="The pesticide rapid test at intake; null: not tested at intake (markets "
        "test a sample of their batches), which is not a pass."
    )
    quantity_g: int = Field(description="Quantity taken in, grams.")
    intake_at: datetime = Field(description="Intake time, in the market's time zone.")
    station: str = Field(description="Intake station that registered the batch.")
    vendor: VendorRef


class Sale(BaseModel):
    at: datetime = Field(description="Time of the sale (scale clock), market time zone.")
    scale: str
    msg_id: int = Field(description="The scale's message id: with the scale, the receipt number.")
    weight_g: int
    unit_price_fen_per_kg: int
    unit_price_yuan_per_kg: str
    unit_price_yuan_per_jin: str
    total_fen: int = Field(description="Amount charged, fen (may be rounded down, 抹零).")
    total_yuan: str
    trace_status: TraceStatus = Field(
        description="Whether the sale's trace code names a registered batch of this vendor and "
        "product: `verified`, or why not (`unknown_batch`, `other_vendor`, `product_mismatch`, "
        "`outside_categories` of the stall, `unchecked` for sales stored before checking)."
    )
    origin_verified: bool = Field(
        description="True only for `verified`: only then is the batch's origin this sale's."
    )


class Trace(BaseModel):
    """A batch, every sale from it, and how much of it should be left."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "market": "nanmen",
                    "trace_code": "NANMEN-20261121-A01-0001",
                    "batch": {
                        "trace_code": "NANMEN-20261121-A01-0001",
                        "product": {
                            "plu": "1001",
                            "name_zh": "大白菜",
                            "name_en": "Napa cabbage",
                            "category": "vegetables",
                            "unit": "jin",
                        },
                        "origin": "山东寿光",
                        "supplier": "寿光蔬菜批发市场",
                        "certificate_no": "HG-2026-000123",
                        "rapid_test": {"result": "pass", "inhibition_pct": "12.5"},
                        "quantity_g": 50000,
                        "intake_at": "2026-11-21T05:42:10.123000+08:00",
                        "station": "IN-1",
                        "vendor": {"id": "V01", "name": "王记蔬菜", "stall": "A01"},
                    },
                    "sales": [
                        {
                            "at": "2026-11-21T08:15:02.500000+08:00",
                            "scale": "S-A01",
                            "msg_id": 1042,
                            "weight_g": 1234,
                            "unit_price_fen_per_kg": 398,
                            "unit_price_yuan_per_kg": "3.98",
                            "unit_price_yuan_per_jin": "1.99",
                            "total_fen": 491,
                            "total_yuan": "4.91",
                            "trace_status": "verified",
                            "origin_verified": True,
                        }
                    ],
                    "sold_g": 1234,
                    "remaining_g": 48766,
                    "oversold": False,
                }
            ]
        }
    )

    market: str
    trace_code: str
    batch: Batch | None = Field(
        description="Null when sales name this code but no intake record exists (a data gap)."
    )
    sales: list[Sale] = Field(
        description="The batch's sales, oldest first: those naming the code by the batch's "
        "vendor, of its product, from a day before its intake (`trace_status` is `verified`, "
        "or `outside_categories` when the stall is not registered for the product). Sales of "
        "other vendors or products naming the code are not the batch's and are left out. "
        "Without a batch, every sale naming the code."
    )
    sold_g: int = Field(description="Total weight of the listed sales, grams.")
    remaining_g: int | None = Field(
        description="Intake minus sold, grams; negative when oversold; null without a batch."
    )
    oversold: bool = Field(description="More was sold than was taken in: check the scales.")
    tests: list[BatchTestOut] = Field(default=[], description=_TESTS_DESCRIPTION)
    test_state: TestState = Field(default="untested", description=_STATE_DESCRIPTION)


class ReceiptSale(Sale):
    vendor: VendorRef
    product: ProductRef
    trace_code: str


class Receipt(BaseModel):
    """The sale a receipt was printed for, and the batch it came from if that is verified."""

    market: str
    sale: ReceiptSale
    batch: Batch | None = Field(
        description="The batch the sale came from; null unless `sale.origin_verified` (the "
        "origin could not be verified: no such batch, or another vendor's or product's)."
    )
    tests: list[BatchTestOut] = Field(
        default=[], description=_TESTS_DESCRIPTION + " Empty without a verified batch."
    )
    test_state: TestState = Field(default="untested", description=_STATE_DESCRIPTION)


# -- JSON endpoints --------------------------------------------------------------------


@router.get(
    "/markets/{market}/trace/{trace_code}",
    response_model=Trace,
    summary="Trace a batch: its intake record, every sale, and what is left",
    operation_id="trace_batch",
)
def trace_batch(market: MarketDep, trace_code: TraceCodeParam, store: StoreDep) -> Trace:
    found = trace.batch_trace(store, market.id, trace_code)
    if found is None:
        raise NotFound(f"no batch or sale with trace code {trace_code!r} in market {market.id!r}")
    return _trace(market, found)


@router.get(
    "/markets/{market}/receipts/{scale}/{msg_id}",
    response_model=Receipt,
    summary="A receipt's sale and the batch it was sold from",
    operation_id="receipt",
)
def receipt(market: MarketDep, scale: ScaleParam, msg_id: MsgIdParam, store: StoreDep) -> Receipt:
    found = _receipt_or_404(store, market, scale, msg_id)
    return Receipt(
        market=market.id,
        sale=_receipt_sale(market, found.sale),
        batch=None if found.batch is None else _batch(market, found.batch),
        tests=_tests(market, found.tests),
        test_state=_test_state(found.tests),
    )


def public_base_url(request: Request) -> str:
    """Where the public pages are reachable, as seen by this request.

    Behind a proxy, list it in ``STALLWATCH_TRUSTED_PROXIES`` (its ``X-Forwarded-Proto``
    is believed then) and run with ``--root-path`` if it adds a prefix, so this is the
    public address; a deployment may also override this dependency
    (``app.dependency_overrides``) with a configured URL.
    """
    return str(request.base_url).rstrip("/")


@router.get(
    "/markets/{market}/receipts/{scale}/{msg_id}/qr.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "QR code (PNG)."}},
    summary="QR code for a receipt, pointing to its public trace page",
    operation_id="receipt_qr",
)
def receipt_qr(
    market: MarketDep,
    scale: ScaleParam,
    msg_id: MsgIdParam,
    store: StoreDep,
    base_url: Annotated[str, Depends(public_base_url)],
) -> Response:
    _receipt_or_404(store, market, scale, msg_id)
    url = base_url + receipt_page_path(market.id, scale, msg_id)
    return Response(qr_png(url), media_type="image/png", headers={"Cache-Control": _QR_CACHE})


def qr_png(text: str) -> bytes:
    """A QR code for ``text`` as PNG (error correction M: survives a smudged receipt)."""
    buffer = io.BytesIO()
    segno.make_qr(text, error="m").save(buffer, kind="png", scale=_QR_SCALE, border=4)
    return buffer.getvalue()


# -- the public page ---------------------------------------------------------------------

_HTML_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"content": {"text/html": {}}, "description": "Unknown market, batch or receipt."}
}


@pages.get(
    "/trace/{market}/{trace_code}",
    response_class=HTMLResponse,
    responses=_HTML_ERRORS,
    summary="Public trace page of a batch (for shoppers; HTML)",
    operation_id="trace_page",
)
def trace_page(
    market: MarketId, trace_code: TraceCodeParam, registry: RegistryDep, store: StoreDep
) -> HTMLResponse:
    found = registry.markets.get(market)
    traced = None if found is None else trace.batch_trace(store, found.id, trace_code)
    if found is None or traced is None or traced.batch is None:
        return _not_found_page()
    return _page(found, _batch(found, traced.batch), None, _tests(found, traced.tests))


@pages.get(
    "/trace/{market}/receipt/{scale}/{msg_id}",
    response_class=HTMLResponse,
    responses=_HTML_ERRORS,
    summary="Public trace page of a receipt (the receipt's QR code points here; HTML)",
    operation_id="receipt_page",
)
def receipt_page(
    market: MarketId,
    scale: ScaleParam,
    msg_id: MsgIdParam,
    registry: RegistryDep,
    store: StoreDep,
) -> HTMLResponse:
    found = registry.markets.get(market)
    traced = None if found is None else trace.receipt_trace(store, found.id, scale, msg_id)
    if found is None or traced is None:
        return _not_found_page()
    batch = None if traced.batch is None else _batch(found, traced.batch)
    return _page(found, batch, _receipt_sale(found, traced.sale), _tests(found, traced.tests))


def _page(
    market: Market, batch: Batch | None, sale: ReceiptSale | None, tests: list[BatchTestOut]
) -> HTMLResponse:
    info = market.spec.market
    html = (
        _templates()
        .get_template("trace.html")
        .render(
            market_name=info.name,
            market_name_en=info.name_en,
            batch=batch,
            sale=sale,
            later_tests=[test for test in tests if not test.at_intake],
            latest_failed=bool(tests) and tests[-1].result == "fail",
            weight=_weight_text,
            date_text=_date_text,
            time_text=_time_text,
        )
    )
    return _html(html, 200, {"Cache-Control": "public, max-age=300"})


def _not_found_page() -> HTMLResponse:
    return _html(_templates().get_template("not_found.html").render(), 404)


def _html(html: str, status: int, headers: dict[str, str] | None = None) -> HTMLResponse:
    sent = {**page_headers(static_page_policy(html)), **(headers or {})}
    return HTMLResponse(html, status_code=status, headers=sent)


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def _weight_text(grams: int) -> str:
    """``1.234 kg（2.468 斤）``: exact, grams are a whole number."""
    kg = Decimal(grams).scaleb(-3)
    jin = Decimal(grams * 2).scaleb(-3)
    return f"{kg} kg（{jin} 斤）"


def _date_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def _time_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


# -- shaping -------------------------------------------------------------------------------


def _trace(market: Market, found: trace.BatchTrace) -> Trace:
    balance = found.balance
    return Trace(
        market=market.id,
        trace_code=found.trace_code,
        batch=None if found.batch is None else _batch(market, found.batch),
        sales=[_sale(market, sale) for sale in found.sales],
        sold_g=found.sold_g,
        remaining_g=None if balance is None else balance.remaining_g,
        oversold=balance is not None and balance.oversold,
        tests=_tests(market, found.tests),
        test_state=_test_state(found.tests),
    )


def _receipt_or_404(store: Store, market: Market, scale: str, msg_id: int) -> trace.ReceiptTrace:
    found = trace.receipt_trace(store, market.id, scale, msg_id)
    if found is None:
        raise NotFound(f"no sale with message id {msg_id} from scale {scale!r}")
    return found


def _batch(market: Market, row: BatchRow) -> Batch:
    return Batch(
        trace_code=row.trace_code,
        product=_product(market, row.plu),
        origin=row.origin,
        supplier=row.supplier,
        certificate_no=row.certificate_no,
        rapid_test=_rapid_test(row),
        quantity_g=row.quantity_g,
        intake_at=row.ts.astimezone(market.tz),
        station=row.station,
        vendor=_vendor(market, row.vendor),
    )


def _tests(market: Market, tests: Sequence[BatchTest]) -> list[BatchTestOut]:
    return [
        BatchTestOut(
            at=test.ts.astimezone(market.tz),
            result="pass" if test.passed else "fail",
            inhibition_pct=str(test.inhibition_pct),
            at_intake=test.at_intake,
        )
        for test in tests
    ]


def _test_state(tests: Sequence[BatchTest]) -> TestState:
    if not tests:
        return "untested"
    return "passed" if tests[-1].passed else "failed"


def _rapid_test(row: BatchRow) -> RapidTestResult | None:
    if row.rapid_test_passed is None or row.inhibition_pct is None:
        return None  # not tested at intake
    return RapidTestResult(
        result="pass" if row.rapid_test_passed else "fail", inhibition_pct=str(row.inhibition_pct)
    )


def _sale(market: Market, row: SaleRow) -> Sale:
    return Sale(
        at=row.ts.astimezone(market.tz),
        scale=row.scale,
        msg_id=row.msg_id,
        weight_g=row.weight_g,
        unit_price_fen_per_kg=row.unit_price_fen_per_kg,
        unit_price_yuan_per_kg=yuan_per_kg(row.unit_price_fen_per_kg),
        unit_price_yuan_per_jin=yuan_per_jin(row.unit_price_fen_per_kg),
        total_fen=row.total_fen,
        total_yuan=yuan(row.total_fen),
        trace_status=row.trace_status,
        origin_verified=row.origin_verified,
    )


def _receipt_sale(market: Market, row: SaleRow) -> ReceiptSale:
    return ReceiptSale(
        **_sale(market, row).model_dump(),
        vendor=_vendor(market, row.vendor),
        product=_product(market, row.plu),
        trace_code=row.trace_code,
    )


def _vendor(market: Market, vendor_id: str) -> VendorRef:
    vendor = market.vendors.get(vendor_id)
    if vendor is None:
        return VendorRef(id=vendor_id, name=None, stall=None)
    return VendorRef(id=vendor.id, name=vendor.name, stall=vendor.stall)


def _product(market: Market, plu: str) -> ProductRef:
    product = market.products.get(plu)
    if product is None:
        return ProductRef(plu=plu, name_zh=None, name_en=None, category=None, unit=None)
    return ProductRef(
        plu=plu,
        name_zh=product.name_zh,
        name_en=product.name_en,
        category=product.category,
        unit=product.unit,
    )
