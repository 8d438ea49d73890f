"""Managing products: list, add, edit (names, category, sale unit), remove one nobody sells.

A product's PLU is its identity, on every scale and in every stored sale, so it
is never edited: a new PLU is a new product. A product that vendors list cannot
be removed (the refusal names them); one that is removed makes its later sales
unknown to ingest (dead-lettered with that reason), while stored sales keep it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from marketdb._exceptions import Conflict, NotFound
from marketdb.changes import (
    Clock,
    check_market,
    flush_edit,
    record_change,
    require_version,
    utc_now,
)
from marketdb.marketfile import export_market, product_of
from marketdb.models import MarketRow, ProductRow
from schemas.registry import Product

ENTITY = "product"


@dataclass(frozen=True, slots=True)
class VersionedProduct:
    """A product as stored, and the version an edit of it must name."""

    product: Product
    version: int


def list_products(session: Session, market_id: str) -> list[VersionedProduct]:
    market = session.get(MarketRow, market_id)
    if market is None:
        raise NotFound(f"no market {market_id!r}")
    return [_versioned(row) for row in market.products]


def get_product(session: Session, market_id: str, plu: str) -> VersionedProduct:
    return _versioned(_row(session, market_id, plu))


def create_product(
    session: Session, market_id: str, product: Product, *, actor: str, clock: Clock = utc_now
) -> VersionedProduct:
    spec = export_market(session, market_id)
    if session.get(ProductRow, (market_id, product.plu)) is not None:
        raise Conflict(f"product {product.plu!r} exists in market {market_id!r}")
    check_market(spec, products=(*spec.products, product))
    market = session.get(MarketRow, market_id)
    assert market is not None  # export_market found it
    row = ProductRow(market_id=market_id, plu=product.plu, position=len(market.products))
    row.version = 1
    _apply(row, product)
    market.products.append(row)
    session.flush()
    record_change(
        session,
        actor=actor,
        action="create",
        entity=ENTITY,
        entity_id=product.plu,
        market_id=market_id,
        before=None,
        after=product.model_dump(mode="json"),
        clock=clock,
    )
    return _versioned(row)


def update_product(
    session: Session,
    market_id: str,
    product: Product,
    *,
    if_version: int,
    actor: str,
    clock: Clock = utc_now,
) -> VersionedProduct:
    """A new name, category or sale unit; a vendor's declared categories must still hold it."""
    row = _row(session, market_id, product.plu)
    require_version(ENTITY, product.plu, row.version, if_version)
    spec = export_market(session, market_id)
    check_market(
        spec, products=tuple(product if p.plu == product.plu else p for p in spec.products)
    )
    before = product_of(row).model_dump(mode="json")
    _apply(row, product)
    row.version = if_version + 1
    flush_edit(session, ENTITY, product.plu, if_version)
    record_change(
        session,
        actor=actor,
        action="update",
        entity=ENTITY,
        entity_id=product.plu,
        market_id=market_id,
        before=before,
        after=product.model_dump(mode="json"),
        clock=clock,
    )
    return _versioned(row)


def remove_product(
    session: Session,
    market_id: str,
    plu: str,
    *,
    if_version: int,
    actor: str,
    clock: Clock = utc_now,
) -> None:
    """Remove a product no vendor lists (:class:`Conflict` names those who do)."""
    row = _row(session, market_id, plu)
    require_version(ENTITY, plu, row.version, if_version)
    spec = export_market(session, market_id)
    listing = [v.id for v in spec.vendors if plu in v.products]
    if listing:
        raise Conflict(
            f"product {plu!r} is listed by vendors {', '.join(listing)}: take it off their "
            "products first"
        )
    before = product_of(row).model_dump(mode="json")
    session.delete(row)
    flush_edit(session, ENTITY, plu, if_version)  # a concurrent edit refuses it
    record_change(
        session,
        actor=actor,
        action="remove",
        entity=ENTITY,
        entity_id=plu,
        market_id=market_id,
        before=before,
        after=None,
        clock=clock,
    )


def _row(session: Session, market_id: str, plu: str) -> ProductRow:
    row = session.get(ProductRow, (market_id, plu))
    if row is None:
        raise NotFound(f"no product {plu!r} in market {market_id!r}")
    return row


def _apply(row: ProductRow, product: Product) -> None:
    row.name_zh, row.name_en = product.name_zh, product.name_en
    row.category, row.unit = product.category.value, product.unit.value


def _versioned(row: ProductRow) -> VersionedProduct:
    return VersionedProduct(product_of(row), row.version)
