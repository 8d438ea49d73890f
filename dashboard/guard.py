"""What the dashboard's Flask server answers besides Dash itself: security headers, and JSON
errors for callback requests Dash cannot use.

Dash trusts the callback body the browser's renderer builds: a body that is not
JSON, lacks a key, names an unknown callback or carries the wrong number of
inputs raised deep inside Dash and came back as Flask's HTML 500. Such bodies are
checked here first and refused with a JSON 400; any other HTTP error is JSON too.

The policy: scripts only from this origin plus Dash's own inline start-up script
(by hash). Styles also ``'unsafe-inline'``, because Plotly and AG Grid write
``<style>`` elements and style attributes at run time; images also ``data:``,
which Plotly uses for heat maps.
"""

from __future__ import annotations

import json
from typing import Any

from dash import Dash
from flask import Flask, Response, request
from pydantic import BaseModel, ConfigDict, ValidationError
from werkzeug.exceptions import HTTPException, InternalServerError

from webpage.headers import content_security_policy, page_headers

CALLBACK_PATH = "_dash-update-component"


class _Prop(BaseModel):
    """One input, state or output of a callback request: a component id and property."""

    model_config = ConfigDict(extra="allow")

    id: str | dict[str, Any]
    property: str


#: A prop, or for pattern-matching callbacks (ALL, ALLSMALLER) a list of them.
_Props = list[_Prop | list[_Prop]]


class _CallbackBody(BaseModel):
    """The keys of Dash's callback request that Dash reads without checking."""

    model_config = ConfigDict(extra="allow")

    output: str
    outputs: _Prop | _Props
    inputs: _Props
    state: _Props = []
    changedPropIds: list[str] = []  # Dash's name


def install_guard(app: Dash, server: Flask) -> None:
    """Check callback bodies, answer errors in JSON, and send the security headers."""
    policy: list[str] = []  # built at the first response: every callback is registered by then

    @server.before_request
    def _check_callback_body() -> Response | None:
        if request.method != "POST" or not request.path.endswith("/" + CALLBACK_PATH):
            return None
        problem = _callback_body_problem(app, request.get_data(as_text=True))
        return None if problem is None else json_error(400, problem)

    @server.after_request
    def _security_headers(response: Response) -> Response:
        if not policy:
            policy.append(dashboard_policy(app))
        for name, value in page_headers(policy[0]).items():
            # The login page sends a stricter policy of its own.
            response.headers.setdefault(name, value)
        return response

    server.register_error_handler(HTTPException, _http_error)


def dashboard_policy(app: Dash) -> str:
    return content_security_policy(
        {
            "default-src": ["'self'"],
            "script-src": ["'self'", *app.csp_hashes()],
            "style-src": ["'self'", "'unsafe-inline'"],
            "img-src": ["'self'", "data:"],
            "object-src": ["'none'"],
            "form-action": ["'self'"],
            "base-uri": ["'self'"],
            "frame-ancestors": ["'none'"],
        }
    )


def json_error(status: int, message: str) -> Response:
    return Response(json.dumps({"error": message}), status, mimetype="application/json")


def _http_error(error: HTTPException) -> Response:
    # Flask has logged an unhandled exception's traceback before it gets here as a 500.
    if isinstance(error, InternalServerError):
        return json_error(500, "internal server error")
    return json_error(error.code or 500, error.description or error.name)


def _callback_body_problem(app: Dash, raw: str) -> str | None:
    """Why Dash could not run this callback body, or None if it can."""
    try:
        body = _CallbackBody.model_validate_json(raw)
    except ValidationError as exc:
        return f"not a Dash callback request: {_first_error(exc)}"
    callback = app.callback_map.get(body.output)
    if callback is None:
        return f"no callback has the outputs {body.output!r}"
    expected = (len(callback["inputs"]), len(callback["state"]))
    if (len(body.inputs), len(body.state)) != expected:
        return f"the callback takes {expected[0]} inputs and {expected[1]} states"
    return None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])
