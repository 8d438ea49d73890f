"""Products of a market, managed: names, category and sale unit.

Reads need a viewer token (or better); changes a manager's. A product's PLU is
its identity on every scale and in every stored sale, so it never changes; a
product vendors still list cannot be removed (409 names them).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel

from api._exceptions import AUTH_ERRORS, Conflict, error_responses
from api.deps import MarketDep
from api.editing import IfMatch, ManagementDep, set_etag
from api.security import Manager, Viewer
from marketdb.products import VersionedProduct
from schemas.messages import Plu
from schemas.registry import Product

router = APIRouter(tags=["products"], responses=AUTH_ERRORS)

_EDIT_ERRORS = error_responses(400, 409, 412, 428)
PluParam = Annotated[Plu, Path(description="Product look-up code.", examples=["1001"])]


class ProductRecord(BaseModel):
    """A product and the version an edit of it names (its ETag)."""

    version: int
    product: Product


def _record(found: VersionedProduct) -> ProductRecord:
    return ProductRecord(version=found.version, product=found.product)


@router.get("/markets/{market}/products", summary="Every product of the market")
def list_products(
    market: MarketDep, management: ManagementDep, _viewer: Viewer
) -> list[ProductRecord]:
    return [_record(p) for p in management.products(market.id)]


@router.get("/markets/{market}/products/{plu}", summary="A product, with its version as ETag")
def get_product(
    market: MarketDep,
    plu: PluParam,
    management: ManagementDep,
    response: Response,
    _viewer: Viewer,
) -> ProductRecord:
    found = management.product(market.id, plu)
    set_etag(response, found.version)
    return _record(found)


@router.post(
    "/markets/{market}/products",
    status_code=201,
    summary="Add a product",
    responses=error_responses(400, 409),
)
def create_product(
    market: MarketDep,
    body: Product,
    management: ManagementDep,
    request: Request,
    response: Response,
    caller: Manager,
) -> ProductRecord:
    created = management.create_product(market.id, body, actor=caller.name)
    set_etag(response, created.version)
    response.headers["Location"] = f"{request.url.path}/{body.plu}"
    return _record(created)


@router.put(
    "/markets/{market}/products/{plu}",
    summary="Edit a product; If-Match must name the version edited",
    responses=_EDIT_ERRORS,
)
def update_product(
    market: MarketDep,
    plu: PluParam,
    body: Product,
    version: IfMatch,
    management: ManagementDep,
    response: Response,
    caller: Manager,
) -> ProductRecord:
    if body.plu != plu:
        raise Conflict(f"the body's PLU {body.plu!r} is not the path's {plu!r}")
    edited = management.update_product(market.id, body, if_version=version, actor=caller.name)
    set_etag(response, edited.version)
    return _record(edited)


@router.delete(
    "/markets/{market}/products/{plu}",
    status_code=204,
    summary="Remove a product no vendor lists",
    responses=_EDIT_ERRORS,
)
def remove_product(
    market: MarketDep,
    plu: PluParam,
    version: IfMatch,
    management: ManagementDep,
    caller: Manager,
) -> Response:
    management.remove_product(market.id, plu, if_version=version, actor=caller.name)
    return Response(status_code=204)
