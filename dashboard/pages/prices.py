"""Live prices: the market board, kept current by polling, and a product's history and spread.

The grid polls every few seconds with the board version it shows. Nothing
changed: the callback sends nothing. Something changed: it sends a row
transaction with only the products whose figures moved (:class:`queries.BoardCache`).
"""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dashboard import figures, ids, queries
from dashboard.components import LIVE_POLL_MS, Links, card, graph, grid, interval
from dashboard.i18n import Lang, t
from dashboard.queries import BoardCache, DashboardData

PATH = "/prices"
TITLE_KEY = "nav.prices"
_RANGES = (1, 7, 30)


def layout(data: DashboardData, lang: Lang, market: str) -> html.Div:
    columns: list[dict[str, Any]] = [
        {"field": "product", "headerName": t("col.product", lang), "minWidth": 120},
        {"field": "category", "headerName": t("col.category", lang)},
        _price_column("min", t("col.min", lang)),
        _price_column("median", t("col.median", lang)),
        _price_column("max", t("col.max", lang)),
        {"field": "vendors", "headerName": t("col.vendors", lang), "type": "numericColumn"},
        {"field": "promotions", "headerName": t("col.promotions", lang), "type": "numericColumn"},
    ]
    return html.Div(
        [
            interval(ids.PRICES_TICK, LIVE_POLL_MS),
            dcc.Store(id=ids.PRICES_VERSION),
            card(
                t("prices.title", lang),
                [
                    html.Div(t("prices.hint", lang), className="text-muted small mb-2"),
                    grid(ids.PRICES_GRID, columns, lang=lang, row_id="plu", height="460px"),
                ],
            ),
            dbc.RadioItems(
                id=ids.PRICES_RANGE,
                options=[{"label": t(f"range.{d}d", lang), "value": d} for d in _RANGES],
                value=7,
                inline=True,
                className="mb-2",
            ),
            html.H5(id=ids.PRICES_DETAIL_TITLE, className="mt-2"),
            dbc.Row(
                [
                    dbc.Col(graph(ids.PRICES_HISTORY), lg=7),
                    dbc.Col(graph(ids.PRICES_SPREAD), lg=5),
                ]
            ),
        ]
    )


def _price_column(name: str, header: str) -> dict[str, Any]:
    # Sorted by the exact fen figure; the cell shows the price tag text.
    return {
        "field": f"{name}_fen",
        "headerName": header,
        "type": "numericColumn",
        "valueFormatter": {"function": f"params.data.{name}_text"},
        "comparator": {"function": "Number(valueA) - Number(valueB)"},
        "filter": False,
    }


def register_callbacks(app: Dash, data: DashboardData, links: Links) -> None:
    cache = BoardCache()

    @app.callback(
        Output(ids.PRICES_GRID, "rowData"),
        Output(ids.PRICES_GRID, "rowTransaction"),
        Output(ids.PRICES_VERSION, "data"),
        Input(ids.PRICES_TICK, "n_intervals"),
        Input(ids.MARKET, "value"),
        State(ids.LANG, "data"),
        State(ids.PRICES_VERSION, "data"),
    )
    def board(_tick: int, market: str, lang_value: str | None, shown: Any) -> tuple[Any, ...]:
        lang = Lang.of(lang_value)
        since = _shown_tag(shown, market, lang)
        update = cache.update(data, market, lang, since)
        version = {"market": market, "lang": lang.value, "tag": update.tag}
        if update.rows is not None:
            return update.rows, no_update, version
        if update.transaction is not None:
            return no_update, update.transaction, version
        raise PreventUpdate  # the browser's board is current

    @app.callback(
        Output(ids.PRICES_HISTORY, "figure"),
        Output(ids.PRICES_SPREAD, "figure"),
        Output(ids.PRICES_DETAIL_TITLE, "children"),
        Input(ids.PRICES_GRID, "cellClicked"),
        Input(ids.PRICES_RANGE, "value"),
        State(ids.MARKET, "value"),
        State(ids.LANG, "data"),
    )
    def detail(
        clicked: dict[str, Any] | None, days: int, market: str, lang_value: str | None
    ) -> tuple[Any, ...]:
        lang = Lang.of(lang_value)
        plu = (clicked or {}).get("rowId") or _first_product(data, market)
        if plu is None:
            raise PreventUpdate
        label = queries.product_label(data, market, plu, lang)
        names = {v.id: f"{v.stall} {v.name}" for v in data.market(market).spec.vendors}
        days = days if days in _RANGES else 7
        history = figures.price_history(
            queries.price_history(data, market, plu, days),
            lang,
            title=f"{t('history.title', lang)} · {label}",
            vendor_names=names,
        )
        spread = figures.price_spread(
            queries.price_spread(data, market, plu), lang, title=t("spread.title", lang)
        )
        return history, spread, label


def _shown_tag(shown: Any, market: str, lang: Lang) -> str | None:
    """The board version the browser shows, if it is of this market and language."""
    if (
        isinstance(shown, dict)
        and shown.get("market") == market
        and shown.get("lang") == lang.value
    ):
        tag = shown.get("tag")
        return tag if isinstance(tag, str) else None
    return None


def _first_product(data: DashboardData, market: str) -> str | None:
    products = data.live.board(data.market(market).id).products
    return products[0].plu if products else None
