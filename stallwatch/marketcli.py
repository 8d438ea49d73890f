"""``stallwatch market``: market files into and out of the market database.

``import FILE`` validates the whole file first (a bad file names its key and
changes nothing), ``export MARKET`` writes the stored market as a market file; the
two round-trip exactly (``marketdb.marketfile``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

# The market database (SQLAlchemy, Alembic) loads only for these commands.


def add_market(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser("market", help="import or export market files (the market database)")
    cmd.add_argument(
        "--database", help="SQLAlchemy URL (default: STALLWATCH_MARKET_DATABASE's setting)"
    )
    actions = cmd.add_subparsers(dest="action", required=True)
    imported = actions.add_parser("import", help="add a market from its market file")
    imported.add_argument("file", type=Path)
    choice = imported.add_mutually_exclusive_group()
    choice.add_argument(
        "--replace", action="store_true", help="replace the stored market of the same id"
    )
    choice.add_argument(
        "--if-absent",
        action="store_true",
        help="seed only: leave a stored market of the same id as managers edited it",
    )
    imported.set_defaults(handler=_run_import)
    exported = actions.add_parser("export", help="write a stored market as a market file")
    exported.add_argument("market")
    exported.add_argument("--out", type=Path, help="file to write (default: standard output)")
    exported.set_defaults(handler=_run_export)


def _sessions(args: argparse.Namespace) -> sessionmaker[Session]:
    from marketdb.database import open_database, session_factory
    from stallwatch.cli import settings_from  # the composition root reads the settings

    return session_factory(open_database(args.database or settings_from(args).market_database))


def _run_import(args: argparse.Namespace) -> int:
    from marketdb._exceptions import MarketDatabaseError
    from marketdb.marketfile import import_market
    from marketdb.models import MarketRow
    from schemas.registry import load_market

    market = load_market(args.file)  # RegistryError: main() reports it, nothing written
    spec = market.spec
    try:
        with _sessions(args)() as session, session.begin():
            if args.if_absent and session.get(MarketRow, market.id) is not None:
                print(f"market {market.id} is in the database already: left as it is")
                return 0
            import_market(session, spec, replace=args.replace)
    except MarketDatabaseError as exc:
        print(f"stallwatch market import: {exc}", file=sys.stderr)
        return 2
    print(
        f"imported market {market.id}: {len(spec.products)} products, "
        f"{len(spec.vendors)} vendors, {len(market.devices)} devices"
    )
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from marketdb._exceptions import MarketDatabaseError
    from marketdb.marketfile import dumps, export_market

    try:
        with _sessions(args)() as session:
            text = dumps(export_market(session, args.market))
    except MarketDatabaseError as exc:
        print(f"stallwatch market export: {exc}", file=sys.stderr)
        return 2
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
    return 0
