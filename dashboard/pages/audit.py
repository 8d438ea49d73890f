"""The audit log: who changed what in the market's registry, and when, newest first."""

from __future__ import annotations

import json
from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, html

from dashboard.components import Links, card, grid
from dashboard.i18n import Lang, t
from dashboard.queries import DashboardData
from marketdb.audit import AuditEntry

PATH = "/audit"
TITLE_KEY = "nav.audit"
GRID = "audit-grid"
#: The newest entries the page shows (the API pages further back).
SHOWN = 500


def layout(data: DashboardData, lang: Lang, market: str) -> html.Div:
    if data.management is None:
        return html.Div(dbc.Alert(t("manage.unavailable", lang), color="info"))
    columns: list[dict[str, Any]] = [
        {"field": "at", "headerName": t("col.at", lang), "minWidth": 170},
        {"field": "actor", "headerName": t("col.actor", lang)},
        {"field": "action", "headerName": t("col.action", lang)},
        {"field": "entity", "headerName": t("col.entity", lang)},
        {"field": "entity_id", "headerName": t("col.entity_id", lang)},
        {"field": "before", "headerName": t("col.before", lang), "minWidth": 260},
        {"field": "after", "headerName": t("col.after", lang), "minWidth": 260},
    ]
    entries = data.management.audit(market_id=market, limit=SHOWN)
    rows = [_row(entry, data) for entry in entries]
    return html.Div(
        card(t("audit.title", lang), grid(GRID, columns, lang=lang, row_id="id", rows=rows))
    )


def _row(entry: AuditEntry, data: DashboardData) -> dict[str, Any]:
    market = data.markets().get(entry.market or "")
    at = entry.at if market is None else entry.at.astimezone(market.tz)
    return {
        "id": str(entry.id),
        "at": at.strftime("%Y-%m-%d %H:%M:%S"),
        "actor": entry.actor,
        "action": entry.action,
        "entity": entry.entity,
        "entity_id": entry.entity_id,
        "before": json.dumps(entry.before, ensure_ascii=False),
        "after": json.dumps(entry.after, ensure_ascii=False),
    }


def register_callbacks(app: Dash, data: DashboardData, links: Links) -> None:
    """The page is read when opened; nothing polls."""
