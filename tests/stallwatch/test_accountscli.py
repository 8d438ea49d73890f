"""API tokens and dashboard logins in the market database: made and revoked from the
command line, imported from the files as they are, and checked by the web app's API and
dashboard, a revocation at once (SQLite here; the tables' migrations are checked on
PostgreSQL with the rest in tests/marketdb)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.security import DatabaseTokens, Role, create_token
from dashboard.auth import DatabaseUsers, UserRole, add_user
from marketdb.audit import audit_entries
from marketdb.database import open_database, session_factory
from stallwatch.cli import main


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> sessionmaker[Session]:
    url = f"sqlite:///{tmp_path / 'market.db'}"
    monkeypatch.setenv("STALLWATCH_MARKET_DATABASE", url)
    for name in ("STALLWATCH_API_TOKENS_FILE", "STALLWATCH_DASHBOARD_USERS_FILE"):
        monkeypatch.delenv(name, raising=False)
    return session_factory(open_database(url))


def test_a_token_made_on_the_command_line_is_checked_and_revoked_at_once(
    database: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["api-token", "create", "--role", "viewer", "--name", "office"]) == 0
    token = capsys.readouterr().out.strip()
    tokens = DatabaseTokens(database)

    principal = tokens.authenticate(token)

    assert principal is not None
    assert (principal.name, principal.role) == ("office", Role.VIEWER)
    assert tokens.authenticate(token + "x") is None
    assert main(["api-token", "list"]) == 0
    assert "office\tviewer\tall markets" in capsys.readouterr().out
    assert main(["api-token", "revoke", "office"]) == 0
    assert tokens.authenticate(token) is None
    with database() as session:
        logged = [(e.entity, e.action, e.entity_id) for e in audit_entries(session)]
    assert logged == [("token", "remove", "office"), ("token", "create", "office")]


def test_a_login_made_on_the_command_line_opens_the_dashboard_with_its_role(
    database: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dashboard-user", "add", "chief", "--role", "administrator"]) == 0
    password = capsys.readouterr().out.strip()
    logins = DatabaseUsers(database)

    assert logins.check("chief", password)
    assert not logins.check("chief", password + "x")
    assert logins.role("chief") is UserRole.ADMINISTRATOR
    assert main(["dashboard-user", "remove", "chief"]) == 0
    assert logins.fingerprint("chief", b"key") is None, "its sessions end at the next request"


def test_the_files_records_are_imported_as_they_are(
    database: sessionmaker[Session], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens_file, users_file = tmp_path / "tokens.json", tmp_path / "users.json"
    token, _ = create_token(tokens_file, Role.SCREEN, name="stall-a01", market="nanmen")
    password = add_user(users_file, "office", role=UserRole.VIEWER)

    command = ["accounts", "import", "--tokens-file", str(tokens_file)]
    assert main([*command, "--users-file", str(users_file)]) == 0

    assert "imported 1 API tokens and 1 dashboard users" in capsys.readouterr().out
    principal = DatabaseTokens(database).authenticate(token)
    assert principal is not None
    assert (principal.role, principal.market) == (Role.SCREEN, "nanmen")
    assert DatabaseUsers(database).check("office", password)
    assert DatabaseUsers(database).role("office") is UserRole.VIEWER
    assert main(command) == 2, "a second import of the same token is refused whole"
