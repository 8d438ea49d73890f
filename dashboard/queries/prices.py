"""Live prices: the board as grid rows and their diffs, a product's history and spread."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from threading import Lock
from typing import Any

import pandas as pd

from dashboard.i18n import Lang, category_name, price_text
from dashboard.queries.common import DashboardData, market_today, product_name
from marketview import analytics, history
from marketview.live import UnknownName
from schemas.registry import Market


@dataclass(frozen=True, slots=True)
class BoardRows:
    """The board as grid rows, and the version of the live view it was built from."""

    tag: str
    rows: tuple[dict[str, Any], ...]

    def by_plu(self) -> dict[str, dict[str, Any]]:
        return {row["plu"]: row for row in self.rows}


@dataclass(frozen=True, slots=True)
class BoardUpdate:
    """What a browser showing board version ``since`` needs to show the current one.

    Either ``rows`` (everything, when the browser's version is unknown here) or a
    grid row transaction (``add``/``update``/``remove``) with only what changed;
    both None when nothing changed.
    """

    tag: str
    rows: list[dict[str, Any]] | None
    transaction: dict[str, list[dict[str, Any]]] | None


class BoardCache:
    """Recent board versions as grid rows, so each poll sends only the rows that changed.

    The live view versions its board (:class:`marketview.live.ViewState`). A browser
    tells which version its grid shows; if that version is still held here the
    answer is a row transaction, otherwise the whole board. Versions are few per
    minute, so a handful per (market, language) covers every polling browser.
    """

    def __init__(self, keep: int = 8) -> None:
        self._keep = keep
        self._lock = Lock()
        self._held: dict[tuple[str, Lang], list[BoardRows]] = {}

    def update(
        self, data: DashboardData, market_id: str, lang: Lang, since: str | None
    ) -> BoardUpdate:
        current = self._current(data, market_id, lang)
        if since == current.tag:
            return BoardUpdate(current.tag, None, None)
        previous = self._find(market_id, lang, since)
        if previous is None:
            return BoardUpdate(current.tag, list(current.rows), None)
        return BoardUpdate(current.tag, None, row_transaction(previous, current))

    def _current(self, data: DashboardData, market_id: str, lang: Lang) -> BoardRows:
        market = data.market(market_id)
        board = data.live.board(market.id)
        tag = board.state.tag
        with self._lock:
            held = self._held.setdefault((market.id, lang), [])
            for rows in held:
                if rows.tag == tag:
                    return rows
        built = BoardRows(tag, tuple(board_rows(market, board.products, lang)))
        with self._lock:
            held.append(built)
            del held[: -self._keep]
        return built

    def _find(self, market_id: str, lang: Lang, tag: str | None) -> BoardRows | None:
        with self._lock:
            for rows in self._held.get((market_id, lang), []):
                if rows.tag == tag:
                    return rows
        return None


def row_transaction(old: BoardRows, new: BoardRows) -> dict[str, list[dict[str, Any]]]:
    """The grid transaction turning ``old`` rows into ``new`` ones (rows keyed by PLU)."""
    before, after = old.by_plu(), new.by_plu()
    return {
        "add": [row for plu, row in after.items() if plu not in before],
        "update": [row for plu, row in after.items() if plu in before and before[plu] != row],
        "remove": [{"plu": plu} for plu in before if plu not in after],
    }


def board_rows(market: Market, products: Sequence[Any], lang: Lang) -> list[dict[str, Any]]:
    """Grid rows of the board's product summaries (:class:`marketview.live.ProductSummary`).

    Sorting uses the integer fen fields; the ``*_text`` fields are what a cell shows.
    """
    rows = []
    for summary in products:
        product = market.products.get(summary.plu)
        name = summary.plu if product is None else product_name(product, lang)
        rows.append(
            {
                "plu": summary.plu,
                "product": name,
                "category": "" if product is None else category_name(product.category.value, lang),
                "min_fen": summary.min_fen_per_kg,
                "min_text": price_text(summary.min_fen_per_kg, lang),
                "median_fen": str(summary.median_fen_per_kg),
                "median_text": price_text(summary.median_fen_per_kg, lang),
                "max_fen": summary.max_fen_per_kg,
                "max_text": price_text(summary.max_fen_per_kg, lang),
                "vendors": summary.vendors,
                "promotions": summary.promotions_active,
            }
        )
    return rows


def product_label(data: DashboardData, market_id: str, plu: str, lang: Lang) -> str:
    product = data.market(market_id).products.get(plu)
    return plu if product is None else product_name(product, lang)


def price_history(data: DashboardData, market_id: str, plu: str, days: int) -> pd.DataFrame:
    """Regular prices in force per vendor and the market median: ``bucket_start, series, fen``.

    Hourly buckets for up to a week, daily beyond. ``series`` is a vendor id or
    ``MEDIAN``; ``fen`` is fen per kg as a Decimal (a median may be half a fen).
    """
    market = data.market(market_id)
    now = data.now()
    last = market_today(market, now)
    first = last - timedelta(days=days - 1)
    bucket = analytics.Bucket.HOUR if days <= 7 else analytics.Bucket.DAY
    prices = history.price_history(data.store, market, plu, (first, last), bucket, now)
    records: list[tuple[datetime, str, Decimal]] = []
    for vendor, points in prices.vendors.items():
        records += [(p.bucket_start, vendor, Decimal(p.price_fen_per_kg)) for p in points]
    records += [(p.bucket_start, MEDIAN, p.median_fen_per_kg) for p in prices.median]
    return _history_frame(records)


MEDIAN = "MEDIAN"


def _history_frame(records: list[tuple[datetime, str, Decimal]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "bucket_start": pd.Series([r[0] for r in records], dtype=object),
            "series": pd.Series([r[1] for r in records], dtype=object),
            "fen": pd.Series([r[2] for r in records], dtype=object),
        }
    )


def price_spread(data: DashboardData, market_id: str, plu: str) -> pd.DataFrame:
    """What each vendor charges for ``plu`` now: ``vendor, stall, fen, promo`` by price."""
    market = data.market(market_id)
    records = []
    for vendor in market.spec.vendors:
        try:
            quotes = data.live.vendor_prices(market.id, vendor.id).quotes
        except UnknownName:
            continue  # a vendor without any price yet
        for quote in quotes:
            if quote.plu == plu:
                records.append(
                    (vendor.name, vendor.stall, quote.current_fen_per_kg, quote.promo is not None)
                )
    frame = pd.DataFrame(records, columns=["vendor", "stall", "fen", "promo"])
    return frame.astype({"fen": "int64", "promo": bool}).sort_values("fen", ignore_index=True)
