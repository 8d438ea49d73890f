"""The errors the HTTP API answers with, and the one place other layers' errors become them.

Every error response, whatever its cause, has the same JSON body::

    {"error": {"code": "unknown_market", "message": "unknown market 'xx'"}}

``code`` is stable and meant for programs; ``message`` is for people; ``details``
is added where there is more to say (one entry per invalid field of a 422).
Tracebacks and store internals are logged, never sent.

Raised by routers and dependencies::

    APIError
    ├── NotAuthenticated      401  no token, or not one we issued (WWW-Authenticate: Bearer)
    ├── Forbidden             403  a valid token whose role or scope does not cover this
    ├── NotFound              404
    │   └── UnknownMarket     404  the path names a market that is not registered
    ├── Conflict              409  e.g. a trace code already registered with other content
    ├── PreconditionFailed    412  If-Match names a version that is no longer current
    ├── PreconditionRequired  428  an edit without If-Match (it would overwrite blindly)
    ├── Unprocessable         422  well-formed input the domain rules refuse
    ├── AuthNotConfigured     503  no (readable) tokens file: protected endpoints stay shut
    └── ManagementUnavailable 503  no market database: the registry comes from market files

Translated here from other layers::

    RequestValidationError    422  invalid_request, with the fields in ``details``
    HTTPException             its own status: 400 bad_request (unreadable body),
                                   404 not_found, 405 method_not_allowed,
                                   413 payload_too_large (api.security.BodySizeLimit), ...
    StoreUnavailable          503  store_unavailable, with Retry-After
    any other StoreError      502  store_error
    marketdb's errors         NotFound 404, StaleEdit 412 stale_edit, NeedsConfirmation 409
                              needs_confirmation, Conflict 409, InvalidChange 409
                              invalid_change (the field in ``details``), ImportRefused 422,
                              BrokerRefused 502 broker_error, MarketDatabaseUnavailable 503
    anything else             500  internal_error (logged with its traceback)

Why 502 for a failed store query (``StoreQueryError``) rather than 500: the request
was valid and this process did its part; the backend behind it answered with an
error. 502 Bad Gateway says exactly that, keeps 500 for bugs in this process (so an
alert on 500 means "look at the API"), and, unlike 503, carries no invitation to
retry: a query the store refuses is not fixed by waiting.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from marketdb import _exceptions as marketdb_errors
from marketdb._exceptions import InvalidChange, MarketDatabaseError
from storage._exceptions import StoreError, StoreUnavailable
from storage.outage import OutageLog

log = logging.getLogger(__name__)

#: Seconds a client is asked to wait when the store did not say.
DEFAULT_RETRY_AFTER_S = 5


# -- the body ------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(description="Where the problem is, e.g. ['query', 'limit'].")
    message: str
    type: str = Field(description="Machine-readable kind of problem, e.g. 'int_parsing'.")


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable error code.")
    message: str = Field(description="What went wrong, for people.")
    details: list[ErrorDetail] | None = Field(
        default=None, description="Per-field problems of an invalid request."
    )


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorInfo


_DESCRIPTIONS = {
    400: "The request body could not be read (e.g. it is not UTF-8).",
    401: "Missing or invalid bearer token.",
    403: "The token's role or scope does not allow this.",
    404: "No such resource (or market).",
    409: "Conflicts with what is already stored.",
    412: "`stale_edit`: changed by someone else since the version in If-Match; reload.",
    428: "An edit needs If-Match with the ETag of the version it was made on.",
    422: "The request is invalid; `details` names the fields.",
    500: "A bug in the API; it has been logged.",
    502: "The store failed to answer the query.",
    503: "The store is unavailable (see Retry-After), or authentication is not configured.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses, all with :class:`ErrorBody`."""
    return {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in statuses
    }


#: Errors any ``/api/v1`` route can answer with (declared once, where routers are included).
API_ERRORS = error_responses(404, 422, 502, 503)
#: Errors of a route that needs a token.
AUTH_ERRORS = error_responses(401, 403)


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    details: Sequence[ErrorDetail] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=ErrorInfo(code=code, message=message, details=details))
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True), status_code=status, headers=headers
    )


# -- the hierarchy -------------------------------------------------------------------


class APIError(Exception):
    """Base of the errors routers raise; subclasses fix the status and the code."""

    status_code: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.headers = dict(headers or {})


class NotAuthenticated(APIError):
    status_code = 401
    default_code = "not_authenticated"

    def __init__(self, message: str, *, invalid_token: bool = False) -> None:
        # RFC 6750 §3: the challenge names the scheme, and the error when a token was sent.
        challenge = 'Bearer error="invalid_token"' if invalid_token else "Bearer"
        super().__init__(message, headers={"WWW-Authenticate": challenge})


class Forbidden(APIError):
    status_code = 403
    default_code = "forbidden"


class NotFound(APIError):
    status_code = 404
    default_code = "not_found"


class UnknownMarket(NotFound):
    default_code = "unknown_market"

    def __init__(self, market: str) -> None:
        super().__init__(f"unknown market {market!r}")


class Conflict(APIError):
    status_code = 409
    default_code = "conflict"


class Unprocessable(APIError):
    status_code = 422
    default_code = "unprocessable"


class PreconditionFailed(APIError):
    status_code = 412
    default_code = "precondition_failed"


class PreconditionRequired(APIError):
    status_code = 428
    default_code = "precondition_required"


class AuthNotConfigured(APIError):
    status_code = 503
    default_code = "auth_not_configured"


class ManagementUnavailable(APIError):
    status_code = 503
    default_code = "management_unavailable"


# -- handlers ------------------------------------------------------------------------

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def install_error_handlers(
    app: FastAPI,
    *,
    outage: OutageLog,
    on_store_error: Callable[[StoreError], None] | None = None,
) -> None:
    """Make every error JSON; ``on_store_error`` is told about each store failure (metrics).

    Store failures are logged through ``outage``: one line when the store goes
    away and one when it is back, not one per request.
    """

    async def api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, APIError)
        return error_response(exc.status_code, exc.code, exc.message, headers=exc.headers)

    async def invalid_request(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [_detail(error) for error in exc.errors()]
        if details and all(_missing_if_match(d) for d in details):
            return error_response(
                428,
                "precondition_required",
                "send If-Match with the ETag of the version you edited, so that a change "
                "made meanwhile is not overwritten",
            )
        return error_response(422, "invalid_request", _summary(details), details=details or None)

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, headers=exc.headers)

    async def store_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StoreError)
        if on_store_error is not None:
            on_store_error(exc)
        outage.failed(exc, f"{request.method} {request.url.path}")
        if isinstance(exc, StoreUnavailable):
            retry_after = _retry_after_seconds(exc.retry_after)
            return error_response(
                503,
                "store_unavailable",
                "the data store is unavailable; try again later",
                headers={"Retry-After": str(retry_after)},
            )
        return error_response(502, "store_error", "the data store could not answer this request")

    async def market_database_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, MarketDatabaseError)
        status, code = _market_database_status(exc)
        if status >= 500:
            log.warning("management request failed: %s", exc)
        details = None
        if isinstance(exc, InvalidChange) and exc.field is not None:
            details = [ErrorDetail(loc=["body", exc.field], message=str(exc), type=code)]
        return error_response(status, code, str(exc), details=details)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error during %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "internal server error")

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(StoreError, store_error)
    app.add_exception_handler(MarketDatabaseError, market_database_error)
    # The backstop for errors in middleware outside UnhandledErrors.
    app.add_exception_handler(Exception, unexpected)
    app.add_middleware(UnhandledErrors)


def _missing_if_match(detail: ErrorDetail) -> bool:
    """An edit sent without the version it was made on (RFC 6585: 428, not 422)."""
    return detail.type == "missing" and detail.loc == ["header", "If-Match"]


def _market_database_status(exc: MarketDatabaseError) -> tuple[int, str]:
    """The status and code of a market database error (most specific class first)."""
    table: tuple[tuple[type[MarketDatabaseError], int, str], ...] = (
        (marketdb_errors.NotFound, 404, "not_found"),
        (marketdb_errors.StaleEdit, 412, "stale_edit"),
        (marketdb_errors.NeedsConfirmation, 409, "needs_confirmation"),
        (marketdb_errors.Conflict, 409, "conflict"),
        # A change the market's current state refuses (a stall taken, a product unknown):
        # the body was valid by the document, so a conflict, as a refused batch is.
        (InvalidChange, 409, "invalid_change"),
        (marketdb_errors.ImportRefused, 422, "import_refused"),
        (marketdb_errors.BrokerRefused, 502, "broker_error"),
        (marketdb_errors.MarketDatabaseUnavailable, 503, "market_database_unavailable"),
    )
    for kind, status, code in table:
        if isinstance(exc, kind):
            return status, code
    return 400, "bad_request"


class UnhandledErrors:
    """Answers an exception no handler took with a JSON 500, and logs it with its traceback.

    Starlette's outermost error middleware would answer too, but then re-raises to
    the server, which drops the connection: a client's next request on it would fail.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_noting_start)
        except Exception as exc:
            if started:
                raise  # too late for an error response; the server closes the connection
            log.error("unhandled error during %s %s", scope["method"], scope["path"], exc_info=exc)
            await error_response(500, "internal_error", "internal server error")(
                scope, receive, send
            )


def _detail(error: Mapping[str, Any]) -> ErrorDetail:
    # Only location, message and type: the input may be large, and ``ctx`` may hold
    # exception objects that are neither JSON nor meant for clients.
    loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ())]
    return ErrorDetail(loc=loc, message=str(error.get("msg", "")), type=str(error.get("type", "")))


def _summary(details: Sequence[ErrorDetail]) -> str:
    if not details:
        return "invalid request"
    first = details[0]
    where = ".".join(str(part) for part in first.loc)
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return f"invalid request: {where}: {first.message}{more}"


def _retry_after_seconds(retry_after: float | None) -> int:
    if retry_after is None or not math.isfinite(retry_after) or retry_after <= 0:
        return DEFAULT_RETRY_AFTER_S
    return math.ceil(retry_after)
