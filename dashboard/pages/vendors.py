"""Vendors & devices: today's trade and current prices per vendor, device status, dead letters."""

from __future__ import annotations

import hashlib
from typing import Any

from dash import Dash, Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dashboard import ids, queries
from dashboard.components import SLOW_POLL_MS, Links, card, grid, interval
from dashboard.i18n import Lang, t
from dashboard.queries import DashboardData

PATH = "/vendors"
TITLE_KEY = "nav.vendors"
_SHOWN = "vendors-shown"


def layout(data: DashboardData, lang: Lang, market: str) -> html.Div:
    vendor_columns: list[dict[str, Any]] = [
        {"field": "stall", "headerName": t("col.stall", lang), "maxWidth": 110},
        {"field": "name", "headerName": t("col.vendor", lang)},
        {
            "field": "turnover_fen",
            "headerName": t("col.turnover", lang),
            "type": "numericColumn",
            "valueFormatter": {"function": "params.data.turnover_text"},
            "sort": "desc",
        },
        {
            "field": "transactions",
            "headerName": t("col.transactions", lang),
            "type": "numericColumn",
        },
        {
            "field": "avg_ticket_text",
            "headerName": t("col.avg_ticket", lang),
            "type": "numericColumn",
        },
        {
            "field": "prices",
            "headerName": t("col.prices", lang),
            "minWidth": 320,
            "tooltipField": "prices",
        },
        {
            "field": "unverified",
            "headerName": t("col.unverified", lang),
            "type": "numericColumn",
            "cellClassRules": {"text-danger fw-bold": "params.value > 0"},
        },
    ]
    device_columns: list[dict[str, Any]] = [
        {"field": "device", "headerName": t("col.device", lang)},
        {"field": "kind", "headerName": t("col.kind", lang)},
        {"field": "vendor", "headerName": t("col.vendor", lang)},
        {
            "field": "status",
            "headerName": t("col.status", lang),
            "valueFormatter": {"function": _status_formatter(lang)},
            "cellClassRules": {
                "text-danger fw-bold": "params.value == 'offline' || params.value == 'silent'",
                "text-success": "params.value == 'online'",
            },
        },
        {"field": "last_seen", "headerName": t("col.last_seen", lang), "minWidth": 160},
        {"field": "messages", "headerName": t("col.messages", lang), "type": "numericColumn"},
        {"field": "rejects", "headerName": t("col.rejects", lang), "type": "numericColumn"},
        {
            "field": "unverified",
            "headerName": t("col.unverified", lang),
            "type": "numericColumn",
            "cellClassRules": {"text-danger fw-bold": "params.value > 0"},
        },
    ]
    dead_columns: list[dict[str, Any]] = [
        {"field": "received", "headerName": t("col.received", lang), "minWidth": 160},
        {"field": "device", "headerName": t("col.device", lang)},
        {"field": "topic", "headerName": t("col.topic", lang), "minWidth": 240},
        {
            "field": "reason",
            "headerName": t("col.reason", lang),
            "minWidth": 320,
            "tooltipField": "reason",
        },
    ]
    return html.Div(
        [
            interval(ids.VENDORS_TICK, SLOW_POLL_MS),
            dcc.Store(id=_SHOWN),
            card(
                t("vendors.title", lang),
                grid(ids.VENDORS_GRID, vendor_columns, lang=lang, row_id="vendor"),
            ),
            card(
                t("devices.title", lang),
                grid(ids.DEVICES_GRID, device_columns, lang=lang, row_id="device"),
            ),
            card(
                t("dead.title", lang),
                grid(ids.DEAD_LETTERS_GRID, dead_columns, lang=lang, height="300px"),
            ),
        ]
    )


def _status_formatter(lang: Lang) -> str:
    names = {key: t(f"status.{key}", lang) for key in ("online", "offline", "unknown", "silent")}
    cases = " : ".join(f"params.value == '{k}' ? '{v}'" for k, v in names.items())
    return f"{cases} : params.value"


def register_callbacks(app: Dash, data: DashboardData, links: Links) -> None:
    @app.callback(
        Output(ids.VENDORS_GRID, "rowData"),
        Output(ids.DEVICES_GRID, "rowData"),
        Output(ids.DEAD_LETTERS_GRID, "rowData"),
        Output(_SHOWN, "data"),
        Input(ids.VENDORS_TICK, "n_intervals"),
        Input(ids.MARKET, "value"),
        State(ids.LANG, "data"),
        State(_SHOWN, "data"),
    )
    def refresh(_tick: int, market: str, lang_value: str | None, shown: Any) -> tuple[Any, ...]:
        lang = Lang.of(lang_value)
        today = queries.read_vendors_today(
            data, data.market(market)
        )  # the store, once for all three
        tables = (
            queries.vendor_table(data, market, lang, today),
            queries.device_table(data, market, lang, today),
            queries.dead_letters(data, market, today),
        )
        digests = [market, lang.value, *(_digest(rows) for rows in tables)]
        before = shown if isinstance(shown, list) and shown[:2] == digests[:2] else [None] * 5
        if before == digests:
            raise PreventUpdate  # unchanged since the last poll: send nothing
        # Only the grids whose rows changed travel to the browser.
        changed = [
            rows if before[i + 2] != digests[i + 2] else no_update for i, rows in enumerate(tables)
        ]
        return (*changed, digests)


def _digest(rows: list[dict[str, Any]]) -> str:
    return hashlib.sha256(repr(rows).encode("utf-8")).hexdigest()
