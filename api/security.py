"""API tokens: issuing them, keeping only their hashes, and checking bearer tokens.

A token is ``secrets.token_urlsafe(32)``: 256 random bits, shown once when it is
created. The tokens file (its path is the composition root's to choose; JSON, mode 0600) keeps
only its SHA-256 digest together with a name, a role and an optional scope::

    {"version": 1, "tokens": [{"name": "office", "role": "manager", "sha256": "…",
                               "created": "2025-05-12T08:00:00+08:00",
                               "market": null, "vendor": null}]}

Roles:

* ``administrator`` may do everything: manage devices (and their broker users) and
  everything a manager may;
* ``manager`` manages vendors, stalls, products and batches, and reads everything;
* ``viewer`` reads what managers read (sales, footfall, devices, the audit log) and
  changes nothing;
* ``screen`` may read what a stall's price screen shows and the status of devices
  (scoped to a market, and optionally to one vendor's devices);
* ``monitor`` may scrape ``/metrics`` and nothing else, so a Prometheus server
  does not hold a token that can register batches.

The file is re-read when it changes, so ``stallwatch api-token create`` and
``revoke`` take effect without a restart. Without a tokens file every protected
endpoint answers 503: the API is never open by default.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api._exceptions import AuthNotConfigured, Forbidden, NotAuthenticated, error_response
from api.deps import ContextDep
from marketdb.accounts import token_by_digest
from schemas.messages import Identifier
from storage.privatefiles import PrivateFileError, read_private, write_private

log = logging.getLogger(__name__)

#: Longer bearer values are refused before hashing; our tokens are 43 characters.
MAX_TOKEN_CHARS = 256
_TOKEN_BYTES = 32


class Role(StrEnum):
    ADMINISTRATOR = "administrator"
    MANAGER = "manager"
    VIEWER = "viewer"
    SCREEN = "screen"
    MONITOR = "monitor"

    def grants(self, required: Role) -> bool:
        return required in _GRANTED[self]


#: What each role may do besides its own: managers did everything before administrators
#: existed, and still do all but device management.
_GRANTED: dict[Role, frozenset[Role]] = {
    Role.ADMINISTRATOR: frozenset(Role),
    Role.MANAGER: frozenset({Role.MANAGER, Role.VIEWER, Role.SCREEN, Role.MONITOR}),
    Role.VIEWER: frozenset({Role.VIEWER}),
    Role.SCREEN: frozenset({Role.SCREEN}),
    Role.MONITOR: frozenset({Role.MONITOR}),
}


class TokensFileError(RuntimeError):
    """The tokens file cannot be read or is not valid; protected endpoints stay shut."""


# -- the file ----------------------------------------------------------------------


class TokenRecord(BaseModel):
    """One issued token as stored: never the token itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Identifier
    role: Role
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created: AwareDatetime
    market: Identifier | None = None
    vendor: Identifier | None = None

    @model_validator(mode="after")
    def _vendor_needs_market(self) -> TokenRecord:
        if self.vendor is not None and self.market is None:
            raise ValueError("a token scoped to a vendor must also name the market")
        return self


class TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    tokens: tuple[TokenRecord, ...] = ()

    @model_validator(mode="after")
    def _names_are_unique(self) -> TokensFile:
        names = [record.name for record in self.tokens]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate token names {duplicates}")
        return self


def hash_token(token: str) -> str:
    # A single SHA-256 is enough here, unlike for passwords: tokens carry 256 random
    # bits, so there is no dictionary to try and a preimage search is infeasible no
    # matter how fast the hash is. Key stretching (PBKDF2) would only make every
    # screen poll cost tens of milliseconds of CPU.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def read_tokens_file(path: Path) -> TokensFile:
    try:
        return read_private(path, TokensFile, "tokens file") or TokensFile()
    except PrivateFileError as exc:
        raise TokensFileError(str(exc)) from exc


def write_tokens_file(path: Path, content: TokensFile) -> None:
    """Replace the file atomically, readable by its owner only."""
    write_private(path, content.model_dump_json(indent=2) + "\n")


def create_token(
    path: Path,
    role: Role,
    *,
    name: str | None = None,
    market: str | None = None,
    vendor: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> tuple[str, TokenRecord]:
    """Issue a token, store its hash, and return the token (the only time it exists)."""
    current = read_tokens_file(path)
    token, record = issue_token(role, name=name, market=market, vendor=vendor, now=now)
    try:
        updated = TokensFile(tokens=(*current.tokens, record))
    except ValidationError as exc:
        raise TokensFileError(_first_error(exc)) from exc
    write_tokens_file(path, updated)
    return token, record


def issue_token(
    role: Role,
    *,
    name: str | None = None,
    market: str | None = None,
    vendor: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> tuple[str, TokenRecord]:
    """A new token and the record of its hash, to be stored by the caller (a file, the
    market database)."""
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    try:
        record = TokenRecord(
            name=name or f"{role.value}-{secrets.token_hex(3)}",
            role=role,
            sha256=hash_token(token),
            created=now(),
            market=market,
            vendor=vendor,
        )
    except ValidationError as exc:
        raise TokensFileError(_first_error(exc)) from exc
    return token, record


def revoke_token(path: Path, name: str) -> bool:
    """Remove the token called ``name``; False if there was none."""
    current = read_tokens_file(path)
    kept = tuple(record for record in current.tokens if record.name != name)
    if len(kept) == len(current.tokens):
        return False
    write_tokens_file(path, TokensFile(tokens=kept))
    return True


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


# -- checking tokens -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: the token's name, role and scope."""

    name: str
    role: Role
    market: str | None = None
    vendor: str | None = None

    def may_read_market(self, market: str) -> bool:
        return self.market is None or self.market == market

    def may_see_vendor(self, vendor: str | None) -> bool:
        return self.vendor is None or self.vendor == vendor


def _principal(record: TokenRecord) -> Principal:
    return Principal(record.name, record.role, record.market, record.vendor)


class TokenStore:
    """The tokens file, re-read whenever it changes on disk.

    Checking a request costs one ``stat`` and one SHA-256; the file is small.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._version: tuple[int, int, int] | None = None
        self._records: tuple[TokenRecord, ...] = ()

    def authenticate(self, token: str) -> Principal | None:
        """The principal the token was issued to, or None."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        digest = hash_token(token)
        found: TokenRecord | None = None
        # Compare against every record without stopping early, in constant time each,
        # so the response time says nothing about how close a guess came.
        for record in self._current():
            if hmac.compare_digest(digest, record.sha256):
                found = record
        return None if found is None else _principal(found)

    def _current(self) -> tuple[TokenRecord, ...]:
        try:
            info = self.path.stat()
        except OSError as exc:
            raise TokensFileError(f"cannot read tokens file {self.path}: {exc.strerror}") from exc
        version = (info.st_mtime_ns, info.st_size, info.st_ino)
        with self._lock:
            if version != self._version:
                self._records = read_tokens_file(self.path).tokens
                self._version = version
            return self._records


class DatabaseTokens:
    """The market database's tokens (``marketdb.accounts``): one indexed read of the
    token's digest per request, so a revoked token is refused at once by every replica."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def authenticate(self, token: str) -> Principal | None:
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        try:
            with self._sessions() as session:
                stored = token_by_digest(session, hash_token(token))
        except SQLAlchemyError as exc:  # the statement names the digest: not in the message
            raise TokensFileError(f"cannot read the API tokens ({type(exc).__name__})") from exc
        if stored is None:
            return None
        return Principal(stored.name, Role(stored.role), stored.market, stored.vendor)


class TokenAuthority(Protocol):
    """Where bearer tokens are checked: :class:`TokenStore` (a file) or :class:`DatabaseTokens`."""

    def authenticate(self, token: str) -> Principal | None: ...


# -- FastAPI dependencies ------------------------------------------------------------

_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="opaque",
    description="An API token from `stallwatch api-token create`.",
)


def authenticate(
    context: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller's principal; 401 without a valid token, 503 when no tokens are configured."""
    if context.tokens is None:
        raise AuthNotConfigured(
            "API authentication is not configured: set STALLWATCH_API_TOKENS_FILE and "
            "create tokens with `stallwatch api-token create`"
        )
    if credentials is None:
        raise NotAuthenticated("this endpoint needs an 'Authorization: Bearer <token>' header")
    try:
        principal = context.tokens.authenticate(credentials.credentials)
    except TokensFileError as exc:
        log.error("%s; refusing every request that needs a token", exc)
        raise AuthNotConfigured("API tokens cannot be checked right now") from exc
    if principal is None:
        raise NotAuthenticated("the bearer token is not valid", invalid_token=True)
    return principal


def require_role(role: Role) -> Callable[..., Principal]:
    """A dependency: the caller's principal if its role grants ``role``, else 403.

    When the route has a ``{market}`` path parameter, a token scoped to another
    market is refused too.
    """

    def dependency(
        request: Request, principal: Annotated[Principal, Depends(authenticate)]
    ) -> Principal:
        if not principal.role.grants(role):
            raise Forbidden(f"a {principal.role.value} token may not do this; it needs {role}")
        market = request.path_params.get("market")
        if isinstance(market, str) and not principal.may_read_market(market):
            raise Forbidden(f"this token is limited to market {principal.market!r}")
        return principal

    return dependency


Administrator = Annotated[Principal, Depends(require_role(Role.ADMINISTRATOR))]
"""A route parameter that admits administrator tokens only."""
Manager = Annotated[Principal, Depends(require_role(Role.MANAGER))]
"""A route parameter that admits manager and administrator tokens."""
Viewer = Annotated[Principal, Depends(require_role(Role.VIEWER))]
"""A route parameter that admits every token that may read management data."""
ScreenOrManager = Annotated[Principal, Depends(require_role(Role.SCREEN))]
"""A route parameter that admits screen and manager tokens."""
Monitor = Annotated[Principal, Depends(require_role(Role.MONITOR))]
"""A route parameter that admits the metrics scraper (and managers)."""


# -- request size ----------------------------------------------------------------------


class BodySizeLimit:
    """Refuses request bodies over ``max_bytes`` with a JSON 413 before any route reads them.

    A declared ``Content-Length`` that is too large is answered at once; a chunked
    body is counted as it arrives. (FastAPI's own ``max_body_size`` answers the
    first case in plain text, outside the JSON error handlers.)
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            response = error_response(413, "payload_too_large", self._message())
            await response(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI re-raises HTTPException from body parsing; the JSON handler answers.
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, receive_within_limit, send)

    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # h11 refuses such requests before they get here
    return None
