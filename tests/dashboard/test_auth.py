"""Dashboard logins: the users file, password hashing, throttling and the login flow."""

import json
import stat
from pathlib import Path

import pytest
from flask import Flask

from dashboard import auth


def test_users_file_keeps_only_a_scrypt_hash(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    password = auth.add_user(path, "office")
    raw = path.read_text()
    assert password not in raw
    record = json.loads(raw)["users"][0]
    assert record["name"] == "office"
    assert record["scrypt"].startswith("16384$8$1$")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert auth.Users(path).check("office", password)
    assert not auth.Users(path).check("office", password + "x")
    assert not auth.Users(path).check("nobody", password)


def test_a_chosen_password_must_not_be_short(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least"):
        auth.add_user(tmp_path / "users.json", "office", "short")


def test_users_are_re_read_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    users = auth.Users(path)
    assert not users.check("late", "a-long-password")
    auth.add_user(path, "late", "a-long-password")
    assert users.check("late", "a-long-password")
    assert auth.remove_user(path, "late")
    assert not users.check("late", "a-long-password")
    assert not auth.remove_user(path, "late")


def test_an_invalid_users_file_is_an_error_not_an_open_door(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text('{"version": 1, "users": [{"name": "x", "scrypt": "plain"}]}')
    with pytest.raises(auth.UsersFileError):
        auth.Users(path).check("x", "plain")


def test_throttle_blocks_after_repeated_failures_then_forgets() -> None:
    now = [0.0]
    throttle = auth.Throttle(clock=lambda: now[0])
    for _ in range(auth.MAX_FAILURES):
        assert not throttle.blocked("10.0.0.9")
        throttle.failed("10.0.0.9")
    assert throttle.blocked("10.0.0.9")
    assert not throttle.blocked("10.0.0.10")
    now[0] += auth.FAILURE_WINDOW_S + 1
    assert not throttle.blocked("10.0.0.9")


@pytest.mark.parametrize(
    ("host", "exposed"),
    [
        ("127.0.0.1", False),
        ("::1", False),
        ("localhost", False),
        ("0.0.0.0", True),  # noqa: S104 - the exposure under test
        ("example.org", True),
    ],
)
def test_no_login_is_refused_off_loopback(host: str, exposed: bool, tmp_path: Path) -> None:
    if exposed:
        with pytest.raises(auth.DashboardExposed):
            auth.check_exposure(host, None)
    else:
        auth.check_exposure(host, None)
    auth.check_exposure(host, tmp_path / "users.json")  # with a login, any host is fine


@pytest.fixture
def app(tmp_path: Path) -> tuple[Flask, str]:
    server = Flask("test")
    path = tmp_path / "users.json"
    password = auth.add_user(path, "office")
    auth.install_login(server, users=auth.Users(path), secret=b"k" * 32, secure_cookies=False)

    @server.route("/private")
    def private() -> str:
        return "secret figures"

    return server, password


def test_pages_redirect_to_the_login_and_back(app: tuple[Flask, str]) -> None:
    server, password = app
    client = server.test_client()
    response = client.get("/private")
    assert response.status_code == 303
    assert response.headers["Location"] == "/login?next=/private"
    response = client.post(
        "/login?next=/private", data={"username": "office", "password": password}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/private"
    assert client.get("/private").get_data(as_text=True) == "secret figures"
    client.get("/logout")
    assert client.get("/private").status_code == 303


def test_callbacks_without_a_login_get_401_json(app: tuple[Flask, str]) -> None:
    server, _ = app
    response = server.test_client().post("/_dash-update-component", json={})
    assert response.status_code == 401
    assert response.get_json() == {"error": "login required"}


def test_a_wrong_password_is_refused_and_repeated_tries_throttled(app: tuple[Flask, str]) -> None:
    server, _ = app
    client = server.test_client()
    for _ in range(auth.MAX_FAILURES):
        response = client.post("/login", data={"username": "office", "password": "guess-1234"})
        assert response.status_code == 401
        assert "用户名或密码错误" in response.get_data(as_text=True)
    response = client.post("/login", data={"username": "office", "password": "guess-1234"})
    assert response.status_code == 429


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "javascript:alert(1)", ""]
)
def test_login_never_redirects_off_the_dashboard(app: tuple[Flask, str], target: str) -> None:
    server, password = app
    response = server.test_client().post(
        "/login", query_string={"next": target}, data={"username": "office", "password": password}
    )
    assert response.headers["Location"] == "/"


def test_the_session_cookie_is_httponly_and_samesite(app: tuple[Flask, str]) -> None:
    server, password = app
    response = server.test_client().post(
        "/login", data={"username": "office", "password": password}
    )
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
