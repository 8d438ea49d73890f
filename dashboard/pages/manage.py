"""Market management: vendors, stalls, products and devices, edited in forms.

Needs the market database (``DashboardData.management``); a deployment that reads
market files shows why it cannot. Each tab's form lives in ``dashboard/manage/``.
Managers edit vendors, stalls and products; administrators devices too; viewers
see the forms and are told their role may not save.
"""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, html
from dash.exceptions import PreventUpdate

from dashboard.components import Links, card
from dashboard.forms import field_id
from dashboard.i18n import Lang, t
from dashboard.manage import devices, intake, records, vendors
from dashboard.manage.stalls_products import PRODUCTS, STALLS
from dashboard.queries import DashboardData

PATH = "/manage"
TITLE_KEY = "nav.manage"
TABS = "manage-tabs"


def layout(data: DashboardData, lang: Lang, market: str) -> html.Div:
    management = data.management
    if management is None:
        return html.Div(dbc.Alert(t("manage.unavailable", lang), color="info", id="manage-off"))
    tabs = [
        ("vendors", vendors.layout(management, market, lang)),
        ("stalls", records.layout(STALLS, management, market, lang)),
        ("products", records.layout(PRODUCTS, management, market, lang)),
        ("devices", devices.layout(management, market, lang)),
    ]
    if data.validator is not None:
        tabs.append(("intake", intake.layout(data, market, lang)))
    return html.Div(
        card(
            None,
            dbc.Tabs(
                [
                    dbc.Tab(body, label=t(f"manage.{name}", lang), tab_id=name, id=f"tab-{name}")
                    for name, body in tabs
                ],
                active_tab="vendors",
                id=TABS,
            ),
        )
    )


def register_callbacks(app: Dash, data: DashboardData, links: Links) -> None:
    if data.management is None:
        return
    vendors.register_callbacks(app, data, data.management)
    records.register_callbacks(app, STALLS, data.management)
    records.register_callbacks(app, PRODUCTS, data.management)
    devices.register_callbacks(app, data.management)
    devices.register_change_callbacks(app, data.management)
    if data.validator is not None:
        intake.register_callbacks(app, data, data.validator)
    management = data.management

    @app.callback(
        Output(field_id(devices.FORM, "vendor"), "options"),
        Output(devices.ASSIGN_VENDOR, "options"),
        Output(field_id(vendors.FORM, "products"), "options"),
        Input(TABS, "active_tab"),
        State("market", "value"),
        prevent_initial_call=True,
    )
    def refresh_choices(_tab: str, market: str | None) -> tuple[Any, ...]:
        """What one tab added (a vendor, a product) is offered on the others."""
        if market is None or market not in data.markets():
            raise PreventUpdate
        owners = devices.vendor_choices(management, market)
        return owners, owners, vendors.product_choices(management, market)
