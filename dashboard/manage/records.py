"""A form for one kind of simple record (a stall, a product): pick one or a new one, edit,
save, remove. The record's key (a stall's id, a product's PLU) is fixed once it exists.

Each kind is a :class:`RecordKind`: its fields and controls, its model (the limits
the API and the market file apply), and the ``Management`` calls that list, add,
edit and remove it. The form keeps the version it loaded, so a stale save or
removal is refused with a message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import dash_bootstrap_components as dbc
from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update
from pydantic import BaseModel

from dashboard.auth import UserRole
from dashboard.forms import Outcome, blank, changed, field_id, labelled, names_of, validated
from dashboard.i18n import Lang, t
from marketdb.management import Management

M = TypeVar("M", bound=BaseModel)

#: (key, label, record, version) of each stored record.
Listed = tuple[str, str, M, int]


@dataclass(frozen=True)
class RecordKind(Generic[M]):
    #: the form's id prefix and i18n prefix, e.g. "stall"
    name: str
    key: str
    model: type[M]
    #: field name -> the control (its id is set here)
    controls: Callable[[Lang], dict[str, Any]]
    records: Callable[[Management, str], list[Listed[M]]]
    create: Callable[[Management, str, M, str], object]
    update: Callable[[Management, str, M, int, str], object]
    remove: Callable[[Management, str, str, int, str], None]

    @property
    def form(self) -> str:
        return f"{self.name}-form"

    def id(self, part: str) -> str:
        return f"{self.name}-{part}"


NEW = "__new__"


def layout(kind: RecordKind[Any], management: Management, market: str, lang: Lang) -> html.Div:
    controls = kind.controls(lang)
    fields = []
    for name, control in controls.items():
        control.id = field_id(kind.form, name)
        fields.append(labelled(kind.form, name, t(f"{kind.name}.{name}", lang), control, width=3))
    return html.Div(
        [
            dcc.Store(id=kind.id("version")),
            dbc.Row(
                dbc.Col(
                    dcc.Dropdown(
                        id=kind.id("select"), options=_choices(kind, management, market, lang)
                    ),
                    md=6,
                ),
                className="mb-3",
            ),
            dbc.Row(fields),
            dbc.Row(
                dbc.Col(
                    [
                        dbc.Button(t("form.save", lang), id=kind.id("save"), color="primary"),
                        dbc.Button(
                            t("form.remove", lang),
                            id=kind.id("remove"),
                            color="outline-danger",
                            className="ms-2",
                        ),
                    ]
                )
            ),
            html.Div(id=kind.id("result")),
        ]
    )


def _choices(
    kind: RecordKind[Any], management: Management, market: str, lang: Lang
) -> list[dict[str, str]]:
    listed = kind.records(management, market)
    new = {"label": t(f"{kind.name}.new", lang), "value": NEW}
    return [new] + [{"label": label, "value": key} for key, label, _, _ in listed]


def _values(kind: RecordKind[Any], record: BaseModel | None, names: Sequence[str]) -> list[Any]:
    if record is None:
        return ["" for _ in names]
    dumped = record.model_dump(mode="json")
    return ["" if dumped.get(name) is None else dumped[name] for name in names]


def register_callbacks(app: Dash, kind: RecordKind[Any], management: Management) -> None:
    pattern = {"type": kind.form, "field": ALL}

    def find(market: str, key: str) -> Listed[Any] | None:
        return next((row for row in kind.records(management, market) if row[0] == key), None)

    @app.callback(
        Output(pattern, "value"),
        Output(pattern, "disabled"),
        Output(kind.id("version"), "data"),
        Input(kind.id("select"), "value"),
        State("market", "value"),
    )
    def load(key: str | None, market: str) -> tuple[Any, ...]:
        names = names_of(ctx.outputs_list[0])
        found = None if key in (None, NEW) else find(market, str(key))
        record, version = (None, None) if found is None else (found[2], found[3])
        # The key of a stored record is its identity: shown, not editable.
        fixed = [found is not None and name == kind.key for name in names]
        return _values(kind, record, names), fixed, version

    @app.callback(
        Output({"type": f"{kind.form}-feedback", "field": ALL}, "children"),
        Output(pattern, "invalid"),
        Output(kind.id("result"), "children"),
        Output(kind.id("select"), "options"),
        Output(kind.id("select"), "value"),
        Input(kind.id("save"), "n_clicks"),
        Input(kind.id("remove"), "n_clicks"),
        State(pattern, "value"),
        State(kind.id("select"), "value"),
        State(kind.id("version"), "data"),
        State("market", "value"),
        State("lang", "data"),
        prevent_initial_call=True,
    )
    def act(
        _save: int | None,
        _remove: int | None,
        values: list[Any],
        selected: str | None,
        version: int | None,
        market: str,
        lang_value: str | None,
    ) -> tuple[Any, ...]:
        lang = Lang.of(lang_value)
        given = {
            name: blank(value)
            for name, value in zip(names_of(ctx.states_list[0]), values, strict=True)
        }
        stored = None if selected in (None, NEW) or version is None else str(selected)
        removing = ctx.triggered_id == kind.id("remove")
        outcome = _act(kind, management, market, lang, given, stored, version, removing)
        feedback, fields = names_of(ctx.outputs_list[0]), names_of(ctx.outputs_list[1])
        alert = outcome.alert(kind.id("result") + "-alert")
        if not outcome.ok:
            return outcome.feedback(feedback), outcome.invalid(fields), alert, no_update, no_update
        key = None if removing else str(given.get(kind.key) or stored)
        options = _choices(kind, management, market, lang)
        return outcome.feedback(feedback), outcome.invalid(fields), alert, options, key or NEW


def _act(
    kind: RecordKind[Any],
    management: Management,
    market: str,
    lang: Lang,
    given: dict[str, Any],
    stored: str | None,
    version: int | None,
    removing: bool,
) -> Outcome:
    if removing:
        if stored is None or version is None:
            return Outcome(t("form.nothing_selected", lang), "warning")
        done = changed(
            lang,
            UserRole.MANAGER,
            lambda actor: kind.remove(management, market, stored, version, actor.name),
        )
        return done if isinstance(done, Outcome) else _done(lang, "form.removed", stored)
    if stored is not None:
        given[kind.key] = stored
    # An empty field is an omitted one, as in a market file: the model's default holds.
    record = validated(kind.model, {k: v for k, v in given.items() if v is not None}, lang)
    if isinstance(record, Outcome):
        return record
    if stored is None:
        saved = changed(
            lang,
            UserRole.MANAGER,
            lambda actor: kind.create(management, market, record, actor.name),
        )
    else:
        assert version is not None
        saved = changed(
            lang,
            UserRole.MANAGER,
            lambda actor: kind.update(management, market, record, version, actor.name),
        )
    return saved if isinstance(saved, Outcome) else _done(lang, "form.saved", given[kind.key])


def _done(lang: Lang, key: str, what: object) -> Outcome:
    return Outcome(t(key, lang).format(what=what), "success")
