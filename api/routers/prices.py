"""Public price endpoints: the market board, a vendor's prices, and a stall screen.

Served from the :class:`~marketview.live_mqtt.LiveView`, never from the store: screens poll
every few seconds. Each response carries a weak ETag naming the view state it
was rendered from (see :class:`~marketview.live.ViewState`) and ``Cache-Control:
no-cache``, so clients revalidate every time and get ``304 Not Modified`` while
nothing changed. A rendered body is kept on the immutable view it came from, so
a poll costs a dictionary lookup and a string comparison.

Money is integer fen per kilogram plus display strings in yuan; never a float.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from api._exceptions import APIError, ErrorBody, NotFound, UnknownMarket
from api.deps import MarketId, get_context
from marketview.live import (
    Board,
    Quote,
    UnknownName,
    UnknownStall,
    UnknownVendor,
    VendorQuotes,
    ViewState,
)
from marketview.live_mqtt import LiveView
from marketview.pricing import MedianFigure, PriceFigure, median_figure, price_figure
from schemas.messages import Identifier
from schemas.registry import Category, Market, Product, SaleUnit

router = APIRouter(tags=["prices"])

_RETRY_AFTER_S = 5
_JSON = "application/json"
_RENDERED = "json"  # key of the rendered body in a view's memo


# -- response models ---------------------------------------------------------------


class _ProductInfo(BaseModel):
    plu: str = Field(description="Product look-up code.")
    name_zh: str
    name_en: str
    category: Category
    unit: SaleUnit = Field(description="The unit the market quotes this product in.")


class ProductPrices(_ProductInfo):
    """One line of the board. Prices are what a customer pays now (promotional while one runs)."""

    vendors: int = Field(ge=1, description="Vendors with a current price for this product.")
    min: PriceFigure
    median: MedianFigure
    max: PriceFigure
    promotions_active: int = Field(ge=0, description="Vendors running a promotion on it now.")


def _example_figure(fen_per_kg: int) -> dict[str, JsonValue]:
    return price_figure(fen_per_kg).model_dump()


class MarketBoard(BaseModel):
    """Current prices of every product that at least one vendor has priced."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "market": "nanmen",
                    "name": "南门农贸市场",
                    "name_en": "Nanmen Farmers' Market",
                    "products": [
                        {
                            "plu": "1002",
                            "name_zh": "西红柿",
                            "name_en": "Tomato",
                            "category": "vegetables",
                            "unit": "jin",
                            "vendors": 4,
                            "min": _example_figure(596),
                            "median": {**_example_figure(699), "fen_per_kg": "699"},
                            "max": _example_figure(796),
                            "promotions_active": 1,
                        }
                    ],
                }
            ]
        }
    )

    market: str
    name: str
    name_en: str
    products: list[ProductPrices]


class ActivePromotion(BaseModel):
    price: PriceFigure
    text: str = Field(description="What the screen says, e.g. 限时特价.")
    until: datetime = Field(description="When the promotion ends, in the market's time zone.")


class VendorProductPrice(_ProductInfo):
    price: PriceFigure = Field(description="The regular price.")
    promotion: ActivePromotion | None = Field(
        description="The promotion running now, or null; a customer pays its price while it runs."
    )
    set_at: datetime = Field(description="When the vendor set this price (device time).")
    suspended: bool = Field(
        default=False,
        description="暂停销售: a batch of this product failed its rapid test and is locked; "
        "the screen shows it as suspended and the scale refuses to sell it.",
    )


class VendorPrices(BaseModel):
    """A vendor's current prices: what its stall screen shows."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "market": "nanmen",
                    "vendor": "V-A01",
                    "name": "王记蔬菜",
                    "stall": "A01",
                    "prices": [
                        {
                            "plu": "1001",
                            "name_zh": "大白菜",
                            "name_en": "Napa cabbage",
                            "category": "vegetables",
                            "unit": "jin",
                            "price": {
                                "fen_per_kg": 398,
                                "yuan_per_kg": "3.98",
                                "yuan_per_jin": "1.99",
                            },
                            "promotion": {
                                "price": {
                                    "fen_per_kg": 298,
                                    "yuan_per_kg": "2.98",
                                    "yuan_per_jin": "1.49",
                                },
                                "text": "限时特价",
                                "until": "2026-11-21T12:00:00+08:00",
                            },
                            "set_at": "2026-11-21T06:05:12.345000+08:00",
                        }
                    ],
                }
            ]
        }
    )

    market: str
    vendor: str
    name: str = Field(description="The vendor's name as registered.")
    stall: str
    prices: list[VendorProductPrice]


# -- errors ------------------------------------------------------------------------


class LiveViewNotReady(APIError):
    """The view has not loaded the store yet; serving it would show an empty market."""

    status_code = 503
    default_code = "prices_not_ready"


def _not_found(exc: UnknownName) -> APIError:
    if isinstance(exc, UnknownVendor):
        return NotFound(str(exc), code="unknown_vendor")
    if isinstance(exc, UnknownStall):
        return NotFound(str(exc), code="unknown_stall")
    return UnknownMarket(exc.name)


# -- routes ------------------------------------------------------------------------

VendorId = Annotated[Identifier, Path(description="Vendor id.", examples=["V-A01"])]
StallId = Annotated[Identifier, Path(description="Stall number.", examples=["A01"])]

_STRING = {"type": "string"}
_HEADERS = {
    "ETag": {"description": "Weak validator of this content.", "schema": _STRING},
    "Cache-Control": {"description": "Always `no-cache`: revalidate.", "schema": _STRING},
}
_CONDITIONAL: dict[int | str, dict[str, Any]] = {
    200: {"headers": _HEADERS},
    304: {
        "description": "Not modified: the If-None-Match ETag is still current.",
        "headers": _HEADERS,
    },
    503: {
        "model": ErrorBody,
        "description": "Prices are not loaded yet (the store has not answered since start).",
    },
}


@router.get(
    "/markets/{market}/prices",
    response_model=MarketBoard,
    responses=_CONDITIONAL,
    summary="Price board of a market",
    operation_id="market_prices",
)
async def market_prices(request: Request, market: MarketId) -> Response:
    """Per product: lowest, median and highest current price across vendors."""
    live = _live(request)
    try:
        board = live.board(market)
    except UnknownName as exc:
        raise _not_found(exc) from None
    return _conditional(request, board.state, board.memo, lambda: _render_board(live, board))


@router.get(
    "/markets/{market}/vendors/{vendor}/prices",
    response_model=VendorPrices,
    responses=_CONDITIONAL,
    summary="A vendor's current prices and promotions",
    operation_id="vendor_prices",
)
async def vendor_prices(request: Request, market: MarketId, vendor: VendorId) -> Response:
    live = _live(request)
    try:
        quotes = live.vendor_prices(market, vendor)
    except UnknownName as exc:
        raise _not_found(exc) from None
    return _vendor_answer(request, live, quotes)


@router.get(
    "/markets/{market}/stalls/{stall}/screen",
    response_model=VendorPrices,
    responses=_CONDITIONAL,
    summary="What a stall's price screen shows",
    operation_id="stall_screen",
)
async def stall_screen(request: Request, market: MarketId, stall: StallId) -> Response:
    """The stall's vendor, its current prices and running promotions. Poll with If-None-Match."""
    live = _live(request)
    try:
        quotes = live.stall_screen(market, stall)
    except UnknownName as exc:
        raise _not_found(exc) from None
    return _vendor_answer(request, live, quotes)


def _vendor_answer(request: Request, live: LiveView, quotes: VendorQuotes) -> Response:
    """A vendor's prices with its suspended products: the ETag and the rendering kept
    for the price view are per suspension state too (a lock changes the screen)."""
    suspensions = live.suspensions(quotes.market)
    suspended = suspensions.of(quotes.vendor)
    return _conditional(
        request,
        quotes.state,
        quotes.memo,
        lambda: _render_vendor(live, quotes, suspended),
        variant=f"s{suspensions.changes}" if suspensions.changes else "",
    )


# -- plumbing --------------------------------------------------------------------


def _live(request: Request) -> LiveView:
    # Read directly, not through a dependency: a sync dependency would cost a thread
    # hop on the hottest path of the API.
    live = get_context(request).live
    if not live.synced:
        raise LiveViewNotReady(
            "prices are not loaded yet; try again shortly",
            headers={"Retry-After": str(_RETRY_AFTER_S)},
        )
    return live


def _conditional(
    request: Request,
    state: ViewState,
    memo: dict[str, bytes],
    render: Callable[[], bytes],
    *,
    variant: str = "",
) -> Response:
    """``variant`` names what else the body depends on (a vendor's suspensions)."""
    etag = f'W/"{state.tag}{"-" + variant if variant else ""}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    key = _RENDERED + variant
    body = memo.get(key)
    if body is None:
        # Views are immutable, so the body stays right for as long as the view is served.
        body = memo[key] = render()
    return Response(body, media_type=_JSON, headers=headers)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of ``etag`` against an If-None-Match list."""
    if not if_none_match:
        return False
    wanted = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == wanted:
            return True
    return False


# -- rendering (once per view state) ---------------------------------------------------


def _render_board(live: LiveView, board: Board) -> bytes:
    market = live.registry.markets[board.market]
    products = [
        ProductPrices(
            **_product_info(market.products[line.plu]),
            vendors=line.vendors,
            min=price_figure(line.min_fen_per_kg),
            median=median_figure(line.median_fen_per_kg),
            max=price_figure(line.max_fen_per_kg),
            promotions_active=line.promotions_active,
        )
        for line in board.products
    ]
    info = market.spec.market
    body = MarketBoard(market=market.id, name=info.name, name_en=info.name_en, products=products)
    return body.model_dump_json().encode()


def _render_vendor(
    live: LiveView, quotes: VendorQuotes, suspended: frozenset[str] = frozenset()
) -> bytes:
    market = live.registry.markets[quotes.market]
    vendor = market.vendors[quotes.vendor]
    body = VendorPrices(
        market=market.id,
        vendor=vendor.id,
        name=vendor.name,
        stall=vendor.stall,
        prices=[_vendor_line(market, quote, quote.plu in suspended) for quote in quotes.quotes],
    )
    return body.model_dump_json().encode()


def _vendor_line(market: Market, quote: Quote, suspended: bool) -> VendorProductPrice:
    tz = market.tz
    promo = quote.promo
    return VendorProductPrice(
        **_product_info(market.products[quote.plu]),
        price=price_figure(quote.price_fen_per_kg),
        promotion=None
        if promo is None
        else ActivePromotion(
            price=price_figure(promo.price_fen_per_kg),
            text=promo.text,
            until=_local(promo.until, tz),
        ),
        set_at=_local(quote.set_at, tz),
        suspended=suspended,
    )


def _product_info(product: Product) -> dict[str, Any]:
    return {
        "plu": product.plu,
        "name_zh": product.name_zh,
        "name_en": product.name_en,
        "category": product.category,
        "unit": product.unit,
    }


def _local(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz)
