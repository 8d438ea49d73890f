"""The intake desk's form: staff register a batch and its rapid-test result.

The entry goes through ``ingest.entry`` as the desk's own MQTT message would, so
the form and the HTTP API accept and refuse the same batches. The quantity is
entered in kilograms (Decimal, up to the gram); the test's result follows from
the inhibition rate (GB/T 5009.199: 50 % or more fails).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import dash_bootstrap_components as dbc
from dash import ALL, Dash, Input, Output, State, ctx, dcc, html

from dashboard.auth import UserRole
from dashboard.forms import Outcome, blank, changed, field_id, labelled, names_of
from dashboard.i18n import Lang, t
from dashboard.queries import DashboardData
from ingest import entry
from ingest.validate import Validator
from schemas.messages import FAIL_INHIBITION_PCT, RapidTestResult

FORM = "intake-form"
SAVE = "intake-save"
RESULT = "intake-result"
_GRAMS_PER_KG = Decimal(1000)


def layout(data: DashboardData, market: str, lang: Lang) -> html.Div:
    spec = data.market(market).spec
    stations = [{"label": f"{s.id} {s.name}", "value": s.id} for s in spec.intake]
    vendors = [{"label": f"{v.id} {v.name}", "value": v.id} for v in spec.vendors if v.active]
    products = [{"label": f"{p.plu} {p.name_zh}", "value": p.plu} for p in spec.products]
    first_station = stations[0]["value"] if stations else None
    controls: dict[str, Any] = {
        "station": dcc.Dropdown(options=stations, value=first_station, clearable=False),
        "trace_code": dbc.Input(type="text"),
        "vendor": dcc.Dropdown(options=vendors),
        "plu": dcc.Dropdown(options=products),
        "origin": dbc.Input(type="text"),
        "supplier": dbc.Input(type="text"),
        "quantity_kg": dbc.Input(type="text", inputMode="decimal"),
        "certificate_no": dbc.Input(type="text"),
        "inhibition_pct": dbc.Input(type="text", inputMode="decimal"),
    }
    fields = []
    for name, control in controls.items():
        control.id = field_id(FORM, name)
        fields.append(labelled(FORM, name, t(f"intake.{name}", lang), control, width=4))
    return html.Div(
        [
            dbc.Row(fields),
            dbc.Button(t("intake.register", lang), id=SAVE, color="primary"),
            html.Div(id=RESULT),
        ]
    )


def entry_fields(values: dict[str, Any]) -> dict[str, Any] | Outcome:
    """The form as a batch message's fields (grams, the result from the rate), or the
    number fields that are not numbers."""
    errors: dict[str, str] = {}
    grams = _decimal(values.get("quantity_kg"), "quantity_kg", errors)
    rate = _decimal(values.get("inhibition_pct"), "inhibition_pct", errors)
    if grams is not None:
        grams *= _GRAMS_PER_KG
        if grams != grams.to_integral_value():
            errors["quantity_kg"] = "kg, to the gram (3 decimals at most)"
    if errors or grams is None or rate is None:
        return Outcome(next(iter(errors.values())), "danger", errors)
    failed = rate >= FAIL_INHIBITION_PCT
    return {
        "trace_code": values.get("trace_code"),
        "vendor": values.get("vendor"),
        "plu": values.get("plu"),
        "origin": values.get("origin"),
        "supplier": values.get("supplier"),
        "quantity_g": int(grams),
        "certificate_no": values.get("certificate_no"),
        "rapid_test": {
            "result": (RapidTestResult.FAIL if failed else RapidTestResult.PASS).value,
            "inhibition_pct": str(rate),
        },
    }


#: Beyond this a number is no quantity or rate of a batch (and 1e999999 is no number to
#: compute with): refused before any arithmetic.
_LARGEST = Decimal(10) ** 9


def _decimal(value: object, name: str, errors: dict[str, str]) -> Decimal | None:
    if value is None:
        errors[name] = "required"
        return None
    try:
        number = Decimal(str(value).strip().replace(",", "."))
    except InvalidOperation:
        errors[name] = "a number, e.g. 12.5"
        return None
    if not number.is_finite() or abs(number) >= _LARGEST or number.adjusted() < -9:
        errors[name] = "a number, e.g. 12.5"
        return None
    return number


def register_callbacks(app: Dash, data: DashboardData, validator: Validator) -> None:
    @app.callback(
        Output({"type": f"{FORM}-feedback", "field": ALL}, "children"),
        Output({"type": FORM, "field": ALL}, "invalid"),
        Output(RESULT, "children"),
        Input(SAVE, "n_clicks"),
        State({"type": FORM, "field": ALL}, "value"),
        State("market", "value"),
        State("lang", "data"),
        prevent_initial_call=True,
    )
    def register(_clicks: int, values: list[Any], market: str, lang_value: str | None) -> Any:
        lang = Lang.of(lang_value)
        given = {
            name: blank(value)
            for name, value in zip(names_of(ctx.states_list[0]), values, strict=True)
        }
        outcome = _register(data, validator, market, lang, given)
        feedback, fields = names_of(ctx.outputs_list[0]), names_of(ctx.outputs_list[1])
        return outcome.feedback(feedback), outcome.invalid(fields), outcome.alert(RESULT + "-alert")


def _register(
    data: DashboardData, validator: Validator, market: str, lang: Lang, given: dict[str, Any]
) -> Outcome:
    fields = entry_fields(given)
    if isinstance(fields, Outcome):
        return fields
    station = given.get("station")
    if station is None:
        return Outcome(t("intake.no_station", lang), "danger", {"station": "required"})

    def enter(_actor: object) -> entry.Registered | Outcome:
        try:
            return entry.register_batch(validator, data.store, market, str(station), fields)
        except entry.EntryRefused as exc:
            return Outcome(exc.reason, "danger", _field_of(exc.reason))

    done = changed(lang, UserRole.MANAGER, enter)
    if isinstance(done, Outcome):
        return done
    key = "intake.registered" if done.created else "intake.already"
    passed = done.batch.rapid_test_passed
    verdict = t("intake.passed" if passed else "intake.failed", lang)
    return Outcome(
        t(key, lang).format(code=done.batch.trace_code, verdict=verdict),
        "success" if passed else "warning",
    )


def _field_of(reason: str) -> dict[str, str]:
    """The form field a refusal names (the validator names the message's fields)."""
    for field in ("trace_code", "vendor", "plu", "origin", "supplier", "certificate_no"):
        if field in reason:
            return {field: reason}
    if "quantity_g" in reason:
        return {"quantity_kg": reason}
    if "inhibition" in reason or "rapid_test" in reason:
        return {"inhibition_pct": reason}
    return {}
