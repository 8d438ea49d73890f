"""API tokens and dashboard logins kept in the market database, from the command line.

``stallwatch api-token`` and ``stallwatch dashboard-user`` keep using their files
when one is named (``--tokens-file``, ``--users-file`` or the settings); without
one they act on the market database, which the web app then reads
(``STALLWATCH_MARKET_DATABASE``). ``stallwatch accounts import`` copies the
files' records there as they are: hashes only, so nobody needs a new password
or token.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from marketdb._exceptions import MarketDatabaseError
from stallwatch.settings import Settings

if TYPE_CHECKING:  # every command imports this module: no SQLAlchemy until one runs
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("stallwatch")

#: Who the audit log names for changes made here.
ACTOR = "command line"


def _sessions(settings: Settings) -> sessionmaker[Session]:
    from marketdb.database import open_database, session_factory

    return session_factory(open_database(settings.market_database))


def api_token(args: argparse.Namespace, settings: Settings) -> int:
    from api import security
    from marketdb import accounts

    try:
        with _sessions(settings)() as session, session.begin():
            if args.action == "create":
                role = security.Role(args.role)
                token, record = security.issue_token(
                    role, name=args.name, market=args.market, vendor=args.vendor
                )
                stored = accounts.StoredToken(
                    record.name,
                    record.sha256,
                    role.value,
                    record.market,
                    record.vendor,
                    record.created,
                )
                accounts.add_token(session, stored, actor=ACTOR)
                print(token)  # alone on stdout, so scripts can capture it
                print(
                    f"stored the hash of {record.name!r} ({role.value}) in the market database;"
                    " the token is not shown again",
                    file=sys.stderr,
                )
                return 0
            if args.action == "list":
                for t in accounts.list_tokens(session):
                    scope = "/".join(filter(None, (t.market, t.vendor))) or "all markets"
                    print(f"{t.name}\t{t.role}\t{scope}\t{t.created.isoformat()}")
                return 0
            if accounts.revoke_token(session, args.name, actor=ACTOR):
                print(f"revoked {args.name!r}", file=sys.stderr)
                return 0
            log.error("no token named %r in the market database", args.name)
            return 1
    except (security.TokensFileError, MarketDatabaseError) as exc:
        log.error("%s", exc)
        return 2


def dashboard_user(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from dashboard import auth
    from marketdb import accounts

    try:
        with _sessions(settings)() as session, session.begin():
            if args.action == "add":
                given = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
                password = auth.new_password(given)
                stored = accounts.StoredUser(
                    args.name, auth.hash_password(password), args.role, datetime.now(UTC)
                )
                accounts.put_user(session, stored, actor=ACTOR)
                if given is None:
                    print(password)
                print(f"stored the scrypt hash of {args.name!r}'s password", file=sys.stderr)
                return 0
            if args.action == "list":
                for user in accounts.list_users(session):
                    print(f"{user.name}\t{user.role}\t{user.created.isoformat()}")
                return 0
            if accounts.remove_user(session, args.name, actor=ACTOR):
                print(f"removed {args.name!r}", file=sys.stderr)
                return 0
            log.error("no user named %r in the market database", args.name)
            return 1
    except (ValueError, MarketDatabaseError) as exc:
        log.error("%s", exc)
        return 2


def add_accounts(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser("accounts", help="API tokens and dashboard logins in the market database")
    actions = cmd.add_subparsers(dest="action", required=True)
    imported = actions.add_parser(
        "import", help="copy a tokens file's and a users file's records (hashes) into it"
    )
    imported.add_argument("--tokens-file", type=Path)
    imported.add_argument("--users-file", type=Path)
    imported.set_defaults(handler=_run_import)


def _run_import(args: argparse.Namespace) -> int:
    from api.security import TokensFileError, read_tokens_file
    from dashboard.auth import UsersFileError, read_users_file
    from marketdb import accounts
    from stallwatch.cli import settings_from

    if args.tokens_file is None and args.users_file is None:
        log.error("name a file to import: --tokens-file, --users-file or both")
        return 2
    settings = settings_from(args)
    try:
        tokens = read_tokens_file(args.tokens_file).tokens if args.tokens_file else ()
        users = read_users_file(args.users_file).users if args.users_file else ()
        with _sessions(settings)() as session, session.begin():
            for t in tokens:
                stored = accounts.StoredToken(
                    t.name, t.sha256, t.role.value, t.market, t.vendor, t.created
                )
                accounts.add_token(session, stored, actor=ACTOR)
            for u in users:
                user = accounts.StoredUser(u.name, u.scrypt, u.role.value, u.created)
                accounts.put_user(session, user, actor=ACTOR)
    except (TokensFileError, UsersFileError, MarketDatabaseError) as exc:
        log.error("%s; nothing was imported", exc)
        return 2
    print(f"imported {len(tokens)} API tokens and {len(users)} dashboard users")
    return 0
