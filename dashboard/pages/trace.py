"""Traceability: find a batch by trace code or receipt; show batch → test → vendor → sales."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, ctx, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import figures, ids, queries
from dashboard.components import Links, card, grid
from dashboard.i18n import Lang, money_text, t, weight_text
from dashboard.queries import DashboardData, TraceChain, UnverifiedReceipt
from storage.interfaces.sales import SaleRow

PATH = "/trace"
TITLE_KEY = "nav.trace"


def layout(data: DashboardData, lang: Lang, market: str) -> html.Div:
    columns: list[dict[str, Any]] = [
        {"field": "time", "headerName": t("col.time", lang), "minWidth": 160},
        {"field": "scale", "headerName": t("col.scale", lang)},
        {"field": "vendor", "headerName": t("col.vendor", lang)},
        {"field": "receipt", "headerName": t("col.receipt", lang)},
        {"field": "weight", "headerName": t("col.weight", lang)},
        {"field": "total", "headerName": t("col.total", lang)},
        {
            "field": "trace_status",
            "headerName": t("col.trace_status", lang),
            "cellClassRules": {"text-danger fw-bold": "params.data.verified === false"},
        },
    ]
    return html.Div(
        [
            dbc.InputGroup(
                [
                    dbc.Input(
                        id=ids.TRACE_QUERY,
                        placeholder=t("trace.placeholder", lang),
                        debounce=True,
                        maxLength=80,
                        autoComplete="off",
                    ),
                    dbc.Button(t("trace.search", lang), id=ids.TRACE_SEARCH, color="primary"),
                ],
                className="mb-3",
            ),
            html.Div(id=ids.TRACE_RESULT),
            dcc.Graph(
                id=ids.TRACE_TIMELINE, config={"displaylogo": False}, style={"display": "none"}
            ),
            card(t("trace.sales", lang), grid(ids.TRACE_SALES, columns, lang=lang, height="360px")),
        ]
    )


def register_callbacks(app: Dash, data: DashboardData, links: Links) -> None:
    @app.callback(
        Output(ids.TRACE_QUERY, "value"),
        Input(ids.URL, "search"),
    )
    def query_from_url(search: str | None) -> str:
        """Links from the overview's alerts open this page with ``?q=<trace code>``."""
        values = parse_qs((search or "").lstrip("?")).get("q")
        if not values:
            raise PreventUpdate
        return values[0]

    @app.callback(
        Output(ids.TRACE_RESULT, "children"),
        Output(ids.TRACE_TIMELINE, "figure"),
        Output(ids.TRACE_TIMELINE, "style"),
        Output(ids.TRACE_SALES, "rowData"),
        Input(ids.TRACE_SEARCH, "n_clicks"),
        Input(ids.TRACE_QUERY, "value"),
        State(ids.MARKET, "value"),
        State(ids.LANG, "data"),
    )
    def search(
        _clicks: int | None, text: str | None, market: str, lang_value: str | None
    ) -> tuple[Any, ...]:
        lang = Lang.of(lang_value)
        if not text and ctx.triggered_id != ids.TRACE_SEARCH:
            raise PreventUpdate
        hidden = {"display": "none"}
        query = queries.parse_trace_query(text)
        if query is None:
            return dbc.Alert(t("trace.bad_query", lang), color="warning"), {}, hidden, []
        chain = queries.trace_chain(data, market, query)
        if isinstance(chain, UnverifiedReceipt):
            return unverified_receipt(chain.receipt, data, market, lang), {}, hidden, []
        if chain is None:
            return (
                dbc.Alert(t("trace.not_found", lang), color="warning", id="trace-not-found"),
                {},
                hidden,
                [],
            )
        return (
            chain_summary(chain, data, market, lang, links.api),
            timeline(chain, data, market, lang),
            {"display": "block"},
            sale_rows(chain, data, market, lang),
        )


#: The intake's test as a text key and badge colour; None: not tested at intake.
_INTAKE_TEST = {
    True: ("trace.passed", "success"),
    False: ("trace.failed", "danger"),
    None: ("trace.untested", "secondary"),
}


def chain_summary(
    chain: TraceChain, data: DashboardData, market: str, lang: Lang, api_base: str
) -> Any:
    batch = chain.batch
    found = data.market(market)
    vendor = found.vendors.get(batch.vendor)
    product = found.products.get(batch.plu)
    balance = chain.balance
    key, _colour = _INTAKE_TEST[batch.rapid_test_passed]
    test = t(key, lang)
    name = batch.plu if product is None else queries.product_name(product, lang)
    rows = [
        (t("trace.batch", lang), f"{batch.trace_code} · {name}"),
        (t("trace.origin", lang), batch.origin),
        (t("trace.supplier", lang), batch.supplier),
        (t("trace.certificate", lang), batch.certificate_no),
        (
            t("trace.rapid_test", lang),
            test
            if batch.inhibition_pct is None
            else f"{test} ({t('trace.inhibition', lang)} {batch.inhibition_pct}%)",
        ),
        *(
            (
                t("trace.later_test", lang),
                f"{t('trace.passed' if test.passed else 'trace.failed', lang)} "
                f"({t('trace.inhibition', lang)} {test.inhibition_pct}%) "
                f"{queries.local_time_text(test.ts, found)}",
            )
            for test in chain.tests
            if not test.at_intake
        ),
        (t("trace.intake", lang), queries.local_time_text(batch.ts, found)),
        (
            t("trace.vendor", lang),
            batch.vendor if vendor is None else f"{vendor.stall} {vendor.name}",
        ),
        (t("trace.quantity_in", lang), weight_text(balance.quantity_g, lang)),
        (t("trace.sold", lang), f"{weight_text(balance.sold_g, lang)} ({len(chain.sales)})"),
        (t("trace.left", lang), weight_text(balance.remaining_g, lang)),
    ]
    # The badge is the batch's state: its latest test, which may be a later one.
    state_key, state_colour = _INTAKE_TEST[chain.tests[-1].passed if chain.tests else None]
    badges = [dbc.Badge(t(state_key, lang), color=state_colour, className="me-2", id="trace-state")]
    if balance.oversold:
        badges.append(dbc.Badge(t("trace.oversold", lang), color="danger", id="trace-oversold"))
    public = f"{api_base}/trace/{quote(found.id)}/{quote(batch.trace_code)}"
    anchors: list[Any] = [
        html.A(
            t("trace.public_page", lang),
            href=public,
            target="_blank",
            id="trace-public-link",
            className="me-3",
        )
    ]
    if chain.receipt is not None:
        sale = chain.receipt
        receipt = f"{quote(found.id)}/receipts/{quote(sale.scale)}/{sale.msg_id}"
        qr = f"{api_base}/api/v1/markets/{receipt}/qr.png"
        anchors.append(html.A(t("trace.qr", lang), href=qr, target="_blank", className="me-3"))
        anchors.append(
            html.Img(src=qr, alt=t("trace.qr", lang), style={"height": "96px"}, id="trace-qr")
        )
    table = html.Table(
        [html.Tr([html.Th(k, className="pe-3 text-muted fw-normal"), html.Td(v)]) for k, v in rows],
        className="table table-sm mb-2",
        id="trace-batch-table",
    )
    return card(
        t("trace.batch", lang), [html.Div(badges, className="mb-2"), table, html.Div(anchors)]
    )


def unverified_receipt(sale: SaleRow, data: DashboardData, market: str, lang: Lang) -> Any:
    """A receipt that leads to no batch: say so plainly, with what the scale claimed."""
    found = data.market(market)
    product = found.products.get(sale.plu)
    name = sale.plu if product is None else queries.product_name(product, lang)
    claim = (
        f"{sale.scale}:{sale.msg_id} · {sale.vendor} · {name} · "
        f"{t('col.trace_status', lang)}: {t(f'trace_status.{sale.trace_status.value}', lang)} "
        f"· {sale.trace_code}"
    )
    return dbc.Alert(
        [html.Div(t("trace.unverified", lang), className="fw-bold"), html.Div(claim)],
        color="danger",
        id="trace-unverified",
    )


def timeline(chain: TraceChain, data: DashboardData, market: str, lang: Lang) -> Any:
    found = data.market(market)
    vendor = found.vendors.get(chain.batch.vendor)
    label = chain.batch.vendor if vendor is None else f"{vendor.stall} {vendor.name}"
    return figures.trace_timeline(
        queries.sales_frame(chain.sales, found.tz),
        lang,
        intake=chain.batch.ts.astimezone(found.tz),
        quantity_g=chain.batch.quantity_g,
        passed=chain.batch.rapid_test_passed,
        vendor_label=label,
    )


def sale_rows(
    chain: TraceChain, data: DashboardData, market: str, lang: Lang
) -> list[dict[str, Any]]:
    found = data.market(market)
    return [
        {
            "time": queries.local_time_text(sale.ts, found),
            "scale": sale.scale,
            "vendor": sale.vendor,
            "receipt": f"{sale.scale}:{sale.msg_id}",
            "weight": weight_text(sale.weight_g, lang),
            "total": money_text(sale.total_fen),
            "trace_status": t(f"trace_status.{sale.trace_status.value}", lang),
            "verified": sale.origin_verified,
        }
        for sale in chain.sales
    ]
