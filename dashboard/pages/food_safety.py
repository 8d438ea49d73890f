"""Food safety: a day's pesticide-residue rapid tests per category, the daily quota, and
the batches that failed, each linked to its trace; the batches locked now, each with its
recall list (a CSV to download) and the sales its scale made anyway; a manager lifts a
lock here, with the reason on record.

The figures are the read core's (``marketview.foodsafety``, ``marketview.recall``), as
the API shows them; this page only renders them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dash_bootstrap_components as dbc
import flask
from dash import ALL, Dash, Input, Output, State, ctx, dcc, html
from dash.exceptions import PreventUpdate

from dashboard import figures, ids, queries
from dashboard.auth import UserRole
from dashboard.components import SLOW_POLL_MS, Links, card, graph, interval, kpi, picked_day
from dashboard.forms import Outcome, blank, changed
from dashboard.i18n import Lang, t, weight_text
from dashboard.pages import trace
from dashboard.queries import DashboardData
from marketdb.locks import BatchLock
from marketview.foodsafety import DayOfTests
from marketview.recall import Recall, latest_recall, recall_csv
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
            card(
                t("fs.locks_title", lang),
                [html.Div(id=ids.FOOD_SAFETY_LOCKS), _unlock_form(lang)],
            ),
            dcc.Download(id=ids.FOOD_SAFETY_RECALL_DOWNLOAD),
        ]
    )


def _unlock_form(lang: Lang) -> Any:
    return html.Div(
        [
            html.H6(t("fs.unlock_title", lang), className="mt-3"),
            dbc.Row(
                [
                    dbc.Col(
                        dcc.Dropdown(
                            id=ids.FOOD_SAFETY_UNLOCK_WHICH,
                            placeholder=t("fs.unlock_which", lang),
                        ),
                        md=4,
                    ),
                    dbc.Col(
                        dbc.Input(
                            id=ids.FOOD_SAFETY_UNLOCK_REASON,
                            placeholder=t("fs.unlock_reason", lang),
                            maxLength=200,
                        ),
                        md=6,
                    ),
                    dbc.Col(
                        dbc.Button(
                            t("fs.unlock", lang), id=ids.FOOD_SAFETY_UNLOCK, color="warning"
                        ),
                        md=2,
                    ),
                ],
                className="g-2",
            ),
            html.Div(id=ids.FOOD_SAFETY_UNLOCK_RESULT),
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

    @app.callback(
        Output(ids.FOOD_SAFETY_LOCKS, "children"),
        Output(ids.FOOD_SAFETY_UNLOCK_WHICH, "options"),
        Input(ids.FOOD_SAFETY_TICK, "n_intervals"),
        Input(ids.FOOD_SAFETY_UNLOCK_RESULT, "children"),
        State(ids.MARKET, "value"),
        State(ids.LANG, "data"),
    )
    def locks(_tick: int, _unlocked: Any, market: str, lang_value: str | None) -> tuple[Any, ...]:
        lang = Lang.of(lang_value)
        found = data.market(market)
        recalls = queries.lock_recalls(data, market)
        options = [
            {"label": _lock_label(found, r.lock, lang), "value": r.lock.id} for r in recalls or ()
        ]
        return lock_list(recalls, found, lang, trace_path), options

    @app.callback(
        Output(ids.FOOD_SAFETY_RECALL_DOWNLOAD, "data"),
        Input({"type": ids.FOOD_SAFETY_RECALL_CSV, "index": ALL}, "n_clicks"),
        State(ids.MARKET, "value"),
        prevent_initial_call=True,
    )
    def download(clicks: list[int | None], market: str) -> dict[str, Any]:
        picked = ctx.triggered_id
        if not any(clicks) or not isinstance(picked, dict) or data.lock_keeper is None:
            raise PreventUpdate  # the list was redrawn, nothing clicked
        found = data.market(market)
        lock = _open_lock(data.lock_keeper.locks(found.id), picked["index"])
        if lock is None:
            raise PreventUpdate  # lifted meanwhile: the list redraws without it
        locks = data.lock_keeper.of_batch(found.id, lock.trace_code)
        recall = latest_recall(data.store, locks, lock.plu)
        if recall is None:
            raise PreventUpdate
        # The receipt pages are the API's: its origin when it has one of its own.
        text = recall_csv(recall, found.tz, links.api or flask.request.host_url)
        name = f"recall-{found.id}-{lock.trace_code}-{lock.plu}.csv"
        return {"content": text, "filename": name, "type": "text/csv"}

    @app.callback(
        Output(ids.FOOD_SAFETY_UNLOCK_RESULT, "children"),
        Input(ids.FOOD_SAFETY_UNLOCK, "n_clicks"),
        State(ids.FOOD_SAFETY_UNLOCK_WHICH, "value"),
        State(ids.FOOD_SAFETY_UNLOCK_REASON, "value"),
        State(ids.MARKET, "value"),
        State(ids.LANG, "data"),
        prevent_initial_call=True,
    )
    def unlock(
        _clicks: int, which: int | None, reason: str | None, market: str, lang_value: str | None
    ) -> Any:
        lang = Lang.of(lang_value)
        return _unlock(data, market, which, blank(reason), lang).alert("fs-unlock-alert")


def _unlock(
    data: DashboardData, market: str, which: int | None, reason: object, lang: Lang
) -> Outcome:
    keeper = data.lock_keeper
    lock = None if keeper is None else _open_lock(keeper.locks(market), which)
    if keeper is None or lock is None:
        return Outcome(t("fs.unlock_pick", lang), "danger")
    words = str(reason or "")

    def lift(actor: Any) -> BatchLock:
        return keeper.unlock(market, lock.trace_code, lock.plu, actor=actor.name, reason=words)

    done = changed(lang, UserRole.MANAGER, lift)
    if isinstance(done, Outcome):
        return done
    return Outcome(t("fs.unlocked", lang).format(code=done.trace_code), "success")


def _open_lock(locks: Sequence[BatchLock], lock_id: object) -> BatchLock | None:
    return next((lock for lock in locks if lock.id == lock_id), None)


def _lock_label(market: Market, lock: BatchLock, lang: Lang) -> str:
    return (
        f"{lock.trace_code} · {_vendor_name(market, lock.vendor)} · "
        f"{_product_name(market, lock.plu, lang)}"
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


def lock_list(
    recalls: Sequence[Recall] | None, market: Market, lang: Lang, trace_path: str
) -> list[Any]:
    """The batches locked now, oldest first: when and why, what was sold before the lock
    (the recall, with its CSV) and what the scale sold anyway."""
    if recalls is None:
        return [html.Div(t("fs.locks_off", lang), className="text-muted", id="fs-locks-off")]
    if not recalls:
        return [html.Div(t("fs.no_locks", lang), className="text-success", id="fs-no-locks")]
    keys = ("col.trace_code", "col.vendor", "col.product", "col.locked_at", "col.recall")
    header = html.Thead(html.Tr([html.Th(t(key, lang)) for key in keys] + [html.Th("")]))
    rows = [_lock_row(recall, market, lang, trace_path) for recall in recalls]
    return [dbc.Table([header, html.Tbody(rows)], size="sm", hover=True, responsive=True)]


def _lock_row(recall: Recall, market: Market, lang: Lang, trace_path: str) -> Any:
    lock = recall.lock
    sold = t("fs.recalled", lang).format(
        sales=len(recall.before_lock), weight=weight_text(recall.recalled_g, lang)
    )
    flagged = []
    if recall.while_locked:
        text = t("fs.sold_locked", lang).format(count=len(recall.while_locked))
        flagged = [dbc.Badge(text, color="danger", className="ms-2 fs-sold-locked")]
    return html.Tr(
        [
            html.Td(html.A(lock.trace_code, href=f"{trace_path}?q={lock.trace_code}")),
            html.Td(_vendor_name(market, lock.vendor)),
            html.Td(_product_name(market, lock.plu, lang)),
            html.Td(lock.locked_at.astimezone(market.tz).strftime("%m-%d %H:%M"), title=lock.cause),
            html.Td([html.Span(sold, className="fs-recalled"), *flagged]),
            html.Td(
                dbc.Button(
                    t("fs.recall_csv", lang),
                    id={"type": ids.FOOD_SAFETY_RECALL_CSV, "index": lock.id},
                    size="sm",
                    color="secondary",
                    outline=True,
                )
            ),
        ],
        className="fs-lock",
    )


def _vendor_name(market: Market, vendor_id: str) -> str:
    vendor = market.vendors.get(vendor_id)
    return vendor_id if vendor is None else vendor.name


def _product_name(market: Market, plu: str, lang: Lang) -> str:
    product = market.products.get(plu)
    return plu if product is None else queries.product_name(product, lang)
