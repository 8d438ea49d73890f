"""Overview: today's footfall against last week, occupancy, trade, vendors online, alerts."""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Mapping
from typing import Any

import dash_bootstrap_components as dbc
import pandas as pd
from dash import Dash, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import figures, ids, queries
from dashboard.components import LIVE_POLL_MS, SLOW_POLL_MS, Links, card, graph, interval, kpi
from dashboard.i18n import Lang, money_text, t
from dashboard.queries import DashboardData

PATH = "/"
TITLE_KEY = "nav.overview"
_TREND_TICK = "overview-trend-tick"
_SHOWN = "overview-shown"  # what the browser shows, so a poll with no change sends nothing


def layout(data: DashboardData, lang: Lang, market: str) -> html.Div:
    return html.Div(
        [
            interval(ids.OVERVIEW_TICK, LIVE_POLL_MS),
            interval(_TREND_TICK, 6 * SLOW_POLL_MS),
            dcc.Store(id=_SHOWN),
            dbc.Row(id=ids.OVERVIEW_KPIS),
            dbc.Row(
                [
                    dbc.Col(card(t("alerts.title", lang), [], id_=ids.OVERVIEW_ALERTS), lg=6),
                    dbc.Col(card(None, graph(ids.OVERVIEW_TREND)), lg=6),
                ]
            ),
        ]
    )


def register_callbacks(app: Dash, data: DashboardData, links: Links) -> None:
    recent = queries.Recent(ttl_s=data.shared_for_s)

    @app.callback(
        Output(ids.OVERVIEW_KPIS, "children"),
        Output(ids.OVERVIEW_ALERTS, "children"),
        Output(_SHOWN, "data"),
        Input(ids.OVERVIEW_TICK, "n_intervals"),
        Input(ids.MARKET, "value"),
        State(ids.LANG, "data"),
        State(_SHOWN, "data"),
    )
    def refresh(_tick: int, market: str, lang_value: str | None, shown: Any) -> tuple[Any, ...]:
        lang = Lang.of(lang_value)
        # The figures and the alerts read the store apart: at once, the page waits for one.
        figures = data.reads.submit(
            recent.get, ("overview", market), lambda: queries.overview(data, market)
        )
        alerts = data.reads.submit(
            recent.get, ("alerts", market), lambda: queries.alerts(data, market)
        )
        figures_now, alert_frame = figures.result(), alerts.result()
        fingerprint = [market, lang.value, _fingerprint(figures_now, alert_frame)]
        if shown == fingerprint:
            raise PreventUpdate  # nothing changed: the browser keeps what it has
        return (
            kpi_tiles(figures_now, lang),
            alert_list(alert_frame, lang, links.page("/trace")),
            fingerprint,
        )

    @app.callback(
        Output(ids.OVERVIEW_TREND, "figure"),
        Input(_TREND_TICK, "n_intervals"),
        Input(ids.MARKET, "value"),
        State(ids.LANG, "data"),
    )
    def trend(_tick: int, market: str, lang_value: str | None) -> Any:
        return figures.turnover_trend(queries.turnover_by_day(data, market), Lang.of(lang_value))


def _fingerprint(overview: queries.Overview, alerts: pd.DataFrame) -> str:
    text = repr((overview, alerts.to_dict("records")))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def kpi_tiles(o: queries.Overview, lang: Lang) -> list[dbc.Col]:
    change = ""
    if o.footfall_last_week:
        # Integer percent, rounded half away from zero without floats.
        delta = o.footfall_today - o.footfall_last_week
        pct = (abs(delta) * 200 + o.footfall_last_week) // (2 * o.footfall_last_week)
        change = f" ({'+' if delta >= 0 else '-'}{pct}%)"
    return [
        kpi(
            t("kpi.footfall_today", lang),
            f"{o.footfall_today:,}",
            note=f"{t('kpi.vs_last_week', lang)}: {o.footfall_last_week:,}{change}",
            test_id="kpi-footfall",
        ),
        kpi(t("kpi.occupancy", lang), f"{o.occupancy:,}", test_id="kpi-occupancy"),
        kpi(t("kpi.turnover", lang), money_text(o.turnover_fen), test_id="kpi-turnover"),
        kpi(t("kpi.transactions", lang), f"{o.transactions:,}", test_id="kpi-transactions"),
        kpi(
            t("kpi.vendors_online", lang),
            f"{o.vendors_online} / {o.vendors}",
            test_id="kpi-vendors-online",
        ),
    ]


_ALERT_COLOUR = {
    "locked_sale": "danger",
    "failed_on_sale": "danger",
    "oversold": "danger",
    "unverified_sales": "danger",
    "document_expired": "danger",
    "offline": "warning",
    "document_expiring": "warning",
}
_ALERT_TEXT = {
    "locked_sale": "alert.locked_sale",
    "failed_on_sale": "alert.failed_on_sale",
    "oversold": "alert.oversold",
    "unverified_sales": "alert.unverified_sales",
    "offline": "alert.offline",
    "rejects": "alert.rejects",
    "document_expired": "alert.document_expired",
    "document_expiring": "alert.document_expiring",
}


#: Alerts of one kind listed one by one; the rest of the kind are counted on one line.
#: A market at opening or in a network outage has hundreds of devices offline: a list
#: of 300 lines helps no one, and its 3,700 components cost 60 ms at every poll.
ALERTS_SHOWN_PER_KIND = 8


def alert_list(frame: pd.DataFrame, lang: Lang, trace_path: str) -> list[Any]:
    if frame.empty:
        return [html.Div(t("alerts.none", lang), className="text-success", id="alerts-none")]
    items = []
    shown: dict[str, int] = {}
    for row in frame.to_dict("records"):
        kind = str(row["kind"])
        shown[kind] = shown.get(kind, 0) + 1
        if shown[kind] <= ALERTS_SHOWN_PER_KIND:
            items.append(_alert_item(kind, row, lang, trace_path))
        elif shown[kind] == ALERTS_SHOWN_PER_KIND + 1:
            items.append(_more_item(kind, frame, lang))
    return [dbc.ListGroup(items, flush=True, style={"maxHeight": "360px", "overflowY": "auto"})]


def _alert_item(kind: str, row: Mapping[Hashable, Any], lang: Lang, trace_path: str) -> Any:
    subject: Any = row["subject"]
    if kind in {"locked_sale", "failed_on_sale", "oversold"}:
        subject = html.A(subject, href=f"{trace_path}?q={subject}")
    return dbc.ListGroupItem(
        [
            _badge(kind, lang),
            html.Span(subject, className="fw-semibold me-2"),
            html.Span(_detail(kind, str(row["detail"]), lang), className="text-muted"),
        ],
        className=f"alert-{kind}",
    )


def _more_item(kind: str, frame: pd.DataFrame, lang: Lang) -> Any:
    hidden = int((frame["kind"] == kind).sum()) - ALERTS_SHOWN_PER_KIND
    return dbc.ListGroupItem(
        [_badge(kind, lang), html.Span(t("alerts.more", lang).format(count=hidden))],
        className=f"alert-{kind} alert-more",
    )


def _badge(kind: str, lang: Lang) -> Any:
    return dbc.Badge(
        t(_ALERT_TEXT[kind], lang), color=_ALERT_COLOUR.get(kind, "secondary"), className="me-2"
    )


def _detail(kind: str, detail: str, lang: Lang) -> str:
    """A document alert names its kind in the reader's language."""
    if kind in {"document_expired", "document_expiring"}:
        document, _, rest = detail.partition(" ")
        return f"{t('document.' + document, lang)} {rest}"
    return detail
