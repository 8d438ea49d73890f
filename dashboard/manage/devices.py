"""The devices tab (administrators): the registered devices, adding one (its broker
password shown once), disabling or enabling one."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import Dash, Input, Output, State, ctx, dcc, html, no_update
from pydantic import TypeAdapter, ValidationError

from dashboard.auth import UserRole
from dashboard.components import grid
from dashboard.forms import Outcome, blank, changed, field_id, labelled
from dashboard.i18n import Lang, device_kind_name, t
from marketdb._exceptions import InvalidChange, MarketDatabaseError
from marketdb.devices import DeviceRecord
from marketdb.management import DeviceAdded, Management
from schemas.messages import DeviceKind, Identifier
from schemas.registry import Name

FORM = "device-form"
GRID = "device-registry-grid"
ADD = "device-add"
RESULT = "device-result"
CHOSEN = "device-chosen"
#: The chosen device's version when it was chosen: a change names it (a stale one is refused).
CHOSEN_VERSION = "device-chosen-version"
DISABLE = "device-disable"
ENABLE = "device-enable"
SWITCH_RESULT = "device-switch-result"
SUCCESSOR = "device-successor"
REPLACE = "device-replace"
ASSIGN_VENDOR = "device-assign-vendor"
ASSIGN_NAME = "device-assign-name"
ASSIGN = "device-assign"
# The limits the API and the market file apply to the same fields.
_ID: TypeAdapter[str] = TypeAdapter(Identifier)
_OPTIONAL_ID: TypeAdapter[str | None] = TypeAdapter(Identifier | None)
_OPTIONAL_NAME: TypeAdapter[str | None] = TypeAdapter(Name | None)


def vendor_choices(management: Management, market: str) -> list[dict[str, str]]:
    """The active vendors a scale or screen may be given to."""
    return [
        {"label": f"{v.vendor.id} {v.vendor.name}", "value": v.vendor.id}
        for v in management.vendors(market)
        if v.vendor.active
    ]


def layout(management: Management, market: str, lang: Lang) -> html.Div:
    vendors = vendor_choices(management, market)
    kinds = [{"label": device_kind_name(k.value, lang), "value": k.value} for k in DeviceKind]
    controls: dict[str, Any] = {
        "id": dbc.Input(type="text"),
        "kind": dcc.Dropdown(options=kinds, value=DeviceKind.SCALE.value, clearable=False),
        "vendor": dcc.Dropdown(options=vendors),
        "name": dbc.Input(type="text"),
    }
    fields = []
    for name, control in controls.items():
        control.id = field_id(FORM, name)
        fields.append(labelled(FORM, name, t(f"device.{name}", lang), control, width=3))
    columns = [
        {"field": "id", "headerName": t("device.id", lang)},
        {"field": "kind", "headerName": t("device.kind", lang)},
        {"field": "owner", "headerName": t("device.vendor", lang)},
        {"field": "enabled", "headerName": t("device.enabled", lang)},
    ]
    devices = management.devices(market)
    return html.Div(
        [
            grid(GRID, columns, lang=lang, row_id="id", height="280px", rows=_rows(devices, lang)),
            html.H6(t("device.add", lang), className="mt-3"),
            dbc.Row(fields),
            dbc.Button(t("device.add", lang), id=ADD, color="primary"),
            html.Div(id=RESULT),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            dbc.Label(t("device.id", lang), html_for=CHOSEN, className="small"),
                            dcc.Dropdown(id=CHOSEN, options=_device_choices(devices)),
                        ],
                        md=4,
                    ),
                    dbc.Col(
                        [
                            dbc.Button(
                                t("device.disable", lang), id=DISABLE, color="outline-danger"
                            ),
                            dbc.Button(
                                t("device.enable", lang),
                                id=ENABLE,
                                color="outline-success",
                                className="ms-2",
                            ),
                        ],
                        md=8,
                    ),
                ],
                className="mt-4 align-items-end",
            ),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            dbc.Label(t("device.successor", lang), html_for=SUCCESSOR),
                            dbc.Input(id=SUCCESSOR, type="text"),
                        ],
                        md=3,
                    ),
                    dbc.Col(
                        dbc.Button(t("device.replace", lang), id=REPLACE, color="outline-primary"),
                        md=2,
                    ),
                    dbc.Col(
                        [
                            dbc.Label(t("device.vendor", lang), html_for=ASSIGN_VENDOR),
                            dcc.Dropdown(id=ASSIGN_VENDOR, options=vendors),
                        ],
                        md=3,
                    ),
                    dbc.Col(
                        [
                            dbc.Label(t("device.name", lang), html_for=ASSIGN_NAME),
                            dbc.Input(id=ASSIGN_NAME, type="text"),
                        ],
                        md=2,
                    ),
                    dbc.Col(
                        dbc.Button(t("device.assign", lang), id=ASSIGN, color="outline-primary"),
                        md=2,
                    ),
                ],
                className="mt-3 align-items-end",
            ),
            html.Div(id=SWITCH_RESULT),
            dcc.Store(id=CHOSEN_VERSION),
        ]
    )


def _device_choices(devices: list[DeviceRecord]) -> list[dict[str, str]]:
    return [{"label": f"{d.id} ({d.vendor or d.name or ''})", "value": d.id} for d in devices]


def _rows(devices: list[DeviceRecord], lang: Lang) -> list[dict[str, Any]]:
    return [
        {
            "id": d.id,
            "kind": device_kind_name(d.kind.value, lang),
            "owner": d.vendor or d.name or "",
            "enabled": "✓" if d.enabled else "✗",
        }
        for d in devices
    ]


def register_callbacks(app: Dash, management: Management) -> None:
    @app.callback(
        Output(RESULT, "children"),
        Output(GRID, "rowData", allow_duplicate=True),
        Output(CHOSEN, "options", allow_duplicate=True),
        Input(ADD, "n_clicks"),
        State(field_id(FORM, "id"), "value"),
        State(field_id(FORM, "kind"), "value"),
        State(field_id(FORM, "vendor"), "value"),
        State(field_id(FORM, "name"), "value"),
        State("market", "value"),
        State("lang", "data"),
        prevent_initial_call=True,
    )
    def add(
        _clicks: int,
        device_id: str | None,
        kind: str,
        vendor: str | None,
        name: str | None,
        market: str,
        lang_value: str | None,
    ) -> tuple[Any, ...]:
        lang = Lang.of(lang_value)
        added = _add(management, market, lang, blank(device_id), kind, blank(vendor), blank(name))
        if isinstance(added, Outcome):
            return added.alert(RESULT + "-alert"), no_update, no_update
        if added.password is None:
            text = t("device.added_no_broker", lang).format(device=added.device.id)
        else:
            text = t("device.added", lang).format(device=added.device.id, password=added.password)
        shown = dbc.Alert(text, color="success", id=RESULT + "-alert", className="mt-2")
        registered = management.devices(market)
        return shown, _rows(registered, lang), _device_choices(registered)

    @app.callback(
        Output(SWITCH_RESULT, "children"),
        Output(GRID, "rowData", allow_duplicate=True),
        Input(DISABLE, "n_clicks"),
        Input(ENABLE, "n_clicks"),
        State(CHOSEN, "value"),
        State(CHOSEN_VERSION, "data"),
        State("market", "value"),
        State("lang", "data"),
        prevent_initial_call=True,
    )
    def switch(
        _disable: int | None,
        _enable: int | None,
        device_id: str | None,
        version: int | None,
        market: str,
        lang_value: str | None,
    ) -> tuple[Any, ...]:
        lang = Lang.of(lang_value)
        if not device_id:
            return Outcome(t("form.nothing_selected", lang), "warning").alert(
                SWITCH_RESULT + "-alert"
            ), no_update
        enabled = ctx.triggered_id == ENABLE

        def change(actor_name: str) -> DeviceRecord:
            return management.set_device_enabled(
                market, device_id, enabled, if_version=version or 0, actor=actor_name
            )

        done = changed(lang, UserRole.ADMINISTRATOR, lambda actor: change(actor.name))
        if isinstance(done, Outcome):
            return done.alert(SWITCH_RESULT + "-alert"), no_update
        verb = "device.enable" if enabled else "device.disable"
        ok = Outcome(f"{t(verb, lang)}: {done.id}", "success")
        return ok.alert(SWITCH_RESULT + "-alert"), _rows(management.devices(market), lang)


def register_change_callbacks(app: Dash, management: Management) -> None:
    """Replacing the chosen device with a successor, or giving it another owner or name."""

    @app.callback(
        Output(CHOSEN_VERSION, "data"),
        Input(CHOSEN, "value"),
        Input(SWITCH_RESULT, "children"),
        State("market", "value"),
    )
    def remember_version(device_id: str | None, _done: Any, market: str) -> int | None:
        """The version the next change names: the chosen device's as it is now shown
        (again after each change made here)."""
        if not device_id:
            return None
        try:
            return management.device(market, device_id).version
        except MarketDatabaseError:
            return None

    @app.callback(
        Output(SWITCH_RESULT, "children", allow_duplicate=True),
        Output(GRID, "rowData", allow_duplicate=True),
        Output(CHOSEN, "options", allow_duplicate=True),
        Input(REPLACE, "n_clicks"),
        Input(ASSIGN, "n_clicks"),
        State(CHOSEN, "value"),
        State(CHOSEN_VERSION, "data"),
        State(SUCCESSOR, "value"),
        State(ASSIGN_VENDOR, "value"),
        State(ASSIGN_NAME, "value"),
        State("market", "value"),
        State("lang", "data"),
        prevent_initial_call=True,
    )
    def change(
        _replace: int | None,
        _assign: int | None,
        device_id: str | None,
        version: int | None,
        successor: str | None,
        vendor: str | None,
        name: str | None,
        market: str,
        lang_value: str | None,
    ) -> tuple[Any, ...]:
        lang = Lang.of(lang_value)
        alert_id = SWITCH_RESULT + "-alert"
        if not device_id:
            nothing = Outcome(t("form.nothing_selected", lang), "warning")
            return nothing.alert(alert_id), no_update, no_update
        replacing = ctx.triggered_id == REPLACE
        done = changed(
            lang,
            UserRole.ADMINISTRATOR,
            lambda actor: _change(
                management,
                market,
                device_id,
                version or 0,
                actor.name,
                ((successor or "") if replacing else None, vendor, name),
            ),
        )
        if isinstance(done, Outcome):
            return done.alert(alert_id), no_update, no_update
        if isinstance(done, DeviceAdded):
            if done.password is None:
                text = t("device.added_no_broker", lang).format(device=done.device.id)
            else:
                text = t("device.added", lang).format(device=done.device.id, password=done.password)
        else:
            text = f"{t('device.assign', lang)}: {done.id}"
        shown = dbc.Alert(text, color="success", id=alert_id, className="mt-2")
        registered = management.devices(market)
        return shown, _rows(registered, lang), _device_choices(registered)


def _change(
    management: Management,
    market: str,
    device_id: str,
    version: int,
    actor: str,
    wanted: tuple[str | None, str | None, str | None],
) -> DeviceAdded | DeviceRecord:
    """Replace the device with ``successor`` when one is given, else reassign it."""
    successor, vendor, name = wanted
    if successor is not None:
        try:
            new_id = _ID.validate_python(blank(successor))
        except ValidationError as exc:
            raise InvalidChange(f"successor: {exc.errors()[0]['msg']}", "id") from exc
        return management.replace_device(market, device_id, new_id, if_version=version, actor=actor)
    return management.assign_device(
        market,
        device_id,
        vendor=None if blank(vendor) is None else str(vendor),
        name=None if blank(name) is None else str(name),
        if_version=version,
        actor=actor,
    )


def _add(
    management: Management,
    market: str,
    lang: Lang,
    device_id: object,
    kind: str,
    vendor: object,
    name: object,
) -> DeviceAdded | Outcome:
    errors = {}
    if kind not in {k.value for k in DeviceKind}:
        errors["kind"] = "scales, screens, gates or intake"
    for field, value, adapter in (
        ("id", device_id, _ID),
        ("name", name, _OPTIONAL_NAME),
        ("vendor", vendor, _OPTIONAL_ID),
    ):
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            errors[field] = str(exc.errors()[0]["msg"])
    if errors:
        return Outcome(next(iter(errors.values())), "danger", errors)
    return changed(
        lang,
        UserRole.ADMINISTRATOR,
        lambda actor: management.add_device(
            market,
            str(device_id),
            DeviceKind(kind),
            vendor=None if vendor is None else str(vendor),
            name=None if name is None else str(name),
            actor=actor.name,
        ),
    )
