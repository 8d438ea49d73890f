"""Small building blocks the pages share: cards, KPI tiles and grids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import dcc, html

from dashboard.i18n import Lang

#: Live pages poll no faster than this (the issue asks for 2-5 s); slower pages use more.
LIVE_POLL_MS = 3_000
SLOW_POLL_MS = 10_000


@dataclass(frozen=True)
class Links:
    """Where the pages link to: their own paths, and the API's public pages."""

    #: The path the browser sees the dashboard under, ending in "/".
    dashboard: str = "/dashboard/"
    #: The API's origin for links to public pages ("" for the same origin).
    api: str = ""

    def page(self, path: str) -> str:
        return self.dashboard.rstrip("/") + path

    def page_of(self, pathname: str | None) -> str:
        """The page path ("/prices") of a URL path the browser is on."""
        base = self.dashboard.rstrip("/")
        path = pathname or "/"
        if path.startswith(base):
            path = path[len(base) :]
        return "/" + path.strip("/")


def card(title: str | None, body: Any, *, id_: str | None = None) -> dbc.Card:
    """A panel; charts pass no title, since their figure carries it (in the chosen language)."""
    inner = dbc.CardBody(body) if id_ is None else dbc.CardBody(body, id=id_)
    parts = [inner] if title is None else [dbc.CardHeader(title, className="fw-semibold"), inner]
    return dbc.Card(parts, className="mb-3 shadow-sm")


def kpi(label: str, value: str, *, note: str = "", test_id: str = "") -> dbc.Col:
    return dbc.Col(
        dbc.Card(
            dbc.CardBody(
                [
                    html.Div(label, className="text-muted small"),
                    html.Div(value, className="fs-4 fw-bold text-nowrap", id=test_id or None),
                    html.Div(note, className="small text-secondary"),
                ]
            ),
            className="shadow-sm h-100",
        ),
        xs=6,
        md=4,
        xl=2,
        className="mb-3",
    )


def grid(
    id_: str,
    columns: Sequence[dict[str, Any]],
    *,
    lang: Lang,
    row_id: str | None = None,
    height: str = "420px",
    rows: list[dict[str, Any]] | None = None,
) -> dag.AgGrid:
    options: dict[str, Any] = {"animateRows": False, "suppressCellFocus": True}
    if lang is Lang.ZH:
        options["localeText"] = {"noRowsToShow": "暂无数据", "page": "页", "of": "/"}
    props: dict[str, Any] = {}
    if row_id is not None:
        # Rows keep their identity across updates, so a transaction touches only changed rows.
        props["getRowId"] = f"params.data.{row_id}"
    return dag.AgGrid(
        id=id_,
        columnDefs=list(columns),
        rowData=rows or [],
        defaultColDef={"sortable": True, "resizable": True, "filter": True, "minWidth": 90},
        columnSize="responsiveSizeToFit",
        dashGridOptions=options,
        style={"height": height, "width": "100%"},
        **props,
    )


def interval(id_: str, ms: int) -> dcc.Interval:
    return dcc.Interval(id=id_, interval=ms, n_intervals=0)


def graph(id_: str) -> dcc.Graph:
    return dcc.Graph(id=id_, config={"displaylogo": False, "responsive": True})


def picked_day(text: str | None) -> date | None:
    """The day a ``dcc.DatePickerSingle`` sends; None for none or a malformed one (a
    tampered request): the page then shows today."""
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None
