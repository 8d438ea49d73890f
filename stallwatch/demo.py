"""``stallwatch demo``: the whole data path on one machine with nothing installed.

1. a fresh SQLite store in ``var/demo/`` with a week of fast-forwarded history, and a
   market database (``var/demo/market.db``) seeded from the market files, which ingest,
   the web app and the simulated devices all follow: a vendor, stall or scale added on
   the dashboard's management page starts selling without a restart;
2. an embedded MQTT broker (amqtt), unless ``--broker`` names one;
3. ingest, exactly as ``stallwatch ingest`` runs it (spool, acks, validation);
4. the HTTP API and the dashboard (``stallwatch serve``) with a generated manager token and
   dashboard login, printed once;
5. the market's simulated devices playing today at ``--speed`` (60: a market hour a minute);
6. every few seconds, what has reached the store: sales, turnover, footfall, prices.

Today's day is staged to show food safety's loop: two of its spot checks fail, so two
batches on sale are locked on their vendor's scales and screens (the dashboard's
food-safety page lists them with their recall), and the second vendor's scale is an old
model that ignores its commands: it sells on, and the overview raises the alert.

It also writes ``examples.sh`` beside the store: a day, a batch and a receipt from the
history, which the README's examples use. The dashboard's clock is the simulated one.
One Ctrl-C stops it at any point.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shlex
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import httpx

from ingest.mqtt import MqttOptions, persistent_session
from ingest.service import IngestService
from ingest.validate import Limits
from mqttedge import EdgeOptions
from schemas.registry import Market, Registry, RegistrySource
from simulators.clock import Pacer
from simulators.config import DayConfig
from simulators.day import MarketDay
from simulators.events import from_epoch_ms
from simulators.history import generate_history
from simulators.run import DeviceSettings, run_markets
from stallwatch.embedded_broker import EmbeddedBroker
from stallwatch.options import limits, live_mqtt_options, registry_source
from stallwatch.settings import Settings
from storage.base import Store
from storage.sqlite import SQLiteStore

if TYPE_CHECKING:
    from marketdb.management import Management
    from marketview.live_mqtt import LiveView
    from stallwatch.lockkeeper import KeeperThread

log = logging.getLogger("stallwatch.demo")

EXAMPLE_MARKET = Path(__file__).resolve().parent.parent / "examples" / "markets" / "nanmen.toml"


def add_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--market", action="append", type=Path, help="market file (default: the example)"
    )
    cmd.add_argument(
        "--broker", help="use this MQTT broker (mqtt://host:port) instead of the embedded one"
    )
    cmd.add_argument(
        "--speed", type=float, default=60.0, help="market seconds per second (0: flat out)"
    )
    cmd.add_argument("--seed", type=int, default=1)
    cmd.add_argument("--history-days", type=int, default=7, help="days of history to fast-forward")
    cmd.add_argument("--workdir", type=Path, default=Path("var/demo"))
    cmd.add_argument("--report-every", type=float, default=5.0, help="seconds between reports")
    cmd.add_argument("--api-port", type=int, default=8000, help="HTTP API port (0: any free one)")
    cmd.add_argument(
        "--exit-when-done",
        action="store_true",
        help="stop after the simulated day instead of serving the dashboard until Ctrl-C",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    registry = Registry.load(args.market or settings.markets or (EXAMPLE_MARKET,))
    workdir = _fresh(args.workdir)
    today = datetime.now(next(iter(registry)).tz).date()
    print(f"stallwatch demo: markets {', '.join(registry.markets)}; data in {workdir}/")
    try:
        _run_everything(registry, workdir, today, args, settings)
    except KeyboardInterrupt:
        # One Ctrl-C stops the demo whatever it is doing; the with-blocks it unwinds
        # have stopped ingest, the API and the broker and closed the store.
        print("\nstopped.")
        return 0
    print(f"\ndone. The store is {workdir / 'stallwatch.db'} (SQLite); try:")
    print(f"  sqlite3 {workdir / 'stallwatch.db'} .tables")
    return 0


def _run_everything(
    registry: Registry, workdir: Path, today: date, args: argparse.Namespace, settings: Settings
) -> None:
    first = next(iter(registry))
    clock = SimulatedClock(datetime.combine(today, first.spec.market.opens, first.tz))
    database = _seed_market_database(registry, workdir)
    with SQLiteStore(workdir / "stallwatch.db") as store:
        _fast_forward(registry, store, today, args.history_days, args.seed)
        _write_examples(first, store, workdir, today - timedelta(days=1))
        settings = settings.model_copy(update={"markets": (), "market_database": database})
        following = registry_source(settings)
        broker = None if args.broker else EmbeddedBroker()
        if broker is not None:
            broker.start()
            print(f"embedded MQTT broker (amqtt, MQTT 3.1.1) on {broker.url}")
        url = args.broker or (broker.url if broker else "")
        try:
            service = _start_ingest(url, following, store, workdir, settings, v5=broker is None)
            with _serve_api(
                url, following, store, workdir, settings, args.api_port, clock, v5=broker is None
            ):
                _play_today(registry, following, url, today, args, service, store, clock)
                if not args.exit_when_done:
                    _serve_until_interrupted()
        finally:
            if broker is not None:
                broker.stop()


class SimulatedClock:
    """The simulated market time, which the demo's dashboard runs on.

    The day plays at ``--speed``, so by the wall clock's time of day a few simulated hours
    would be compared with a whole morning of last week's. Before the day starts this is
    the opening; while it plays, the pacer's time; once it is over, the last event's.
    """

    def __init__(self, opening: datetime) -> None:
        self._stopped_at = opening
        self._tz = ZoneInfo("UTC")
        self._pacer: Pacer | None = None

    def playing(self, pacer: Pacer) -> None:
        self._pacer = pacer

    def stop(self, at: datetime) -> None:
        self._stopped_at = at
        self._pacer = None

    def __call__(self) -> datetime:
        pacer = self._pacer  # one read: another thread may stop the clock meanwhile
        if pacer is None:
            return self._stopped_at
        return from_epoch_ms(pacer.market_ms(), self._tz)


def _seed_market_database(registry: Registry, workdir: Path) -> str:
    """The demo's market database, seeded from its market files (as ``stallwatch market
    import`` does); returns its URL."""
    from marketdb.database import open_database, session_factory
    from marketdb.marketfile import import_market

    url = f"sqlite:///{workdir / 'market.db'}"
    engine = open_database(url)
    with session_factory(engine)() as session, session.begin():
        for market in registry:
            import_market(session, market.spec, actor="demo")
    engine.dispose()
    print(f"market database {workdir / 'market.db'}: {', '.join(registry.markets)} imported")
    return url


def _fresh(workdir: Path) -> Path:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    return workdir


def _fast_forward(registry: Registry, store: Store, today: date, days: int, seed: int) -> None:
    if days <= 0:
        return
    for market in registry:
        summary = generate_history(
            market,
            store,
            start_date=today - timedelta(days=days),
            days=days,
            seed=seed,
            kept_as_of=datetime.now(UTC),
        )
        print(f"history: {summary.readings} readings of {days} days for {market.id} in the store")


def _write_examples(market: Market, store: Store, workdir: Path, day: date) -> None:
    """``examples.sh``: a day of history, a batch of it and a sale of that batch.

    The README's examples source it, so they name things this store really holds.
    """
    start = datetime.combine(day, datetime.min.time(), market.tz)
    balances = store.batch_balances(market.id, start, start + timedelta(days=1))
    sold = next((balance for balance in balances if balance.sales > 0), None)
    if sold is None:  # no history
        return
    sale = store.sales_of_batch(market.id, sold.trace_code)[0]
    values = {
        "DAY": day.isoformat(),
        "TRACE": sold.trace_code,
        "RECEIPT": f"{sale.scale}/{sale.msg_id}",
    }
    path = workdir / "examples.sh"
    lines = [f"{name}={shlex.quote(value)}" for name, value in values.items()]
    path.write_text(
        "# written by `stallwatch demo` for the README's examples\n" + "\n".join(lines) + "\n"
    )
    print(f"for the README's examples: . {path}  ({', '.join(lines)})")


def _start_ingest(
    url: str,
    registry: RegistrySource,
    store: Store,
    workdir: Path,
    settings: Settings,
    *,
    v5: bool,
) -> IngestService:
    host_port = url.removeprefix("mqtt://").removeprefix("tcp://")
    host, _, port = host_port.partition(":")
    connection = EdgeOptions(
        host, int(port or 1883), "stallwatch-demo-ingest", protocol="5" if v5 else "3.1.1"
    )
    options = MqttOptions(persistent_session(connection))
    service = IngestService.in_process(
        options, registry, store, workdir / "spool.db", limits=_demo_limits(settings)
    )
    service.start()
    if not service.receiver.subscribed.wait(30):
        raise RuntimeError(f"ingest could not subscribe at {url}")
    print(f"ingest subscribed at {url}; spool {workdir / 'spool.db'}")
    return service


def _demo_limits(settings: Settings) -> Limits:
    """The simulated clock runs ahead of the wall clock at --speed > 1, so in the demo
    only, device times up to a day ahead are accepted (by ingest and the live view: a
    failed test the live view refused as from the future would not be locked at once)."""
    return replace(limits(settings), max_future_skew=timedelta(days=1))


@contextlib.contextmanager
def _serve_api(
    url: str,
    registry: RegistrySource,
    store: Store,
    workdir: Path,
    settings: Settings,
    port: int,
    clock: SimulatedClock,
    *,
    v5: bool,
) -> Iterator[None]:
    from api.security import Role, create_token
    from dashboard.auth import UserRole, add_user
    from marketview.live_mqtt import LiveView
    from stallwatch.webapp import open_lock_keeper, open_management

    tokens = workdir / "api-tokens.json"
    token, _ = create_token(tokens, Role.ADMINISTRATOR, name="demo")
    users = workdir / "dashboard-users.json"
    # The demo's manager may add scales too: an administrator in the roles' terms.
    password = add_user(users, "manager", role=UserRole.ADMINISTRATOR)
    # The embedded broker speaks MQTT 3.1.1 only: the live view and the lock keeper's
    # command publisher both connect with what the broker speaks.
    api_settings = settings.model_copy(
        update={
            "api_tokens_file": tokens,
            "dashboard_users_file": users,
            "mqtt_url": url,
            "mqtt_protocol": "5" if v5 else "3.1.1",
        }
    )
    with (
        open_management(api_settings, store, now=clock) as management,
        open_lock_keeper(api_settings, management, registry, store, now=clock) as keeper,
    ):
        live = LiveView(
            registry,
            store,
            live_mqtt_options(api_settings),
            limits=_demo_limits(settings),
            on_reading=None if keeper is None else keeper.observe,
        )
        if keeper is not None:
            keeper.keeper.follow(live.set_suspensions)
        live.start()
        try:
            yield from _serve_web(
                api_settings,
                registry,
                store,
                live,
                clock,
                (management, keeper),
                port,
                (token, password),
            )
        finally:
            live.stop()


def _serve_web(
    api_settings: Settings,
    registry: RegistrySource,
    store: Store,
    live: LiveView,
    clock: SimulatedClock,
    changes: tuple[Management | None, KeeperThread | None],
    port: int,
    secrets_shown: tuple[str, str],
) -> Iterator[None]:
    """The web app of the demo; ``secrets_shown`` is the API token and the manager's
    password, printed once."""
    from api.server import ServerThread
    from stallwatch.webapp import DASHBOARD_PATH, create_web_app

    (management, keeper), (token, password) = changes, secrets_shown
    app = create_web_app(
        settings=api_settings,
        registry=registry,
        store=store,
        live=live,
        now=clock,
        management=management,
        lock_keeper=None if keeper is None else keeper.keeper,
    )
    with ServerThread(app, port=port) as server:
        market = next(iter(registry.current())).id
        print(
            f"dashboard on {server.url}{DASHBOARD_PATH}/  (user manager, password {password})"
            f"; add a vendor, a stall and a scale at {server.url}{DASHBOARD_PATH}/manage"
        )
        print(f"HTTP API on {server.url}  (OpenAPI: {server.url}/docs)")
        print(f"  price board:   curl {server.url}/api/v1/markets/{market}/prices")
        print(f"  administrator token (shown once): {token}")
        print(
            f"  sales today:   curl -H 'Authorization: Bearer {token}' "
            f"{server.url}/api/v1/markets/{market}/sales"
        )
        yield
        _show_board(f"{server.url}/api/v1/markets/{market}/prices")
        _show_dashboard(f"{server.url}{DASHBOARD_PATH}/", "manager", password)


def _serve_until_interrupted() -> None:
    print("\nthe simulated day is over; the API and the dashboard keep serving. Ctrl-C to stop")
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


def _show_board(url: str) -> None:
    """Read the board back through the API, as a price screen would."""
    response = httpx.get(url, timeout=10)
    products = response.json().get("products", []) if response.status_code == 200 else []
    print(f"API {url}: HTTP {response.status_code}, {len(products)} products on the price board")


def _show_dashboard(url: str, user: str, password: str) -> None:
    """Log in to the dashboard as a manager would and fetch its page."""
    with httpx.Client(timeout=10, follow_redirects=True) as client:
        client.post(f"{url}login", data={"username": user, "password": password})
        response = client.get(url)
    shell = response.status_code == 200 and "_dash-renderer" in response.text
    print(f"dashboard {url}: HTTP {response.status_code} after login, Dash app served: {shell}")


def _play_today(
    registry: Registry,
    following: RegistrySource,
    url: str,
    today: date,
    args: argparse.Namespace,
    service: IngestService,
    store: Store,
    clock: SimulatedClock,
) -> None:
    markets = list(registry)
    published: list[int] = []

    deaf = staged_deaf_scales(markets, today, args.seed)

    def play() -> None:
        summary = run_markets(
            markets,
            url,
            seed=args.seed,
            speed=args.speed,
            date=today,
            config=DEMO_DAY,
            devices=DeviceSettings(deaf_scales=deaf),
            progress_every_s=3600.0,
            on_playing=clock.playing,
            follow=following,
        )
        if summary.last_ts is not None:
            clock.stop(summary.last_ts)
        published.append(summary.total)

    player = threading.Thread(target=play, name="simulators", daemon=True)
    print(f"simulating {today} at {args.speed:g}x; Ctrl-C to stop\n")
    player.start()
    try:
        while player.is_alive():
            player.join(args.report_every)
            _report(markets, store, service, today)
        _wait_for_drain(service, sum(published))
        _report(markets, store, service, today)
    finally:
        service.stop()


#: Today's play: at least two spot checks fail (see the module docstring).
DEMO_DAY = DayConfig(spot_check_failures_at_least=2)


def staged_deaf_scales(markets: list[Market], today: date, seed: int) -> frozenset[str]:
    """In each market, the scales of the vendor whose batch fails a spot check after the
    day's first failure, of another vendor: old ones that ignore their lock. The first
    failure's vendor's scales obey."""
    deaf: set[str] = set()
    for market in markets:
        day = MarketDay(market, today, seed=seed, config=DEMO_DAY)
        failures = [check for check in day.spot_checks if not check.passed]  # by time
        later = [one for one in failures[1:] if one.batch.vendor != failures[0].batch.vendor]
        if not later:
            continue  # a market with too few produce batches or vendors to show both
        check = later[0]
        vendor = market.vendors[check.batch.vendor]
        deaf.update(vendor.scales)
        at = check.batch.plu, day.hours.local(check.at_ms).strftime("%H:%M")
        print(
            f"staged: {market.id} {vendor.id}'s batch {check.batch.trace_code} ({at[0]}) "
            f"fails its spot check at {at[1]}; its scale ({', '.join(vendor.scales)}) is an "
            "old one that ignores the lock"
        )
    return frozenset(deaf)


def _wait_for_drain(service: IngestService, published: int, timeout_s: float = 120.0) -> None:
    """Until ingest has received and stored everything the devices published."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = service.status()
        if status.received >= published and status.pending == 0:
            return
        time.sleep(0.2)
    log.warning("ingest had not caught up after %.0fs", timeout_s)


def _report(markets: list[Market], store: Store, service: IngestService, today: date) -> None:
    status = service.status()
    print(
        f"[ingest] received {status.received:,}  stored {status.stored:,}  "
        f"rejected {status.rejected}  spool {status.pending}"
    )
    for market in markets:
        start = datetime.combine(today, market.spec.market.opens, market.tz).replace(
            hour=0, minute=0
        )
        end = start + timedelta(days=1)
        sales = store.sales(market.id, start, end)
        turnover = sum(sale.total_fen for sale in sales)
        footfall = sum(row.people_in for row in store.footfall_hourly(market.id, start, end))
        latest = sales[-1].ts.astimezone(market.tz).strftime("%H:%M") if sales else "--:--"
        print(
            f"  {market.id} {today} up to {latest}: {len(sales):,} sales, "
            f"turnover ¥{_yuan(turnover)}, "
            f"{footfall:,} visitors in"
        )
        _print_prices(market, store)


def _print_prices(market: Market, store: Store, shown: int = 3) -> None:
    prices = store.latest_prices(market.id)
    if not prices:
        return
    parts = []
    for row in prices[:: max(1, len(prices) // shown)][:shown]:
        product = market.products[row.plu]
        promo = f" (促销 ¥{_per_jin(row.promo.price_fen_per_kg)})" if row.promo else ""
        parts.append(f"{product.name_zh} ¥{_per_jin(row.price_fen_per_kg)}/斤{promo}")
    print(f"    {len(prices)} current prices, e.g. " + "; ".join(parts))


def _yuan(fen: int) -> str:
    return f"{Decimal(fen) / 100:,.2f}"


def _per_jin(fen_per_kg: int) -> str:
    return f"{Decimal(fen_per_kg) / 200:.2f}"
