"""Builds the dashboard: the shell (navigation, market, language), its pages, and the login.

Wiring only. Each page lives in ``dashboard/pages/<name>.py`` with its layout and
its callbacks; what they show comes from :mod:`dashboard.queries` and is drawn by
:mod:`dashboard.figures`.

Pages are routed by one callback on the URL rather than by ``dash.register_page``:
Dash's page registry and ``@dash.callback`` are process-global, and this app is
built by a factory over a given store (tests build several in one process).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import dash_bootstrap_components as dbc
import flask
import flask_bootstrap
from dash import Dash, Input, Output, State, dcc, html
from flask import Flask, Response, send_from_directory

from dashboard import ids
from dashboard.auth import LOGOUT_PATH, Logins, Users, install_login
from dashboard.components import Links
from dashboard.guard import install_guard
from dashboard.i18n import DEFAULT_LANG, Lang, t
from dashboard.pages import (
    audit,
    food_safety,
    footfall,
    manage,
    overview,
    prices,
    trace,
    vendors,
)
from dashboard.queries import DashboardData
from marketview.live import UnknownName
from storage._exceptions import StoreError
from storage.outage import OutageLog

log = logging.getLogger(__name__)

#: Page modules in menu order; each has PATH, TITLE_KEY, layout() and register_callbacks().
PAGES: tuple[ModuleType, ...] = (
    overview,
    prices,
    trace,
    food_safety,
    footfall,
    vendors,
    manage,
    audit,
)
_BOOTSTRAP_CSS = Path(flask_bootstrap.__file__).parent / "static" / "bootstrap5" / "css"
STATIC_CSS = "/static/bootstrap.min.css"


@dataclass(frozen=True)
class DashboardOptions:
    """How the dashboard is reached and who may use it."""

    #: The URL path the browser sees the dashboard under, e.g. "/dashboard/".
    url_prefix: str = "/dashboard/"
    #: True when the WSGI app is mounted under ``url_prefix`` (it then routes from "/").
    mounted: bool = True
    users_file: Path | None = None
    #: Logins from elsewhere (the market database); takes the place of ``users_file``.
    logins: Logins | None = None
    session_secret: bytes | None = None
    secure_cookies: bool = False
    #: Where the API's public pages live, for links (the same origin by default).
    api_base: str = ""


def create_dashboard(data: DashboardData, options: DashboardOptions) -> Dash:
    """The dashboard as a Dash app; ``app.server`` is the WSGI (Flask) app to serve."""
    app = Dash(
        "stallwatch.dashboard",
        requests_pathname_prefix=options.url_prefix,
        routes_pathname_prefix="/" if options.mounted else options.url_prefix,
        external_stylesheets=[options.url_prefix.rstrip("/") + STATIC_CSS],
        suppress_callback_exceptions=True,
        title=t("app.title", DEFAULT_LANG),
        update_title="",
        compress=False,  # the proxy or the ASGI server compresses; here it would cost CPU twice
        meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
        on_error=_keep_what_is_shown(data.outage),
    )
    server: Flask = app.server
    server.add_url_rule(STATIC_CSS, "bootstrap_css", _bootstrap_css)
    logins = options.logins
    if logins is None and options.users_file is not None:
        logins = Users(options.users_file)
    if logins is not None:
        install_login(
            server,
            users=logins,
            secret=options.session_secret or secrets.token_bytes(32),
            secure_cookies=options.secure_cookies,
            public_paths=(STATIC_CSS,),
        )
    install_guard(app, server)
    _report_answered_callbacks(server, data.outage)
    links = Links(dashboard=options.url_prefix, api=options.api_base)
    app.layout = _shell(data, logout=logins is not None)
    _register_shell_callbacks(app, data, links)
    for page in PAGES:
        page.register_callbacks(app, data, links)
    return app


def _keep_what_is_shown(outage: OutageLog) -> Callable[[Exception], None]:
    """A store outage or a market id tampered with in a callback: leave the page as it is.

    The browser keeps the figures it has and the next poll tries again; anything
    else is a bug and propagates (Dash answers 500 and logs it). An outage is
    logged once, through ``outage``, not once per callback.
    """

    def on_error(error: Exception) -> None:
        if isinstance(error, StoreError):
            flask.g.store_failed = True
            outage.failed(error, "a dashboard callback")
            return
        if isinstance(error, UnknownName):
            log.warning("dashboard callback skipped: %s", error)
            return
        raise error

    return on_error


def _report_answered_callbacks(server: Flask, outage: OutageLog) -> None:
    """A callback answered without a store failure ends a logged outage.

    Every callback that polls reads the store, so the first one answered after
    an outage is the sign it is back.
    """

    @server.after_request
    def _answered(response: Response) -> Response:
        if (
            outage.in_outage
            and flask.request.method == "POST"
            and response.status_code in (200, 204)
            and not flask.g.get("store_failed", False)
        ):
            outage.answered()
        return response


def _bootstrap_css() -> Any:
    return send_from_directory(_BOOTSTRAP_CSS, "bootstrap.min.css", max_age=86_400)


def _shell(data: DashboardData, *, logout: bool) -> html.Div:
    markets = [
        {"label": market.spec.market.name, "value": market.id} for market in data.markets().values()
    ]
    right: list[Any] = [
        dcc.Dropdown(
            id=ids.MARKET,
            options=markets,
            value=data.default_market(),
            clearable=False,
            searchable=False,
            style={"minWidth": "180px"},
        ),
        dbc.Button(id=ids.LANG_SWITCH, color="light", size="sm", className="ms-2", n_clicks=0),
    ]
    # Always present (the router fills its text), hidden when there is no login.
    right.append(
        html.A(
            id=ids.LOGOUT,
            href=LOGOUT_PATH.lstrip("/"),
            className="btn btn-sm btn-outline-light ms-2",
            hidden=not logout,
        )
    )
    return html.Div(
        [
            dcc.Location(id=ids.URL, refresh=False),
            dcc.Store(id=ids.LANG, storage_type="local"),
            dbc.Navbar(
                dbc.Container(
                    [
                        html.Span(id=ids.BRAND, className="navbar-brand fw-bold"),
                        dbc.Nav(id=ids.NAV, pills=True, className="me-auto flex-wrap"),
                        html.Div(right, className="d-flex align-items-center"),
                    ],
                    fluid=True,
                    className="flex-wrap gap-2",
                ),
                color="dark",
                dark=True,
                expand=True,  # one row that wraps, also on a phone: no hamburger to open
                className="mb-3",
            ),
            dbc.Container(html.Div(id=ids.PAGE), fluid=True, className="pb-4"),
        ]
    )


def _register_shell_callbacks(app: Dash, data: DashboardData, links: Links) -> None:
    @app.callback(
        Output(ids.LANG, "data"),
        Input(ids.LANG_SWITCH, "n_clicks"),
        State(ids.LANG, "data"),
        prevent_initial_call=True,
    )
    def switch_language(_clicks: int, current: str | None) -> str:
        return Lang.EN.value if Lang.of(current) is Lang.ZH else Lang.ZH.value

    @app.callback(
        Output(ids.PAGE, "children"),
        Output(ids.NAV, "children"),
        Output(ids.BRAND, "children"),
        Output(ids.LANG_SWITCH, "children"),
        Output(ids.LOGOUT, "children"),
        Input(ids.URL, "pathname"),
        Input(ids.LANG, "data"),
        Input(ids.MARKET, "value"),
    )
    def route(pathname: str | None, lang_value: str | None, market: str | None) -> tuple[Any, ...]:
        lang = Lang.of(lang_value)
        page = _page_for(links.page_of(pathname))
        market_id = market if market in data.markets() else data.default_market()
        content = (
            page.layout(data, lang, market_id)
            if page is not None
            else dbc.Alert(t("not_found", lang), color="warning")
        )
        nav = [
            dbc.NavItem(
                dbc.NavLink(
                    t(p.TITLE_KEY, lang),
                    href=links.page(p.PATH),
                    active=p is page,
                    id={"type": ids.NAV_LINK, "page": p.PATH},
                )
            )
            for p in PAGES
        ]
        return content, nav, t("app.title", lang), t("lang.switch", lang), t("logout", lang)


def _page_for(path: str) -> ModuleType | None:
    return next((page for page in PAGES if path == page.PATH), None)
