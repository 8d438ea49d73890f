"""Bearer tokens: hashed at rest, 401 vs 403, roles and scopes, and never open by default."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.security import (
    Role,
    TokensFileError,
    TokenStore,
    create_token,
    hash_token,
    read_tokens_file,
    revoke_token,
)
from marketview.live_mqtt import LiveView
from schemas.registry import Registry
from stallwatch import cli
from stallwatch.settings import Settings
from storage.base import Store
from tests.api.conftest import MARKET, Api, Tokens, bearer, serve

DEVICES = f"/api/v1/markets/{MARKET}/devices"
DEAD_LETTERS = "/api/v1/dead-letters"


# -- the tokens file -------------------------------------------------------------------


def test_the_file_keeps_only_hashes_readable_by_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token, record = create_token(path, Role.MANAGER, name="office")

    text = path.read_text()
    assert token not in text
    assert record.sha256 == hash_token(token)
    assert json.loads(text)["tokens"][0]["sha256"] == hash_token(token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 43  # 32 random bytes, base64url


def test_tokens_are_random_and_names_unique(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    first, _ = create_token(path, Role.SCREEN)
    second, _ = create_token(path, Role.SCREEN)
    assert first != second

    create_token(path, Role.MANAGER, name="office")
    with pytest.raises(TokensFileError, match="duplicate token names"):
        create_token(path, Role.MANAGER, name="office")
    assert len(read_tokens_file(path).tokens) == 3


def test_a_vendor_scope_needs_a_market(tmp_path: Path) -> None:
    with pytest.raises(TokensFileError, match="must also name the market"):
        create_token(tmp_path / "tokens.json", Role.SCREEN, vendor="V01")


def test_authenticate_finds_the_principal_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token, _ = create_token(path, Role.SCREEN, name="stall", market="tm", vendor="V01")
    tokens = TokenStore(path)

    principal = tokens.authenticate(token)
    assert principal is not None
    assert (principal.name, principal.role, principal.market, principal.vendor) == (
        "stall",
        Role.SCREEN,
        "tm",
        "V01",
    )
    assert tokens.authenticate(token + "x") is None
    assert tokens.authenticate("") is None
    assert tokens.authenticate("x" * 10_000) is None


def test_a_revoked_token_stops_working_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token, _ = create_token(path, Role.MANAGER, name="office")
    tokens = TokenStore(path)
    assert tokens.authenticate(token) is not None

    assert revoke_token(path, "office")
    assert tokens.authenticate(token) is None
    assert not revoke_token(path, "office")


def test_an_invalid_file_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text('{"version": 1, "tokens": [{"name": "x", "role": "root"}]}')
    with pytest.raises(TokensFileError):
        TokenStore(path).authenticate("anything")


def test_roles_are_what_the_cli_offers() -> None:
    assert set(cli.API_ROLES) == {role.value for role in Role}


def test_cli_prints_the_token_once_and_stores_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.json"
    argv = ["api-token", "create", "--role", "screen", "--name", "a01", "--market", "tm"]
    assert cli.main([*argv, "--tokens-file", str(path)]) == 0
    token = capsys.readouterr().out.strip()

    assert token not in path.read_text()
    principal = TokenStore(path).authenticate(token)
    assert principal is not None
    assert (principal.name, principal.role, principal.market) == ("a01", Role.SCREEN, "tm")

    assert cli.main(["api-token", "list", "--tokens-file", str(path)]) == 0
    listing = capsys.readouterr().out
    assert "a01\tscreen\ttm" in listing
    assert token not in listing

    assert cli.main(["api-token", "revoke", "a01", "--tokens-file", str(path)]) == 0
    assert TokenStore(path).authenticate(token) is None


# -- over HTTP ---------------------------------------------------------------------------


def assert_error(response_json: object, code: str) -> None:
    assert isinstance(response_json, dict)
    assert set(response_json) == {"error"}
    assert response_json["error"]["code"] == code
    assert response_json["error"]["message"]


def test_no_token_is_401_with_a_bearer_challenge(api: Api) -> None:
    response = api.get(DEVICES)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert_error(response.json(), "not_authenticated")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer not-a-token", "Bearer", "Basic b2ZmaWNlOnNlY3JldA==", "token-without-scheme"],
)
def test_a_wrong_token_or_scheme_is_401(api: Api, authorization: str) -> None:
    response = api.client.get(DEVICES, headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(response.json(), "not_authenticated")


def test_an_unknown_token_is_told_it_is_invalid(api: Api) -> None:
    response = api.get(DEVICES, token="x" * 43)
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", DEAD_LETTERS, "screen"),
        ("POST", f"/api/v1/markets/{MARKET}/batches", "screen"),
        ("GET", DEVICES, "monitor"),
        ("GET", "/metrics", "screen"),
    ],
)
def test_a_role_that_does_not_cover_the_route_is_403(
    api: Api, method: str, path: str, role: str
) -> None:
    token = getattr(api.tokens, role)
    response = api.client.request(method, path, headers=bearer(token), json={})
    assert response.status_code == 403
    assert_error(response.json(), "forbidden")


def test_a_manager_may_do_what_a_screen_may(api: Api) -> None:
    assert api.get(DEVICES, api.tokens.screen).status_code == 200
    assert api.get(DEVICES, api.tokens.manager).status_code == 200
    assert api.get("/metrics", api.tokens.manager).status_code == 200


def test_a_token_scoped_to_another_market_is_403(api: Api) -> None:
    response = api.get(DEVICES, api.tokens.other_market_manager)
    assert response.status_code == 403
    assert "elsewhere" in response.json()["error"]["message"]
    assert api.get(DEAD_LETTERS, api.tokens.other_market_manager).status_code == 403


def test_a_stall_screen_sees_only_its_vendors_devices(api: Api) -> None:
    everything = api.get(DEVICES, api.tokens.screen).json()["devices"]
    own = api.get(DEVICES, api.tokens.stall_screen).json()["devices"]
    assert {d["id"] for d in everything} == {"S-A01", "P-A01", "S-B01", "P-B01", "G-N", "IN-1"}
    assert {d["id"] for d in own} == {"S-A01", "P-A01"}


def test_a_token_created_while_serving_works_at_once(api: Api) -> None:
    token, _ = create_token(api.tokens.path, Role.SCREEN, name="new-screen", market=MARKET)
    assert api.get(DEVICES, token).status_code == 200


def test_public_endpoints_need_no_token(api: Api) -> None:
    assert api.get("/healthz").status_code == 200
    assert api.get("/readyz").status_code == 200
    assert api.get("/openapi.json").status_code == 200
    assert api.get("/docs").status_code == 200


def test_the_openapi_document_declares_bearer_auth(api: Api) -> None:
    document = api.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "opaque",
        "description": "An API token from `stallwatch api-token create`.",
    }
    devices = document["paths"]["/api/v1/markets/{market}/devices"]["get"]
    assert devices["security"] == [{"HTTPBearer": []}]
    assert {"401", "403", "404", "422", "503"} <= set(devices["responses"])


# -- not configured: shut, not open ------------------------------------------------------


@pytest.fixture
def unconfigured_api(
    settings: Settings, api_registry: Registry, store: Store, live: LiveView, tokens: Tokens
) -> Iterator[Api]:
    without_tokens = settings.model_copy(update={"api_tokens_file": None})
    yield from serve(without_tokens, api_registry, store, live, tokens)


def test_without_a_tokens_file_protected_endpoints_answer_503(unconfigured_api: Api) -> None:
    for path in (DEVICES, DEAD_LETTERS, "/metrics"):
        response = unconfigured_api.get(path, unconfigured_api.tokens.manager)
        assert response.status_code == 503
        assert_error(response.json(), "auth_not_configured")
        assert "STALLWATCH_API_TOKENS_FILE" in response.json()["error"]["message"]
    assert unconfigured_api.get("/healthz").status_code == 200


def test_an_unreadable_tokens_file_shuts_protected_endpoints(api: Api) -> None:
    api.tokens.path.write_text("{not json")
    response = api.get(DEVICES, api.tokens.manager)
    assert response.status_code == 503
    assert_error(response.json(), "auth_not_configured")
    assert str(api.tokens.path) not in response.text
