"""Manager logins for the dashboard: a users file of scrypt hashes and a signed session cookie.

The users file (``settings.dashboard_users_file``, JSON, mode 0600) keeps a name
and a password hash per manager, never the password::

    {"version": 1, "users": [{"name": "office", "scrypt": "16384$8$1$<salt>$<hash>",
                              "created": "2026-11-21T08:00:00+08:00",
                              "role": "manager"}]}

Roles (:class:`UserRole`): an administrator manages devices and everything else, a
manager vendors, stalls, products and batches, a viewer reads. A file from before
roles holds managers.

Unlike API tokens (:mod:`api.security`), passwords are chosen by people and may
be guessable, so they are stretched with scrypt and failed logins are throttled
per client address and per account. A login sets Flask's signed session cookie
(HttpOnly, SameSite=Lax, so other sites cannot ride it into a callback POST).

The cookie also carries a fingerprint of the user's record (a keyed hash of the
password hash, whose salt is new with every password). Each request compares it
with the users file as it is now, so removing a user or setting a new password
ends that user's sessions at once, on every replica that reads the file: nothing
about sessions is kept in one process's memory.

Without a users file the dashboard has no login; :func:`check_exposure` refuses
that unless the server listens on loopback only. The public trace page is served
by the API, outside the dashboard, and needs no login.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from html import escape
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit

from flask import Flask, Response, g, redirect, request, session
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.wrappers import Response as BaseResponse

from dashboard.i18n import DEFAULT_LANG, Lang, t
from marketdb.accounts import find_user
from schemas.messages import Identifier
from storage.privatefiles import PrivateFileError, read_private, write_private
from webpage.headers import page_headers, static_page_policy

#: scrypt cost: 16 MiB and ~50 ms per attempt here; OWASP's minimum is N=2**17 with r=8
#: for interactive logins on servers, but a phone's login must not wait seconds.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SALT_BYTES = 16
_KEY_BYTES = 32
MIN_PASSWORD_CHARS = 10
MAX_FAILURES = 5
#: Failed logins per account (from any address) in the window before it is throttled too:
#: higher than per address, so one guesser cannot lock a manager out as easily.
MAX_ACCOUNT_FAILURES = 10
FAILURE_WINDOW_S = 300.0
SESSION_LIFETIME = timedelta(hours=12)
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"


class UserRole(StrEnum):
    """What a dashboard user may change (the API's token roles of the same names)."""

    #: manages devices and their broker users, and everything a manager does
    ADMINISTRATOR = "administrator"
    #: manages vendors, stalls, products and batches
    MANAGER = "manager"
    #: reads every page, changes nothing
    VIEWER = "viewer"

    def may(self, needed: UserRole) -> bool:
        order = (UserRole.VIEWER, UserRole.MANAGER, UserRole.ADMINISTRATOR)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is using the dashboard now: their name (for the audit log) and role."""

    name: str
    role: UserRole


#: Without a users file the dashboard listens on loopback only (check_exposure): whoever
#: reaches it is at the machine, as an administrator would be.
LOCAL_ACTOR = Actor("local", UserRole.ADMINISTRATOR)


def current_actor() -> Actor:
    """The logged-in user of this request (set by the login check), or :data:`LOCAL_ACTOR`."""
    actor = g.get("actor")
    return actor if isinstance(actor, Actor) else LOCAL_ACTOR


class UsersFileError(RuntimeError):
    """The users file cannot be read or is invalid; nobody can log in until it is fixed."""


class DashboardExposed(RuntimeError):
    """The dashboard would be reachable from the network without a login."""


# -- the file -----------------------------------------------------------------------


class UserRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Identifier
    scrypt: str = Field(pattern=r"^[0-9]+\$[0-9]+\$[0-9]+\$[0-9a-f]+\$[0-9a-f]+$")
    created: AwareDatetime
    #: Files from before roles hold managers.
    role: UserRole = UserRole.MANAGER


class UsersFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    users: tuple[UserRecord, ...] = ()

    def find(self, name: str) -> UserRecord | None:
        return next((user for user in self.users if user.name == name), None)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"{_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${key.hex()}"


def verify_password(password: str, encoded: str) -> bool:
    n, r, p, salt, key = encoded.split("$")
    candidate = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    return hmac.compare_digest(candidate, bytes.fromhex(key))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=2**26, dklen=_KEY_BYTES
    )


def read_users_file(path: Path) -> UsersFile:
    try:
        return read_private(path, UsersFile, "users file") or UsersFile()
    except PrivateFileError as exc:
        raise UsersFileError(str(exc)) from exc


def new_password(given: str | None) -> str:
    """``given`` if it is long enough (else ValueError), or a generated password."""
    if given is None:
        return secrets.token_urlsafe(12)
    if len(given) < MIN_PASSWORD_CHARS:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    return given


def add_user(
    path: Path, name: str, password: str | None = None, role: UserRole = UserRole.MANAGER
) -> str:
    """Add (or replace) ``name`` with ``password``, or a generated one; returns the password."""
    password = new_password(password)
    current = read_users_file(path)
    record = UserRecord(
        name=name, scrypt=hash_password(password), created=datetime.now(UTC), role=role
    )
    kept = tuple(user for user in current.users if user.name != name)
    _write_atomically(path, UsersFile(users=(*kept, record)))
    return password


def remove_user(path: Path, name: str) -> bool:
    current = read_users_file(path)
    kept = tuple(user for user in current.users if user.name != name)
    if len(kept) == len(current.users):
        return False
    _write_atomically(path, UsersFile(users=kept))
    return True


def _write_atomically(path: Path, content: UsersFile) -> None:
    text = json.dumps(content.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n"
    write_private(path, text)


# -- who may log in ------------------------------------------------------------------


class Logins(Protocol):
    """Who may log in to the dashboard: :class:`Users` (a file) or :class:`DatabaseUsers`."""

    def check(self, name: str, password: str) -> bool: ...

    def role(self, name: str) -> UserRole | None: ...

    def fingerprint(self, name: str, key: bytes) -> str | None: ...


class _Directory:
    """The checks every kind of login directory makes over its ``find``."""

    def find(self, name: str) -> UserRecord | None:
        raise NotImplementedError

    def check(self, name: str, password: str) -> bool:
        user = self.find(name)
        if user is None:
            # Spend the same time as for a real user, so timing does not tell names apart.
            verify_password(password, _DUMMY_HASH)
            return False
        return verify_password(password, user.scrypt)

    def role(self, name: str) -> UserRole | None:
        user = self.find(name)
        return None if user is None else user.role

    def fingerprint(self, name: str, key: bytes) -> str | None:
        """A keyed digest of ``name``'s current password hash; None once the user is gone."""
        user = self.find(name)
        if user is None:
            return None
        return hmac.new(key, user.scrypt.encode("ascii"), hashlib.sha256).hexdigest()


class Users(_Directory):
    """The users file, re-read when it changes (adding a user needs no restart)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._file = UsersFile()

    def find(self, name: str) -> UserRecord | None:
        return self._current().find(name)

    def _current(self) -> UsersFile:
        try:
            stat = self._path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._file = read_users_file(self._path)
                self._stamp = stamp
            return self._file


class DatabaseUsers(_Directory):
    """The market database's logins (``marketdb.accounts``), read per request: a user
    removed or a password changed there ends their sessions on every replica at once."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def find(self, name: str) -> UserRecord | None:
        with self._sessions() as session:
            stored = find_user(session, name)
        if stored is None:
            return None
        return UserRecord(
            name=stored.name,
            scrypt=stored.scrypt,
            created=stored.created,
            role=UserRole(stored.role),
        )


_DUMMY_HASH = hash_password(secrets.token_urlsafe(12))


class Throttle:
    """At most ``limit`` failed logins per key (an address, an account) in ``FAILURE_WINDOW_S``."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, limit: int = MAX_FAILURES
    ) -> None:
        self._clock = clock
        self._limit = limit
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, key: str) -> bool:
        with self._lock:
            return len(self._recent(key)) >= self._limit

    def failed(self, key: str) -> None:
        with self._lock:
            if len(self._failures) >= _MAX_THROTTLE_KEYS:
                self._forget_quiet_keys()
            self._failures.setdefault(key, deque()).append(self._clock())

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _recent(self, key: str) -> deque[float]:
        recent = self._failures.get(key)
        if recent is None:
            return deque()
        horizon = self._clock() - FAILURE_WINDOW_S
        while recent and recent[0] < horizon:
            recent.popleft()
        return recent

    def _forget_quiet_keys(self) -> None:
        # Keys are chosen by clients (addresses, typed names): drop those with no failure
        # left in the window, so guessing new names cannot grow this without bound.
        for key in [key for key in self._failures if not self._recent(key)]:
            del self._failures[key]


#: Throttle keys kept before the quiet ones are forgotten.
_MAX_THROTTLE_KEYS = 10_000


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


def check_exposure(host: str, logins: Path | Logins | None) -> None:
    """Refuse to serve the dashboard without a login on a non-loopback address.

    ``logins``: the users file, or the market database's logins, or None.
    """
    if logins is None and not is_loopback(host):
        raise DashboardExposed(
            f"the dashboard would listen on {host} without a login: set "
            "STALLWATCH_DASHBOARD_USERS_FILE, or run on the market database, and add a user "
            "with `stallwatch dashboard-user add`"
        )


# -- the Flask side --------------------------------------------------------------------


def install_login(
    server: Flask,
    *,
    users: Logins,
    secret: bytes,
    secure_cookies: bool,
    public_paths: tuple[str, ...] = (),
) -> None:
    """Require a logged-in session for every dashboard request but the login page itself."""
    server.secret_key = secret
    server.config.update(
        SESSION_COOKIE_NAME="stallwatch_dashboard",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure_cookies,
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )
    by_address = Throttle()
    by_account = Throttle(limit=MAX_ACCOUNT_FAILURES)
    open_paths = {LOGIN_PATH, *public_paths}

    def logged_in() -> bool:
        name = session.get("user")
        if not isinstance(name, str):
            return False
        # The record may have changed since the login (another replica, the CLI): a session
        # outlives neither the user nor the password it was opened with.
        current = users.fingerprint(name, secret)
        role = users.role(name)
        if (
            current is not None
            and role is not None
            and hmac.compare_digest(current, str(session.get("cred", "")))
        ):
            g.actor = Actor(name, role)  # a new role holds from the next request on
            return True
        session.clear()
        return False

    @server.before_request
    def _require_login() -> BaseResponse | None:
        if request.path in open_paths or logged_in():
            return None
        if request.method != "GET" or "_dash-" in request.path:
            # Callbacks and layout fetches: the page reloads into the login form.
            return Response('{"error": "login required"}', 401, mimetype="application/json")
        target = request.script_root + LOGIN_PATH + "?next=" + _quote(request.full_path)
        return redirect(target, code=303)

    @server.route(LOGIN_PATH, methods=["GET", "POST"])
    def _login() -> BaseResponse:
        lang = Lang.of(request.args.get("lang") or request.form.get("lang") or DEFAULT_LANG)
        if request.method == "GET":
            return _login_page(lang, failed=False)
        # remote_addr is the peer, or what a configured trusted proxy says it forwarded for.
        client = request.remote_addr or "?"
        name = request.form.get("username", "")
        if by_address.blocked(client) or by_account.blocked(name):
            return Response(
                t("login.failed", lang), 429, {"Retry-After": str(int(FAILURE_WINDOW_S))}
            )
        password = request.form.get("password", "")
        fingerprint = users.fingerprint(name, secret) if users.check(name, password) else None
        if fingerprint is None:
            by_address.failed(client)
            by_account.failed(name)
            return _login_page(lang, failed=True, status=401)
        by_address.succeeded(client)
        by_account.succeeded(name)
        session.clear()
        session["user"] = name
        session["cred"] = fingerprint
        session.permanent = True
        return redirect(_safe_next(request.args.get("next"), request.script_root), code=303)

    @server.route(LOGOUT_PATH, methods=["POST", "GET"])
    def _logout() -> BaseResponse:
        session.clear()
        return redirect(request.script_root + LOGIN_PATH, code=303)


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path.rstrip("?"), safe="/")


def _safe_next(target: str | None, script_root: str) -> str:
    """Only a path on this dashboard: never another site (no open redirect)."""
    home = script_root + "/"
    if not target:
        return home
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return home
    return script_root + target


def _login_page(lang: Lang, *, failed: bool, status: int = 200) -> Response:
    error = (
        f'<div class="alert alert-danger">{escape(t("login.failed", lang))}</div>' if failed else ""
    )
    html = f"""<!doctype html>
<html lang="{lang.value}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(t("login.title", lang))} · stallwatch</title>
<style>
body{{font-family:system-ui,"PingFang SC","Noto Sans CJK SC",sans-serif;
background:#f4f6f8;margin:0}}
form{{max-width:340px;margin:12vh auto;background:#fff;padding:28px;border-radius:10px;
box-shadow:0 2px 12px rgba(0,0,0,.08)}}
h1{{font-size:20px;margin:0 0 18px}} label{{display:block;margin:12px 0 4px;font-size:14px}}
input{{width:100%;box-sizing:border-box;padding:10px;font-size:16px;border:1px solid #ccd;
border-radius:6px}} button{{margin-top:18px;width:100%;padding:11px;font-size:16px;border:0;
border-radius:6px;background:#0d6efd;color:#fff}}
.alert{{background:#f8d7da;color:#842029;padding:8px 10px;border-radius:6px;font-size:14px}}
</style></head><body>
<form method="post" id="login-form">
<h1>{escape(t("login.title", lang))}</h1>{error}
<input type="hidden" name="lang" value="{lang.value}">
<label for="username">{escape(t("login.user", lang))}</label>
<input id="username" name="username" autocomplete="username" required autofocus>
<label for="password">{escape(t("login.password", lang))}</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit" id="login-submit">{escape(t("login.submit", lang))}</button>
</form></body></html>"""
    return Response(
        html, status, headers=page_headers(static_page_policy(html)), mimetype="text/html"
    )
