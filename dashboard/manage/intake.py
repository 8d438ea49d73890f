"""The intake desk's form: staff register a batch and, if it was tested, its rapid test.

The entry goes through ``ingest.entry`` as the desk's own MQTT message would, so
the form and the HTTP API accept and refuse the same batches. The quantity is
entered in kilograms (Decimal, up to the gram). Markets test a sample of their
batches: a batch entered without a test result and rate was not tested at intake.
A test is its result and its inhibition rate together (the validator checks they
agree, GB/T 5009.199: 50 % or more fails); one without the other is refused, so
a forgotten field never registers a tested batch as untested.
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
from marketdb.locks import lock_if_failed
from schemas.messages import RapidTestResult

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
        # Empty (with an empty rate): not tested at intake.
        "rapid_test_result": dcc.Dropdown(
            options=[
                {"label": t("intake.result_pass", lang), "value": RapidTestResult.PASS.value},
                {"label": t("intake.result_fail", lang), "value": RapidTestResult.FAIL.value},
            ],
            placeholder=t("intake.not_tested", lang),
        ),
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


def entry_fields(values: dict[str, Any], lang: Lang) -> dict[str, Any] | Outcome:
    """The form as a batch message's fields (grams; the test, if any), or the fields at
    fault: numbers that are not numbers, half a test."""
    errors: dict[str, str] = {}
    grams = _decimal(values.get("quantity_kg"), "quantity_kg", errors)
    if grams is not None:
        grams *= _GRAMS_PER_KG
        if grams != grams.to_integral_value():
            errors["quantity_kg"] = "kg, to the gram (3 decimals at most)"
    test = _rapid_test(values, lang, errors)
    if errors or grams is None:
        return Outcome(next(iter(errors.values())), "danger", errors)
    fields: dict[str, Any] = {
        "trace_code": values.get("trace_code"),
        "vendor": values.get("vendor"),
        "plu": values.get("plu"),
        "origin": values.get("origin"),
        "supplier": values.get("supplier"),
        "quantity_g": int(grams),
        "certificate_no": values.get("certificate_no"),
    }
    if test is not None:
        fields["rapid_test"] = test
    return fields


def _rapid_test(
    values: dict[str, Any], lang: Lang, errors: dict[str, str]
) -> dict[str, str] | None:
    """The test's fields, or None when neither was entered (not tested at intake).

    Half a test is an error on the missing field: it is a test whose result or rate was
    forgotten, not an untested batch. Whether result and rate agree is the validator's.
    """
    result, given_rate = values.get("rapid_test_result"), values.get("inhibition_pct")
    if result is None and given_rate is None:
        return None
    if result is None:
        errors["rapid_test_result"] = t("intake.half_test", lang)
        return None
    if given_rate is None:
        errors["inhibition_pct"] = t("intake.half_test", lang)
        return None
    rate = _decimal(given_rate, "inhibition_pct", errors)
    return None if rate is None else {"result": str(result), "inhibition_pct": str(rate)}


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
    fields = entry_fields(given, lang)
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
    if done.reading is not None and data.lock_keeper is not None:
        lock_if_failed(data.lock_keeper, done.reading)  # a failed batch is locked at once
    key = "intake.registered" if done.created else "intake.already"
    passed = done.batch.rapid_test_passed
    verdict = t(_VERDICTS[passed], lang)
    return Outcome(
        t(key, lang).format(code=done.batch.trace_code, verdict=verdict),
        "warning" if passed is False else "success",
    )


#: What the desk is told of the stored batch's test (None: not tested at intake).
_VERDICTS = {True: "intake.passed", False: "intake.failed", None: "intake.untested"}


def _field_of(reason: str) -> dict[str, str]:
    """The form field a refusal names (the validator names the message's fields)."""
    for field in ("trace_code", "vendor", "plu", "origin", "supplier", "certificate_no"):
        if field in reason:
            return {field: reason}
    if "quantity_g" in reason:
        return {"quantity_kg": reason}
    if "rapid_test.result" in reason:
        return {"rapid_test_result": reason}
    if "inhibition" in reason or "rapid_test" in reason:
        return {"inhibition_pct": reason}
    return {}
