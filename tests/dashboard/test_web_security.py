"""Logins, sessions, proxies, page headers and refused callback bodies, over real HTTP.

The web app as ``stallwatch serve`` builds it, under uvicorn (:class:`ServerThread`), with
a users file; the live view is built but not started (nothing here reads prices).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.server import ServerThread
from dashboard import auth
from marketview.live_mqtt import LiveView
from schemas.registry import Registry
from stallwatch.options import live_mqtt_options
from stallwatch.settings import Settings
from stallwatch.webapp import DASHBOARD_PATH, create_web_app
from storage.sqlite import SQLiteStore
from tests.conftest import EXAMPLE_MARKET, assert_page_security_headers

LOGIN = DASHBOARD_PATH + auth.LOGIN_PATH
CALLBACK = DASHBOARD_PATH + "/_dash-update-component"


@dataclass(frozen=True)
class Web:
    url: str
    users: Path
    password: str
    #: Every client made, closed when the server stops.
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, **headers: str) -> httpx.Client:
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self.clients.append(client)
        return client

    def login(self, name: str, password: str, **headers: str) -> httpx.Client:
        client = self.client(**headers)
        response = client.post(LOGIN, data={"username": name, "password": password})
        assert response.status_code == 303, response.text
        return client


ServeWeb = Callable[..., Any]


@pytest.fixture
def serve_web(tmp_path: Path, registry: Registry) -> Iterator[ServeWeb]:
    """Starts the web app; ``trusted_proxies`` as ``stallwatch serve`` passes them to uvicorn."""
    users = tmp_path / "users.json"
    password = auth.add_user(users, "office")
    settings = Settings(
        markets=(EXAMPLE_MARKET,),
        sqlite_path=tmp_path / "store.db",
        spool_dir=tmp_path / "spool",
        dashboard_users_file=users,
        dashboard_session_secret="s" * 32,
    )
    store = SQLiteStore(settings.sqlite_path)
    live = LiveView(registry, store, live_mqtt_options(settings))

    @contextmanager
    def serve(trusted_proxies: tuple[str, ...] = ()) -> Iterator[Web]:
        app = create_web_app(settings=settings, registry=registry, store=store, live=live)
        with ServerThread(app, trusted_proxies=trusted_proxies) as server:
            running = Web(server.url, users, password)
            try:
                yield running
            finally:
                for client in running.clients:
                    client.close()

    yield serve
    store.close()


@pytest.fixture
def web(serve_web: ServeWeb) -> Iterator[Web]:
    with serve_web() as running:
        yield running


# -- sessions ------------------------------------------------------------------------


def _dashboard_status(client: httpx.Client) -> int:
    return client.get(DASHBOARD_PATH + "/").status_code


def test_removing_a_user_ends_their_open_session_on_every_replica(serve_web: ServeWeb) -> None:
    # Two replicas over one users file, as behind a load balancer; the cookie works on both.
    with serve_web() as first, serve_web() as second:
        auth.add_user(first.users, "leaver", "leaver-password-1")
        session = first.login("leaver", "leaver-password-1")
        other = second.client()
        other.cookies = session.cookies
        assert _dashboard_status(session) == 200
        assert _dashboard_status(other) == 200
        stays = first.login("office", first.password)

        assert auth.remove_user(first.users, "leaver")  # what `dashboard-user remove` does

        assert _dashboard_status(session) == 303
        assert _dashboard_status(other) == 303
        assert session.post(CALLBACK, json={}).status_code == 401
        assert _dashboard_status(stays) == 200  # other users keep their sessions


def test_a_new_password_ends_the_sessions_opened_with_the_old_one(web: Web) -> None:
    session = web.login("office", web.password)
    assert _dashboard_status(session) == 200
    auth.add_user(web.users, "office", "a-brand-new-password")
    assert _dashboard_status(session) == 303
    assert _dashboard_status(web.login("office", "a-brand-new-password")) == 200


def test_a_user_added_again_does_not_revive_old_sessions(web: Web) -> None:
    session = web.login("office", web.password)
    auth.remove_user(web.users, "office")
    auth.add_user(web.users, "office", web.password)  # the same password, a new salt
    assert _dashboard_status(session) == 303


# -- the login throttle and forwarded headers ------------------------------------------


def _guess(client: httpx.Client, name: str = "office", **headers: str) -> int:
    response = client.post(
        LOGIN, data={"username": name, "password": "wrong-guess-1234"}, headers=headers
    )
    return response.status_code


def test_a_new_x_forwarded_for_per_try_does_not_escape_the_throttle(web: Web) -> None:
    client = web.client()
    statuses = [
        _guess(client, **{"X-Forwarded-For": f"203.0.113.{n}"})
        for n in range(auth.MAX_FAILURES + 7)
    ]
    assert statuses == [401] * auth.MAX_FAILURES + [429] * 7


def test_a_trusted_proxy_is_believed_and_the_account_is_throttled_too(
    serve_web: ServeWeb,
) -> None:
    with serve_web(trusted_proxies=("127.0.0.1",)) as web:
        client = web.client()
        # Through the proxy, each shopper's address is its own: one guesser does not block others.
        guesser = {"X-Forwarded-For": "203.0.113.7"}
        assert [_guess(client, "nobody", **guesser) for _ in range(auth.MAX_FAILURES)] == [
            401
        ] * auth.MAX_FAILURES
        assert _guess(client, "nobody", **guesser) == 429
        assert _guess(client, "nobody", **{"X-Forwarded-For": "203.0.113.8"}) == 401
        # Guesses at one account from ever new addresses: the account is throttled.
        statuses = [
            _guess(client, **{"X-Forwarded-For": f"198.51.100.{n}"})
            for n in range(auth.MAX_ACCOUNT_FAILURES + 2)
        ]
        assert statuses == [401] * auth.MAX_ACCOUNT_FAILURES + [429] * 2


# -- page headers --------------------------------------------------------------------


def test_login_dashboard_and_trace_pages_send_security_headers(web: Web) -> None:
    anonymous = web.client()
    login = anonymous.get(LOGIN)
    assert login.status_code == 200
    assert_page_security_headers(login)
    assert "default-src 'none'" in login.headers["Content-Security-Policy"]
    trace = anonymous.get("/trace/nanmen/NO-SUCH-BATCH-01")
    assert trace.status_code == 404
    assert_page_security_headers(trace)
    session = web.login("office", web.password)
    dashboard = session.get(DASHBOARD_PATH + "/")
    assert dashboard.status_code == 200
    assert_page_security_headers(dashboard)
    policy = dashboard.headers["Content-Security-Policy"]
    script_src = next(d for d in policy.split("; ") if d.startswith("script-src "))
    assert "'unsafe-inline'" not in script_src
    assert "'unsafe-eval'" not in script_src


# -- callback bodies -----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"[1, 2]", id="an-array"),
        pytest.param(b"{}", id="empty-object"),
        pytest.param(b'{"output": "x", "outputs": [], "inputs": "y"}', id="inputs-not-a-list"),
        pytest.param(
            b'{"output": "no-such.children", "outputs": {"id": "no-such", "property": "children"},'
            b' "inputs": [], "changedPropIds": []}',
            id="unknown-callback",
        ),
        pytest.param(
            b'{"output": "..overview-kpis.children...overview-alerts.children...'
            b'overview-shown.data..", "outputs": [], "inputs": [], "changedPropIds": []}',
            id="too-few-inputs",
        ),
        pytest.param("\u00ff".encode("latin-1"), id="not-utf8"),
    ],
)
def test_a_malformed_callback_body_gets_a_json_4xx(web: Web, body: bytes) -> None:
    session = web.login("office", web.password)
    response = session.post(CALLBACK, content=body, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json()["error"], str)
