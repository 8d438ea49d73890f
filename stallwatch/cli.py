"""The ``stallwatch`` command: wiring only; each subcommand's work lives in its package."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from schemas.registry import Registry, RegistryError
from stallwatch.settings import Settings, load_settings

log = logging.getLogger("stallwatch")

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except RegistryError as exc:
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

    settings = settings_from(args)
    registry = load_registry(settings)  # fail here, not in the forwarder, on a bad market file
    stop = _stop_on_signals()
    service = build_service(settings)
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
    cmd.set_defaults(handler=simulators_cli.run)


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
        "broker-auth", help="generate Mosquitto passwords and ACL from market files"
    )
    cmd.add_argument("--market", action="append", type=Path, required=True)
    cmd.add_argument("--out", type=Path, required=True)
    cmd.add_argument("--rotate", action="store_true", help="replace existing passwords")
    cmd.set_defaults(handler=_run_broker_auth)


def _run_broker_auth(args: argparse.Namespace) -> int:
    from stallwatch.brokerauth import write_broker_auth

    files = write_broker_auth(Registry.load(args.market), args.out, rotate=args.rotate)
    print(f"wrote {files}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
