"""What the management forms share: fields with their errors beside them, and the outcome.

A form's fields are components with pattern-matching ids (``{"type": <form>,
"field": <name>}``), each followed by a feedback line (``{"type": <form>-feedback,
…}``), so one callback reads every field and marks the ones at fault. Errors come
from the same checks the API makes: the model's own limits (pydantic) and the
market's rules (:class:`~marketdb._exceptions.InvalidChange` names its field).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dash_bootstrap_components as dbc
from dash import html
from pydantic import BaseModel, ValidationError

from dashboard.auth import Actor, UserRole, current_actor
from dashboard.i18n import Lang, t
from marketdb._exceptions import (
    InvalidChange,
    MarketDatabaseError,
    NeedsConfirmation,
    StaleEdit,
)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def field_id(form: str, name: str) -> dict[str, str]:
    return {"type": form, "field": name}


def feedback_id(form: str, name: str) -> dict[str, str]:
    return {"type": f"{form}-feedback", "field": name}


def labelled(form: str, name: str, label: str, control: Any, *, width: int = 6) -> dbc.Col:
    """A field with its label and the line its error shows on."""
    return dbc.Col(
        [
            dbc.Label(label, html_for=f"{form}-{name}", className="small mb-1"),
            control,
            html.Div(id=feedback_id(form, name), className="invalid-feedback d-block small"),
        ],
        md=width,
        className="mb-2",
    )


def names_of(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ``field`` of each component a pattern input, state or output matched (from
    ``ctx.states_list[i]`` or ``ctx.outputs_list[i]``), in the order Dash gives them."""
    return [entry["id"]["field"] for entry in entries]


@dataclass
class Outcome:
    """What a form shows after Save: a message, and errors by field."""

    message: str
    colour: str
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.colour == "success"

    def alert(self, alert_id: str) -> dbc.Alert:
        return dbc.Alert(self.message, color=self.colour, id=alert_id, className="mt-2 mb-0")

    def feedback(self, names: Sequence[str]) -> list[str]:
        return [self.errors.get(name, "") for name in names]

    def invalid(self, names: Sequence[str]) -> list[bool]:
        return [name in self.errors for name in names]


#: Pydantic's error types people meet in forms, said in their language; others keep
#: pydantic's own words.
_PLAIN_ERRORS = {
    "missing": "form.err.required",
    "string_too_short": "form.err.required",
    "string_pattern_mismatch": "form.err.pattern",
    "string_too_long": "form.err.too_long",
    "greater_than_equal": "form.err.range",
    "less_than_equal": "form.err.range",
    "int_parsing": "form.err.number",
    "int_type": "form.err.number",
    "date_from_datetime_parsing": "form.err.date",
    "date_parsing": "form.err.date",
    "enum": "form.err.choice",
}


def validated(model: type[M], values: Mapping[str, Any], lang: Lang) -> M | Outcome:
    """The form's values as ``model``, or the fields the model refuses, each with why."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors(include_url=False, include_input=False):
            name = str(error["loc"][0]) if error["loc"] else ""
            key = _PLAIN_ERRORS.get(error["type"])
            pattern = str(error.get("ctx", {}).get("pattern", ""))
            if key == "form.err.pattern" and "\\u4e00" not in pattern:
                key = "form.err.pattern_id"  # ids: no Chinese, no brackets
            said = (
                t(key, lang).format(**error.get("ctx", {}))
                if key is not None
                else str(error["msg"]).removeprefix("Value error, ")
            )
            errors.setdefault(name, said)
        general = errors.pop("", None)
        return Outcome(general or _first(errors), "danger", errors)


def _first(errors: Mapping[str, str]) -> str:
    name, message = next(iter(errors.items()))
    return f"{name}: {message}"


def changed(lang: Lang, needed: UserRole, change: Callable[[Actor], T]) -> T | Outcome:
    """Run ``change`` as the current user if their role allows, or say why it was refused."""
    actor = current_actor()
    if not actor.role.may(needed):
        return Outcome(t("form.not_allowed", lang).format(role=needed.value), "danger")
    try:
        return change(actor)
    except StaleEdit as exc:
        return Outcome(f"{t('form.stale', lang)} {exc}", "warning")
    except NeedsConfirmation as exc:
        return Outcome(f"{exc} ({t('form.confirm_hint', lang)})", "warning")
    except InvalidChange as exc:
        errors = {} if exc.field is None else {exc.field: str(exc)}
        return Outcome(str(exc), "danger", errors)
    except MarketDatabaseError as exc:
        return Outcome(str(exc), "danger")


def blank(value: object) -> object:
    """An empty text field is no value (None), as an omitted key in a market file."""
    if isinstance(value, str):
        value = value.strip()
    return None if value in ("", None, []) else value
