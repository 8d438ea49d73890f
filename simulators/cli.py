"""``stallwatch simulate``: the command-line face of the simulators.

Mount with ``build_parser(subparsers)`` and dispatch with ``run(args)``::

    stallwatch simulate --market M.toml --broker mqtt://127.0.0.1:1883 --speed 60 --seed 1 \
        --date 2026-11-21
    stallwatch simulate history --market M.toml --days 365 --vendors 300 --store sqlite:var/h.db
    stallwatch simulate load --market M.toml --broker mqtt://127.0.0.1:1883 -n 200000
    stallwatch simulate market --market M.toml --vendors 300 --out var/nanmen-300.toml

Without a sub-command it plays market days live against a broker. Options of
the live mode may also be given before a sub-command (``--market`` and ``--seed``
are shared).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from schemas.credentials import CredentialsFile
from schemas.registry import Market, RegistryError, RegistrySource, load_market
from simulators.devices import ConnectionMode, LinkOptions, read_password_file
from simulators.history import FanOut, HistorySummary, ReadingSink, generate_history
from simulators.load import publish_load
from simulators.run import DeviceSettings, RunSummary, parse_speed, run_markets
from simulators.scaling import dump_market_toml, scale_market
from storage.records import DeadLetter, Reading
from storage.spec import SPEC_SYNTAX, open_store, parse_store_spec

log = logging.getLogger(__name__)


def build_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``simulate`` (with its sub-commands) to ``subparsers`` and return its parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="simulate market devices: live over MQTT, history into a store, or load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _live_options(parser)
    modes = parser.add_subparsers(dest="simulate_mode", metavar="{history,load,market}")
    _history_parser(modes)
    _load_parser(modes)
    _market_parser(modes)
    parser.set_defaults(simulate_mode=None)
    return parser


def _shared(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    # Sub-commands suppress their defaults so that values given before the
    # sub-command (on the live-mode parser) are not overwritten.
    default: dict[str, Any] = {} if top_level else {"default": argparse.SUPPRESS}
    parser.add_argument(
        "--market",
        dest="markets",
        action="append",
        type=Path,
        metavar="FILE",
        help="market file (TOML); repeat for several markets",
        **default,
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="random seed (default 1)",
        **({"default": 1} if top_level else default),
    )


def _live_options(parser: argparse.ArgumentParser) -> None:
    _shared(parser, top_level=True)
    parser.add_argument(
        "--broker", default="mqtt://127.0.0.1:1883", help="mqtt://[user:pass@]host:port"
    )
    parser.add_argument(
        "--speed",
        type=parse_speed,
        default=1.0,
        help="market seconds per real second (60 = an hour a minute) or 'max' (default 1)",
    )
    parser.add_argument(
        "--date",
        type=date.fromisoformat,
        help="market day (default: today at speed 1, else yesterday)",
    )
    parser.add_argument(
        "--mode",
        type=ConnectionMode,
        choices=list(ConnectionMode),
        help="per-device or multiplexed",
    )
    parser.add_argument(
        "--connections", type=int, default=4, help="connections in multiplexed mode (default 4)"
    )
    parser.add_argument(
        "--auth", action="store_true", help="authenticate with the device id as user name"
    )
    parser.add_argument(
        "--password-file",
        type=Path,
        help="device:password lines, or the credentials.json of `stallwatch broker-auth`"
        " (implies --auth)",
    )
    parser.add_argument(
        "--no-catch-up", action="store_true", help="at speed 1 today: replay from opening"
    )


def _history_parser(modes: Any) -> None:
    parser = modes.add_parser("history", help="write days of history straight into a store")
    _shared(parser, top_level=False)
    parser.add_argument("--days", type=int, default=28, help="number of days (default 28)")
    parser.add_argument(
        "--start", type=date.fromisoformat, help="first day (default: DAYS before today)"
    )
    parser.add_argument("--vendors", type=int, help="clone the market to this many vendors first")
    parser.add_argument(
        "--store",
        required=True,
        action="append",
        help=f"{SPEC_SYNTAX} (created if missing), or memory (count only); repeat it to"
        " write the same history into several stores, made once",
    )
    parser.add_argument(
        "--write-market", type=Path, metavar="FILE", help="also write the (scaled) market file"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=5_000,
        help="readings per Store.write (default 5000; 1000 into InfluxDB, see docs/benchmarks.md)",
    )


def _load_parser(modes: Any) -> None:
    parser = modes.add_parser("load", help="publish N valid sales as fast as possible")
    _shared(parser, top_level=False)
    parser.add_argument("--broker", default=argparse.SUPPRESS, help="mqtt://[user:pass@]host:port")
    parser.add_argument("-n", type=int, default=100_000, help="number of messages (default 100000)")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--connections", type=int, default=argparse.SUPPRESS)
    parser.add_argument(
        "--window", type=int, default=10_000, help="unacknowledged publishes per connection"
    )


def _market_parser(modes: Any) -> None:
    parser = modes.add_parser("market", help="write a market file cloned to N vendors")
    _shared(parser, top_level=False)
    parser.add_argument("--vendors", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)


# -- running ----------------------------------------------------------------------------
def run(
    args: argparse.Namespace,
    *,
    default_markets: Sequence[Path] = (),
    follow: RegistrySource | None = None,
) -> int:
    """Run the parsed ``simulate`` command; returns the exit status.

    ``default_markets`` (e.g. the deployment's configured market files) are used
    when no ``--market`` is given; failing those, the markets of ``follow`` (the
    market database), which a live run then follows (``simulators.joining``).
    """
    try:
        named = getattr(args, "markets", None) or default_markets
        if not named and follow is not None:
            markets = list(follow.current())
        else:
            markets = _markets(args, default_markets)
            follow = None
        if args.simulate_mode is None:
            return _run_live(args, markets, follow)
        handler = {
            "history": _run_history,
            "load": _run_load,
            "market": _run_market,
        }[args.simulate_mode]
        return handler(args, markets)
    except (RegistryError, ValueError, OSError) as exc:
        print(f"stallwatch simulate: {exc}", file=sys.stderr)
        return 2


def _markets(args: argparse.Namespace, default: Sequence[Path]) -> list[Market]:
    paths = getattr(args, "markets", None) or default
    if not paths:
        raise ValueError("give at least one --market FILE")
    return [load_market(path) for path in paths]


def _run_live(
    args: argparse.Namespace, markets: list[Market], follow: RegistrySource | None = None
) -> int:
    tz = markets[0].tz
    today = datetime.now(tz).date()
    day = args.date or (today if args.speed == 1 else today - timedelta(days=1))
    live_today = day == today and args.speed == 1 and not args.no_catch_up
    passwords = None
    if args.password_file is not None:
        passwords = device_passwords(args.password_file)
    settings = DeviceSettings(
        mode=args.mode,
        options=LinkOptions(),
        passwords=passwords,
        authenticate=args.auth,
        connections=args.connections,
    )
    summary = run_markets(
        markets,
        args.broker,
        seed=args.seed,
        speed=args.speed,
        date=day,
        devices=settings,
        catch_up_to=datetime.now(tz) if live_today else None,
        follow=follow,
    )
    _print_run(summary)
    return 0 if summary.delivery is None or summary.delivery.unacknowledged == 0 else 1


def device_passwords(path: Path) -> dict[str, str]:
    if path.suffix == ".json":
        # An invalid file raises pydantic's ValidationError: a ValueError, reported by run().
        return dict(CredentialsFile.model_validate_json(path.read_bytes()).devices)
    return read_password_file(path.read_text().splitlines())


def _print_run(summary: RunSummary) -> None:
    print(f"{summary.day}: {summary.total} messages in {summary.wall_seconds:.1f}s")
    for market, counts in summary.by_market.items():
        print(f"  {market}: " + ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())))
    if summary.delivery is not None:
        d = summary.delivery
        print(f"  acked {d.acked}, unacknowledged {d.unacknowledged}, dropped {d.dropped}")
    if summary.refused_sales:
        print(f"  {summary.refused_sales} sales refused: their batch is locked")


def _run_history(args: argparse.Namespace, markets: list[Market]) -> int:
    start = args.start or datetime.now(markets[0].tz).date() - timedelta(days=args.days)
    if args.write_market is not None and len(markets) != 1:
        raise ValueError("--write-market needs exactly one --market")
    store = open_sinks(args.store)
    try:
        for market in markets:
            if args.write_market is not None:
                scaled = scale_market(market, args.vendors) if args.vendors else market
                args.write_market.write_text(dump_market_toml(scaled))
            summary = generate_history(
                market,
                store,
                start_date=start,
                days=args.days,
                seed=args.seed,
                vendors_scale=args.vendors,
                batch_size=args.batch_size,
                # Older raw heartbeats or gate counts would be refused by a store keeping
                # each kind in a retention policy of its own, and deleted by any store.
                kept_as_of=datetime.now(UTC),
            )
            _print_history(summary)
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()
    return 0


def _print_history(summary: HistorySummary) -> None:
    rate = summary.readings_per_second
    print(
        f"{summary.market}: {summary.days} days from {summary.start}, {summary.readings} readings "
        f"({summary.refused} refused, {summary.expired} beyond their retention not written) "
        f"in {summary.seconds:.1f}s = {rate:.0f}/s"
    )
    print("  " + ", ".join(f"{kind} {n}" for kind, n in sorted(summary.counts.items())))


def _run_load(args: argparse.Namespace, markets: list[Market]) -> int:
    for market in markets:
        result = publish_load(
            args.broker,
            market,
            args.n,
            qos=args.qos,
            connections=args.connections,
            window=args.window,
        )
        print(
            f"{market.id}: {result.acked}/{result.messages} acknowledged in {result.seconds:.2f}s "
            f"= {result.rate:.0f} msg/s over {result.connections} connections"
        )
    return 0


def _run_market(args: argparse.Namespace, markets: list[Market]) -> int:
    if len(markets) != 1:
        raise ValueError("give exactly one --market to scale")
    scaled = scale_market(markets[0], args.vendors)
    header = f"{markets[0].id} cloned to {args.vendors} vendors by `stallwatch simulate market`."
    args.out.write_text(dump_market_toml(scaled, header=header))
    print(f"wrote {args.out}: {len(scaled.spec.vendors)} vendors, {len(scaled.devices)} devices")
    return 0


# -- stores -------------------------------------------------------------------------------
class CountingSink:
    """A sink that keeps nothing: measures how fast history is generated."""

    def __init__(self) -> None:
        self.readings = 0

    def write(
        self, readings: Sequence[Reading], dead_letters: Sequence[DeadLetter] = ()
    ) -> list[DeadLetter]:
        self.readings += len(readings)
        return []


def open_sink(spec: str) -> ReadingSink:
    """``memory``, or a store as :func:`storage.spec.parse_store_spec` reads it."""
    if spec == "memory":
        return CountingSink()
    return open_store(parse_store_spec(spec))


def open_sinks(specs: Sequence[str]) -> ReadingSink:
    """One sink, or a :class:`FanOut` writing to each: the history is made once for all.

    A store that fails to open closes the ones opened before it."""
    sinks: list[ReadingSink] = []
    try:
        for spec in specs:
            sinks.append(open_sink(spec))
    except BaseException:
        FanOut(sinks).close()
        raise
    return sinks[0] if len(sinks) == 1 else FanOut(sinks)


def simulate_main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m simulators ...``."""
    top = argparse.ArgumentParser(prog="stallwatch")
    build_parser(top.add_subparsers(dest="command", required=True))
    args = top.parse_args(["simulate", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return run(args)
