"""Food safety: a day's pesticide-residue rapid tests per category, the daily quota, and
the batches that failed, each linked to its trace.

The figures are the read core's (``marketview.foodsafety``), as the public API shows
them; this page only renders them.
"""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, ctx, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import figures, ids, queries
from dashboard.components import SLOW_POLL_MS, Links, card, graph, interval, kpi, picked_day
from dashboard.i18n import Lang, t
from dashboard.pages import trace
from dashboard.queries import DashboardData
from marketview.foodsafety import DayOfTests
from schemas.registry import Market

PATH = "/food-safety"
TITLE_KEY = "nav.food_safety"


def layout(data: DashboardData, lang: Lang, market: str) -> html.Div:
    today = queries.market_today(data.market(market), data.now())
    return html.Div(
        [
            interval(ids.FOOD_SAFETY_TICK, SLOW_POLL_MS),
            dbc.Row(
                dbc.Col(
                    dcc.DatePickerSingle(
                        id=ids.FOOD_SAFETY_DAY,
                        date=today.isoformat(),
                        max_date_allowed=today.isoformat(),
                        display_format="YYYY-MM-DD",
                        first_day_of_week=1,
                    ),
                    width="auto",
                ),
                className="mb-2",
            ),
            dbc.Row(id=ids.FOOD_SAFETY_KPIS),
            dbc.Row(
                [
                    dbc.Col(card(None, graph(ids.FOOD_SAFETY_BY_CATEGORY)), lg=6),
                    dbc.Col(card(t("fs.failed_title", lang), [], id_=ids.FOOD_SAFETY_FAILED), lg=6),
                ]
            ),
        ]
    )


def register_callbacks(app: Dash, data: DashboardData, links: Links) -> None:
    trace_path = links.page(trace.PATH)

    @app.callback(
        Output(ids.FOOD_SAFETY_KPIS, "children"),
        Output(ids.FOOD_SAFETY_BY_CATEGORY, "figure"),
        Output(ids.FOOD_SAFETY_FAILED, "children"),
        Input(ids.FOOD_SAFETY_DAY, "date"),
        Input(ids.FOOD_SAFETY_TICK, "n_intervals"),
        State(ids.MARKET, "value"),
        State(ids.LANG, "data"),
    )
    def day(
        day_text: str | None, _tick: int, market: str, lang_value: str | None
    ) -> tuple[Any, ...]:
        lang = Lang.of(lang_value)
        found = data.market(market)
        today = queries.market_today(found, data.now())
        chosen = picked_day(day_text) or today
        if ctx.triggered_id == ids.FOOD_SAFETY_TICK and chosen != today:
            raise PreventUpdate  # a past day does not change: only today's is polled
        tests = queries.rapid_tests_of_day(data, market, chosen)
        return (
            kpi_tiles(tests, lang),
            figures.tests_by_category(queries.tally_frame(tests), lang),
            failed_list(tests, found, lang, trace_path),
        )


def kpi_tiles(day: DayOfTests, lang: Lang) -> list[Any]:
    """Batches tested, pass rate, failed batches, untested batches and the quota, as KPI
    tiles."""
    total = day.total
    rate = total.pass_rate_pct
    return [
        kpi(
            t("fs.batches_tested", lang),
            f"{total.batches:,}",
            note=t("fs.tests_made", lang).format(count=total.tests),
            test_id="fs-batches",
        ),
        kpi(t("fs.pass_rate", lang), "–" if rate is None else f"{rate}%", test_id="fs-pass-rate"),
        kpi(t("fs.failed", lang), f"{total.failed:,}", test_id="fs-failed"),
        kpi(
            t("fs.untested", lang),
            f"{total.untested:,}",
            note=t("fs.untested_note", lang),
            test_id="fs-untested",
        ),
        kpi(
            t("fs.quota", lang),
            t("fs.quota_value", lang).format(done=total.batches, quota=day.quota),
            note=_quota_note(day, lang),
            test_id="fs-quota",
        ),
    ]


def _quota_note(day: DayOfTests, lang: Lang) -> str:
    if day.quota == 0:
        return t("fs.no_quota", lang)
    if day.quota_met:
        return t("fs.quota_met", lang)
    return t("fs.quota_short", lang).format(short=day.quota - day.total.batches)


def failed_list(day: DayOfTests, market: Market, lang: Lang, trace_path: str) -> list[Any]:
    """The day's failed batches (by their latest test), each linked to its trace."""
    if not day.failed:
        return [html.Div(t("fs.no_failed", lang), className="text-success", id="fs-no-failed")]
    header = html.Thead(
        html.Tr(
            [
                html.Th(t(key, lang))
                for key in (
                    "col.trace_code",
                    "col.vendor",
                    "col.product",
                    "col.inhibition",
                    "col.tested_at",
                    "col.test_kind",
                )
            ]
        )
    )
    rows = [
        html.Tr(
            [
                html.Td(html.A(one.trace_code, href=f"{trace_path}?q={one.trace_code}")),
                html.Td(_vendor_name(market, one.vendor)),
                html.Td(_product_name(market, one.plu, lang)),
                html.Td(f"{one.inhibition_pct}%"),
                html.Td(one.ts.astimezone(market.tz).strftime("%H:%M")),
                html.Td(t("fs.at_intake" if one.at_intake else "fs.spot_check", lang)),
            ],
            className="fs-failed-batch",
        )
        for one in day.failed
    ]
    return [dbc.Table([header, html.Tbody(rows)], size="sm", hover=True, responsive=True)]


def _vendor_name(market: Market, vendor_id: str) -> str:
    vendor = market.vendors.get(vendor_id)
    return vendor_id if vendor is None else vendor.name


def _product_name(market: Market, plu: str, lang: Lang) -> str:
    product = market.products.get(plu)
    return plu if product is None else queries.product_name(product, lang)
