"""The ``stallwatch`` command: wiring only; each subcommand's work lives in its package."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from types import FrameType

from marketdb._exceptions import MarketDatabaseError  # the error tree only, no SQLAlchemy
from schemas.registry import Registry, RegistryError
from stallwatch import accountscli
from stallwatch.logs import configure_logging
from stallwatch.marketcli import add_market
from stallwatch.settings import Settings, load_settings

log = logging.getLogger("stallwatch")

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(verbose=args.verbose)
    handler: Handler = args.handler
    try:
        return handler(args)
    except (RegistryError, MarketDatabaseError) as exc:
        log.error("%s", exc)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stallwatch", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--config", type=Path, help="TOML settings file (or STALLWATCH_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_ingest(sub)
    _add_demo(sub)
    _add_simulate(sub)
    _add_schemas(sub)
    _add_broker_auth(sub)
    _add_serve(sub)
    _add_api_token(sub)
    _add_dashboard_user(sub)
    _add_store(sub)
    accountscli.add_accounts(sub)
    add_market(sub)
    return parser


# -- ingest --------------------------------------------------------------------
def _add_ingest(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser("ingest", help="consume MQTT and store readings until stopped")
    cmd.add_argument("--market", action="append", type=Path, help="market file (repeatable)")
    cmd.add_argument("--mqtt-url", help="mqtt://host:port")
    cmd.add_argument("--store", choices=["sqlite", "influx"])
    cmd.set_defaults(handler=_run_ingest)


def settings_from(args: argparse.Namespace, **overrides: object) -> Settings:
    markets = getattr(args, "market", None)
    return load_settings(
        args.config,
        markets=tuple(markets) if markets else None,
        mqtt_url=getattr(args, "mqtt_url", None),
        store=getattr(args, "store", None),
        **overrides,
    )


def load_registry(settings: Settings) -> Registry:
    if not settings.markets:
        raise RegistryError("no market files: pass --market FILE or set STALLWATCH_MARKETS")
    return Registry.load(settings.markets)


def _run_ingest(args: argparse.Namespace) -> int:
    from ingest.service import build_service
    from stallwatch.options import ingest_options, initial_registry

    settings = settings_from(args)
    # Fail here, not in the forwarder, on a bad market file or an empty market database.
    registry = initial_registry(settings)
    stop = _stop_on_signals()
    service = build_service(ingest_options(settings), configure_logging=configure_logging)
    service.start()
    log.info("ingest running for markets %s; Ctrl-C to stop", ", ".join(registry.markets))
    ticks = 0
    while not stop.wait(1):
        service.supervise()
        ticks += 1
        if ticks % 30:
            continue
        status = service.status()
        log.info(
            "received %d, stored %d, rejected %d, spool %d pending",
            status.received,
            status.stored,
            status.rejected,
            status.pending,
        )
    service.stop()
    return 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def _handle(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)
    return stop


# -- demo ----------------------------------------------------------------------
def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from stallwatch import demo

    cmd = sub.add_parser("demo", help="run broker, simulators, ingest and store on this machine")
    demo.add_arguments(cmd)
    cmd.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from stallwatch import demo

    return demo.run(args, load_settings(args.config))


# -- simulate ------------------------------------------------------------------
def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from simulators import cli as simulators_cli

    cmd = simulators_cli.build_parser(sub)
    cmd.set_defaults(handler=_run_simulate)


def _run_simulate(args: argparse.Namespace) -> int:
    """Market files if named; else the market database's markets, followed while playing."""
    from simulators import cli as simulators_cli
    from stallwatch.options import registry_source

    settings = load_settings(args.config)
    if getattr(args, "markets", None) or settings.markets or args.simulate_mode is not None:
        return simulators_cli.run(args, default_markets=settings.markets)
    return simulators_cli.run(args, follow=registry_source(settings))


# -- schemas -------------------------------------------------------------------
def _add_schemas(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser("schemas", help="export or check the JSON Schema / AsyncAPI files")
    cmd.add_argument("action", choices=["export", "check"])
    cmd.set_defaults(handler=_run_schemas)


def _run_schemas(args: argparse.Namespace) -> int:
    from schemas import export

    return export.main(["--check"] if args.action == "check" else [])


# -- broker-auth ---------------------------------------------------------------
def _add_broker_auth(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "broker-auth",
        help="generate Mosquitto users, client ids and access rules from market files "
        "or, without them, the market database",
    )
    cmd.add_argument("--market", action="append", type=Path, help="market file (repeatable)")
    cmd.add_argument("--out", type=Path, required=True)
    cmd.add_argument("--rotate", action="store_true", help="replace existing passwords")
    cmd.set_defaults(handler=_run_broker_auth)


def _run_broker_auth(args: argparse.Namespace) -> int:
    from stallwatch.brokerauth import write_broker_auth
    from stallwatch.options import initial_registry

    settings = settings_from(args)
    files = write_broker_auth(initial_registry(settings), args.out, rotate=args.rotate)
    print(f"wrote {files}")
    return 0


# -- serve ---------------------------------------------------------------------
def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "serve", help="serve the HTTP API and the dashboard (/dashboard/) until stopped"
    )
    cmd.add_argument("--market", action="append", type=Path, help="market file (repeatable)")
    cmd.add_argument("--mqtt-url", help="mqtt://host:port the live price view follows")
    cmd.add_argument("--store", choices=["sqlite", "influx"])
    cmd.add_argument("--host", help="listen address (default 127.0.0.1)")
    cmd.add_argument("--port", type=int, help="listen port (default 8000)")
    cmd.add_argument("--tokens-file", type=Path, help="API tokens file (api-token create)")
    cmd.add_argument("--users-file", type=Path, help="dashboard users file (dashboard-user add)")
    cmd.set_defaults(handler=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    from api.server import run_server
    from marketview.live_mqtt import LiveView
    from stallwatch.options import limits, live_mqtt_options, registry_source
    from stallwatch.stores import open_store
    from stallwatch.webapp import (
        create_web_app,
        freeze_startup_heap,
        open_lock_keeper,
        open_management,
    )

    settings = settings_from(
        args,
        api_host=args.host,
        api_port=args.port,
        api_tokens_file=args.tokens_file,
        dashboard_users_file=args.users_file,
    )
    # Market files, or (without them) the market database, followed while serving.
    registry = registry_source(settings)
    if settings.api_tokens_file is None and settings.markets:
        log.warning(
            "no API tokens file (STALLWATCH_API_TOKENS_FILE): endpoints that need a token "
            "answer 503; create one with `stallwatch api-token create`"
        )
    # uvicorn handles SIGINT/SIGTERM while it serves and re-raises them afterwards; these
    # handlers catch that, so the live view and the store are still closed in order.
    _stop_on_signals()
    with (
        open_store(settings) as store,
        open_management(settings, store) as management,
        open_lock_keeper(settings, management, registry, store) as keeper,
    ):
        mqtt = live_mqtt_options(settings)
        live = LiveView(
            registry,
            store,
            mqtt,
            limits=limits(settings),
            on_reading=None if keeper is None else keeper.observe,
        )
        if keeper is not None:
            keeper.keeper.follow(live.set_suspensions)
        live.start()
        try:
            app = create_web_app(
                settings=settings,
                registry=registry,
                store=store,
                live=live,
                management=management,
                lock_keeper=None if keeper is None else keeper.keeper,
            )
            freeze_startup_heap()
            run_server(
                app,
                host=settings.api_host,
                port=settings.api_port,
                trusted_proxies=settings.trusted_proxies,
            )
        finally:
            live.stop()
    return 0


# -- api-token -----------------------------------------------------------------
#: The values of api.security.Role (not imported here: it would load FastAPI for every command).
API_ROLES = ("administrator", "manager", "viewer", "screen", "monitor")


def _add_api_token(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser("api-token", help="create, list or revoke HTTP API tokens")
    actions = cmd.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create", help="issue a token: printed once, only its hash is stored"
    )
    create.add_argument("--role", required=True, choices=API_ROLES)
    create.add_argument("--name", help="unique name (default: <role>-<random>)")
    create.add_argument("--market", help="limit the token to this market")
    create.add_argument("--vendor", help="limit it further to this vendor's devices")
    listing = actions.add_parser("list", help="names, roles and scopes (never tokens)")
    revoke = actions.add_parser("revoke", help="delete a token by name")
    revoke.add_argument("name")
    for action in (create, listing, revoke):
        action.add_argument(
            "--tokens-file",
            type=Path,
            help="default: api_tokens_file setting; without either, the market database",
        )
    cmd.set_defaults(handler=_run_api_token)


def _run_api_token(args: argparse.Namespace) -> int:
    from api import security

    settings = load_settings(args.config)
    path = args.tokens_file or settings.api_tokens_file
    if path is None:  # no file: the market database keeps them
        return accountscli.api_token(args, settings)
    try:
        if args.action == "create":
            return _create_api_token(args, path)
        if args.action == "list":
            for record in security.read_tokens_file(path).tokens:
                scope = "/".join(filter(None, (record.market, record.vendor))) or "all markets"
                print(f"{record.name}\t{record.role.value}\t{scope}\t{record.created.isoformat()}")
            return 0
        if security.revoke_token(path, args.name):
            print(f"revoked {args.name!r} in {path}", file=sys.stderr)
            return 0
        log.error("no token named %r in %s", args.name, path)
        return 1
    except security.TokensFileError as exc:
        log.error("%s", exc)
        return 2


def _create_api_token(args: argparse.Namespace, path: Path) -> int:
    from api import security

    token, record = security.create_token(
        path, security.Role(args.role), name=args.name, market=args.market, vendor=args.vendor
    )
    # The token alone on stdout, so scripts can capture it; everything else on stderr.
    print(token)
    print(
        f"stored the hash of {record.name!r} ({record.role.value}) in {path}; "
        "the token is not shown again",
        file=sys.stderr,
    )
    return 0


# -- dashboard-user ------------------------------------------------------------
def _add_dashboard_user(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser("dashboard-user", help="add, list or remove dashboard logins")
    actions = cmd.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a user (or set a new password); prints it once")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument(
        "--role",
        choices=("administrator", "manager", "viewer"),
        default="manager",
        help="administrator: devices too; manager: vendors, stalls, products, batches; "
        "viewer: reads only (default manager)",
    )
    listing = actions.add_parser("list", help="user names (never passwords)")
    remove = actions.add_parser("remove", help="delete a user")
    remove.add_argument("name")
    for action in (add, listing, remove):
        action.add_argument(
            "--users-file",
            type=Path,
            help="default: dashboard_users_file setting; without either, the market database",
        )
    cmd.set_defaults(handler=_run_dashboard_user)


def _run_dashboard_user(args: argparse.Namespace) -> int:
    from dashboard import auth

    settings = load_settings(args.config)
    path = args.users_file or settings.dashboard_users_file
    if path is None:  # no file: the market database keeps them
        return accountscli.dashboard_user(args, settings)
    try:
        if args.action == "add":
            given = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
            password = auth.add_user(path, args.name, given, auth.UserRole(args.role))
            if given is None:
                print(password)  # alone on stdout, so scripts can capture it
            print(f"stored the scrypt hash of {args.name!r}'s password in {path}", file=sys.stderr)
            return 0
        if args.action == "list":
            for user in auth.read_users_file(path).users:
                print(f"{user.name}\t{user.role.value}\t{user.created.isoformat()}")
            return 0
        if auth.remove_user(path, args.name):
            print(f"removed {args.name!r} from {path}", file=sys.stderr)
            return 0
        log.error("no user named %r in %s", args.name, path)
        return 1
    except (auth.UsersFileError, ValueError) as exc:
        log.error("%s", exc)
        return 2


# -- store ---------------------------------------------------------------------
def _add_store(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser("store", help="maintain the store")
    actions = cmd.add_subparsers(dest="action", required=True)
    retention = actions.add_parser(
        "retention",
        help="remove data older than each market's [retention] now (ingest does it hourly)",
    )
    retention.add_argument("--market", action="append", type=Path, help="market file (repeatable)")
    retention.add_argument("--store", choices=["sqlite", "influx"])
    retention.add_argument(
        "--dry-run", action="store_true", help="count what would be removed, remove nothing"
    )
    retention.set_defaults(handler=_run_store_retention)
    backfill = actions.add_parser(
        "backfill",
        help="build an InfluxDB database's hourly rollups and lookup indexes from its raw points",
    )
    backfill.add_argument("--market", action="append", type=Path, help="market file (repeatable)")
    backfill.add_argument(
        "--store",
        dest="store_spec",
        help="sqlite:PATH or influx:http://host:8086/DATABASE (default: the configured store)",
    )
    backfill.add_argument(
        "--into-routed",
        action="store_true",
        help="copy an InfluxDB database's points from its base retention policy into the "
        "policies per market and kind (STALLWATCH_INFLUX_RETENTION_BY_KIND), day by day",
    )
    backfill.add_argument(
        "--max-days", type=int, help="stop after this many days (run again to go on)"
    )
    backfill.add_argument(
        "--since",
        type=date.fromisoformat,
        help="start at this UTC day (YYYY-MM-DD), leaving the checkpoint where it is: the "
        "recent days first, the older ones by a run without it",
    )
    backfill.set_defaults(handler=_run_store_backfill)


def _run_store_retention(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from stallwatch.options import retention
    from stallwatch.stores import open_store

    settings = settings_from(args)
    schedule = retention(settings, load_registry(settings))
    now = datetime.now(UTC)
    with open_store(settings) as store:
        report = store.apply_retention(now, schedule.policies, dry_run=args.dry_run)
    verb = "would remove" if report.dry_run else "removed"
    for (market, kind), count in sorted(report.removed.items()):
        policy = schedule.policies[market]
        cutoff = policy.cutoff(kind, now).isoformat(timespec="minutes")
        print(f"{market}\t{kind}\tkept {policy.days(kind)} days\tbefore {cutoff}\t{verb} {count}")
    print(f"{verb} {report.total} rows in all")
    return 0


def _run_store_backfill(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from stallwatch.backfill import backfill, copy_into_routed
    from stallwatch.stores import store_spec
    from storage import spec

    settings = settings_from(args)
    # The rollups need no market file; the indexes are built per market named.
    registry = load_registry(settings) if settings.markets else None
    markets = [market.id for market in registry] if registry is not None else []
    chosen = (
        spec.parse_store_spec(args.store_spec)
        if args.store_spec is not None
        else store_spec(settings)
    )
    routed = args.into_routed or settings.influx_retention_by_kind
    if isinstance(chosen, spec.InfluxSpec) and routed and chosen.retention is None:
        if registry is None:
            log.error("the retention policies per market and kind need the market files (--market)")
            return 2
        retention = tuple(sorted(registry.retention().items()))
        chosen = replace(chosen, retention=retention, create_retention_policies=True)
    with spec.open_store(chosen) as store:
        if args.into_routed:
            copy_into_routed(store, max_days=args.max_days)
        else:
            backfill(store, markets, max_days=args.max_days, since=args.since)
    return 0


if __name__ == "__main__":
    sys.exit(main())
