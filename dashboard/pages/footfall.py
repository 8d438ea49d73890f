"""Footfall: a day by gate and hour, a weekday × hour heatmap, and 30 days of daily totals."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, dcc, html

from dashboard import figures, ids, queries
from dashboard.components import Links, card, graph, picked_day
from dashboard.i18n import Lang, t
from dashboard.queries import DashboardData

PATH = "/footfall"
TITLE_KEY = "nav.footfall"


def layout(data: DashboardData, lang: Lang, market: str) -> html.Div:
    found = data.market(market)
    today = queries.market_today(found, data.now())
    return html.Div(
        [
            dbc.Row(
                [
                    dbc.Col(
                        dcc.DatePickerSingle(
                            id=ids.FOOTFALL_DAY,
                            date=today.isoformat(),
                            max_date_allowed=today.isoformat(),
                            display_format="YYYY-MM-DD",
                            first_day_of_week=1,
                        ),
                        width="auto",
                    ),
                    dbc.Col(html.Div(id=ids.FOOTFALL_SUMMARY, className="fs-5 pt-2"), width="auto"),
                ],
                className="mb-2",
            ),
            card(None, graph(ids.FOOTFALL_HOURLY)),
            dbc.Row(
                [
                    dbc.Col(card(None, graph(ids.FOOTFALL_HEATMAP)), lg=6),
                    dbc.Col(card(None, graph(ids.FOOTFALL_DAILY)), lg=6),
                ]
            ),
        ]
    )


def register_callbacks(app: Dash, data: DashboardData, links: Links) -> None:
    @app.callback(
        Output(ids.FOOTFALL_HOURLY, "figure"),
        Output(ids.FOOTFALL_SUMMARY, "children"),
        Input(ids.FOOTFALL_DAY, "date"),
        State(ids.MARKET, "value"),
        State(ids.LANG, "data"),
    )
    def day(day_text: str | None, market: str, lang_value: str | None) -> tuple[Any, ...]:
        lang = Lang.of(lang_value)
        found = data.market(market)
        chosen = picked_day(day_text) or queries.market_today(found, data.now())
        frame = queries.footfall_day(data, market, chosen)
        names = {gate.id: gate.name for gate in found.spec.gates}
        total = int(frame["people_in"].sum()) if not frame.empty else 0
        summary = f"{t('footfall.total', lang)}: {total:,} {t('people', lang)}"
        return figures.footfall_by_gate(frame, lang, names), summary

    @app.callback(
        Output(ids.FOOTFALL_HEATMAP, "figure"),
        Output(ids.FOOTFALL_DAILY, "figure"),
        Input(ids.MARKET, "value"),
        State(ids.LANG, "data"),
    )
    def weeks(market: str, lang_value: str | None) -> tuple[Any, ...]:
        lang = Lang.of(lang_value)
        return (
            figures.footfall_heatmap(queries.footfall_heatmap(data, market), lang),
            figures.footfall_daily(queries.footfall_daily(data, market), lang),
        )
