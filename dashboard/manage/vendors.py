"""The vendor form: pick a vendor (or a new one), edit, save; deactivate one who left.

The form holds the version it was loaded at; saving names it, so an edit made on a
vendor someone changed meanwhile is refused with a message, never saved over the
other change. Scales and screens are assigned on the devices tab.
"""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update

from dashboard.auth import UserRole
from dashboard.forms import Outcome, blank, changed, field_id, labelled, names_of, validated
from dashboard.i18n import Lang, category_name, t
from dashboard.queries import DashboardData
from marketdb._exceptions import MarketDatabaseError
from marketdb.management import Management
from marketdb.vendors import VersionedVendor
from schemas.registry import Category, Vendor

FORM = "vendor-form"
SELECT = "vendor-select"
VERSION = "vendor-version"
SAVE = "vendor-save"
CONFIRM = "vendor-confirm"
RESULT = "vendor-result"
NEW = "__new__"

TEXT_FIELDS = (
    "id",
    "name",
    "stall",
    "contact",
    "business_licence_no",
    "food_licence_no",
)


def product_choices(management: Management, market: str) -> list[dict[str, str]]:
    return [
        {"label": f"{p.product.plu} {p.product.name_zh}", "value": p.product.plu}
        for p in management.products(market)
    ]


def layout(management: Management, market: str, lang: Lang) -> html.Div:
    field = _field_factory(lang)
    return html.Div(
        [
            dcc.Store(id=VERSION),
            dbc.Row(
                dbc.Col(
                    dcc.Dropdown(id=SELECT, options=_choices(management, market, lang), value=NEW),
                    md=6,
                ),
                className="mb-3",
            ),
            dbc.Row([field(name, dbc.Input(type="text")) for name in TEXT_FIELDS]),
            dbc.Row(
                [
                    field("food_licence_expires", dbc.Input(type="date")),
                    field(
                        "categories",
                        dcc.Dropdown(
                            options=[
                                {"label": category_name(c.value, lang), "value": c.value}
                                for c in Category
                            ],
                            multi=True,
                        ),
                    ),
                    field(
                        "products",
                        dcc.Dropdown(options=product_choices(management, market), multi=True),
                    ),
                    field(
                        "health_certificates",
                        dbc.Textarea(placeholder=t("vendor.certificates_hint", lang), rows=3),
                    ),
                ]
            ),
            dbc.Row(
                [
                    dbc.Col(field_switch(lang), md=3),
                    dbc.Col(
                        dbc.Checkbox(id=CONFIRM, label=t("vendor.confirm", lang), value=False),
                        md=6,
                    ),
                    dbc.Col(dbc.Button(t("form.save", lang), id=SAVE, color="primary"), md=3),
                ],
                className="align-items-center",
            ),
            html.Div(id=RESULT),
        ]
    )


def field_switch(lang: Lang) -> dbc.Switch:
    return dbc.Switch(id=field_id(FORM, "active"), label=t("vendor.active", lang), value=True)


def _field_factory(lang: Lang) -> Any:
    def field(name: str, control: Any) -> dbc.Col:
        control.id = field_id(FORM, name)
        return labelled(FORM, name, t(f"vendor.{name}", lang), control)

    return field


def _choices(management: Management, market: str, lang: Lang) -> list[dict[str, str]]:
    vendors = management.vendors(market)
    return [{"label": t("vendor.new", lang), "value": NEW}] + [
        {
            "label": f"{v.vendor.id} {v.vendor.name} ({v.vendor.stall})"
            + ("" if v.vendor.active else f" · {t('vendor.inactive', lang)}"),
            "value": v.vendor.id,
        }
        for v in vendors
    ]


# -- between the form and the model --------------------------------------------------------


def form_values(found: VersionedVendor | None) -> dict[str, Any]:
    """What the form shows of a vendor (a new one: empty, active)."""
    if found is None:
        return {name: "" for name in TEXT_FIELDS} | {
            "food_licence_expires": "",
            "categories": [],
            "products": [],
            "health_certificates": "",
            "active": True,
        }
    vendor = found.vendor
    values: dict[str, Any] = {name: getattr(vendor, name) or "" for name in TEXT_FIELDS}
    expires = vendor.food_licence_expires
    values |= {
        "food_licence_expires": "" if expires is None else expires.isoformat(),
        "categories": [c.value for c in vendor.categories or ()],
        "products": list(vendor.products),
        "health_certificates": "\n".join(
            f"{c.holder}, {c.number}, {c.expires.isoformat()}" for c in vendor.health_certificates
        ),
        "active": vendor.active,
    }
    return values


def vendor_fields(values: dict[str, Any]) -> dict[str, Any] | Outcome:
    """The form's values as a vendor's fields (what the model validates), or the certificate
    lines that are not ``holder, number, YYYY-MM-DD``."""
    fields = {name: blank(values.get(name)) for name in TEXT_FIELDS}
    fields["food_licence_expires"] = blank(values.get("food_licence_expires"))
    fields["categories"] = blank(values.get("categories"))
    fields["products"] = values.get("products") or []
    fields["active"] = bool(values.get("active"))
    certificates = _certificates(str(values.get("health_certificates") or ""))
    if isinstance(certificates, Outcome):
        return certificates
    fields["health_certificates"] = certificates
    return fields


def _certificates(text: str) -> list[dict[str, str]] | Outcome:
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = [part.strip() for part in line.replace("，", ",").split(",")]
        if len(parts) != 3:
            message = f"line {number}: holder, number, YYYY-MM-DD"
            return Outcome(message, "danger", {"health_certificates": message})
        holder, cert_no, expires = parts
        found.append({"holder": holder, "number": cert_no, "expires": expires})
    return found


def register_callbacks(app: Dash, data: DashboardData, management: Management) -> None:
    @app.callback(
        Output({"type": FORM, "field": ALL}, "value"),
        Output(field_id(FORM, "id"), "disabled"),
        Output(VERSION, "data"),
        Input(SELECT, "value"),
        State("market", "value"),
    )
    def load(vendor_id: str | None, market: str) -> tuple[Any, ...]:
        try:
            found = None if vendor_id in (None, NEW) else management.vendor(market, str(vendor_id))
        except MarketDatabaseError:
            found = None  # gone meanwhile (or the database is away): a new vendor's form
        values = form_values(found)
        names = names_of(ctx.outputs_list[0])
        # A stored vendor's id is its identity in every sale and trace: shown, not edited.
        fixed = found is not None
        return [values[name] for name in names], fixed, None if found is None else found.version

    @app.callback(
        Output({"type": f"{FORM}-feedback", "field": ALL}, "children"),
        Output({"type": FORM, "field": ALL}, "invalid"),
        Output(RESULT, "children"),
        Output(SELECT, "options"),
        Output(SELECT, "value"),
        Output(VERSION, "data", allow_duplicate=True),
        Input(SAVE, "n_clicks"),
        State({"type": FORM, "field": ALL}, "value"),
        State(SELECT, "value"),
        State(VERSION, "data"),
        State(CONFIRM, "value"),
        State("market", "value"),
        State("lang", "data"),
        prevent_initial_call=True,
    )
    def save(
        _clicks: int,
        values: list[Any],
        selected: str | None,
        version: int | None,
        confirmed: bool,
        market: str,
        lang_value: str | None,
    ) -> tuple[Any, ...]:
        lang = Lang.of(lang_value)
        feedback_names = names_of(ctx.outputs_list[0])
        field_names = names_of(ctx.outputs_list[1])
        given = dict(zip(names_of(ctx.states_list[0]), values, strict=True))
        outcome = _save(management, market, lang, given, selected, version, bool(confirmed))
        if isinstance(outcome, Outcome):
            return (
                outcome.feedback(feedback_names),
                outcome.invalid(field_names),
                outcome.alert(RESULT + "-alert"),
                no_update,
                no_update,
                no_update,
            )
        saved = outcome
        done = Outcome(t("form.saved", lang).format(what=saved.vendor.id), "success")
        return (
            done.feedback(feedback_names),
            done.invalid(field_names),
            done.alert(RESULT + "-alert"),
            _choices(management, market, lang),
            saved.vendor.id,
            saved.version,
        )


def _save(
    management: Management,
    market: str,
    lang: Lang,
    given: dict[str, Any],
    selected: str | None,
    version: int | None,
    confirmed: bool,
) -> VersionedVendor | Outcome:
    fields = vendor_fields(given)
    if isinstance(fields, Outcome):
        return fields
    creating = selected in (None, NEW) or version is None
    if not creating:
        try:
            stored = management.vendor(market, str(selected)).vendor
        except MarketDatabaseError as exc:  # gone meanwhile, or the database is away
            return Outcome(str(exc), "danger")
        fields |= {"id": stored.id, "scales": stored.scales, "screens": stored.screens}
    vendor = validated(Vendor, fields, lang)
    if isinstance(vendor, Outcome):
        return vendor
    if creating:
        return changed(
            lang,
            UserRole.MANAGER,
            lambda actor: management.create_vendor(market, vendor, actor=actor.name),
        )
    assert version is not None
    return changed(
        lang,
        UserRole.MANAGER,
        lambda actor: management.update_vendor(
            market, vendor, if_version=version, actor=actor.name, confirmed=confirmed
        ),
    )
