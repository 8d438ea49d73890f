"""Every dashboard callback, timed over HTTP on a year of a 300-vendor market.

The store is made once with the simulator's fast-forward mode (~45 min, ~4 GB)::

    .venv/bin/stallwatch simulate history --market examples/markets/nanmen.toml \\
        --vendors 300 --days 365 --store sqlite:var/year/year.db \\
        --write-market var/year/nanmen300.toml

then::

    .venv/bin/python -m bench.dashboard_bench --store sqlite:var/year/year.db \\
        --market var/year/nanmen300.toml

On InfluxDB, a private influxd keeps its data in a directory of its own, so the
year is loaded once and reused: ``--influx-dir DIR --serve-influx`` starts it and
waits (load with ``stallwatch simulate history --store influx:URL/stallwatch``
from another shell), and ``--influx-dir DIR`` alone benches over it. Any other
server is named with ``--store influx:http://host:8086/DATABASE``.

The web app runs as ``stallwatch serve`` builds it (API + dashboard, one
process) over that store, with a private Mosquitto for the live view. Each
callback is POSTed to Dash's ``/_dash-update-component`` as the browser sends
it, ``--repeat`` times, and timed from request to full response: the whole
server side (Flask, Dash, the query, the figure, JSON) plus loopback HTTP.

Side by side in the same run:

* **floor**: the language switch, a callback that does no work, so the figure
  is the cost of a Dash round trip on this machine;
* **raw**: the 30-day turnover trend computed from raw sale rows, which is what
  the rollup (``Store.sales_by_hour``) saves the overview from.

And, in process, the look-ups the issue gives 50 ms (``LOOKUP_TARGET_MS``):
``Store.batch``, ``Store.sales_of_batch`` and ``Store.sale_by_receipt`` for a
batch sold on the last day and one sold half a year earlier, and a receipt of
each.

The clock the dashboard uses is the end of the stored year (``--now``, default:
the latest sale in the store), so "today" is a full market day.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from api.server import ServerThread
from marketview.live_mqtt import LiveView
from schemas.registry import Registry
from stallwatch.localservices import Influxd, influxd, mosquitto
from stallwatch.options import live_mqtt_options
from stallwatch.settings import Settings, StoreKind
from storage.base import Store
from storage.interfaces.sales import SaleRow
from storage.spec import (
    SPEC_SYNTAX,
    InfluxSpec,
    SQLiteSpec,
    StoreSpec,
    open_store,
    parse_store_spec,
)

BUDGET_MS = 300.0
LOOKUP_TARGET_MS = 50.0
#: influxd over a year reads its shards' indexes before it listens.
INFLUXD_START_S = 600.0
#: How far back the second trace/receipt look-up reaches: old records must cost no more.
OLD = timedelta(days=182)


@dataclass(frozen=True)
class Call:
    name: str
    output: str
    inputs: Sequence[tuple[str, str, Any]]
    state: Sequence[tuple[str, str, Any]] = ()


@dataclass(frozen=True)
class Timing:
    name: str
    samples_ms: Sequence[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def worst(self) -> float:
        return max(self.samples_ms)


def calls(market: str, lang: str, trace_query: str, plu: str, day: str) -> list[Call]:
    lang_state = ("lang", "data", lang)
    market_in = ("market", "value", market)
    return [
        Call(
            "floor: language switch (no work)",
            "lang.data",
            [("lang-switch", "n_clicks", 1)],
            [lang_state],
        ),
        Call(
            "route to a page (layout)",
            "..page-content.children...nav.children...brand.children...lang-switch.children"
            "...logout.children..",
            [("url", "pathname", "/dashboard/footfall"), lang_state, market_in],
        ),
        Call(
            "overview: KPIs and alerts",
            "..overview-kpis.children...overview-alerts.children...overview-shown.data..",
            [("overview-tick", "n_intervals", 1), market_in],
            [lang_state, ("overview-shown", "data", None)],
        ),
        Call(
            "overview: 30-day turnover (rollup)",
            "overview-trend.figure",
            [("overview-trend-tick", "n_intervals", 1), market_in],
            [lang_state],
        ),
        Call(
            "prices: board, full",
            "..prices-grid.rowData...prices-grid.rowTransaction...prices-version.data..",
            [("prices-tick", "n_intervals", 1), market_in],
            [lang_state, ("prices-version", "data", None)],
        ),
        Call(
            "prices: product history 30 d + spread",
            "..prices-history.figure...prices-spread.figure...prices-detail-title.children..",
            [("prices-grid", "cellClicked", {"rowId": plu}), ("prices-range", "value", 30)],
            [market_in, lang_state],
        ),
        Call(
            "trace: search a trace code",
            "..trace-result.children...trace-timeline.figure...trace-timeline.style"
            "...trace-sales.rowData..",
            [("trace-search", "n_clicks", 1), ("trace-query", "value", trace_query)],
            [market_in, lang_state],
        ),
        Call(
            "footfall: a day by gate",
            "..footfall-hourly.figure...footfall-summary.children..",
            [("footfall-day", "date", day)],
            [market_in, lang_state],
        ),
        Call(
            "footfall: 8-week heatmap + 30 days",
            "..footfall-heatmap.figure...footfall-daily.figure..",
            [market_in],
            [lang_state],
        ),
        Call(
            "vendors & devices & dead letters",
            "..vendors-grid.rowData...devices-grid.rowData...dead-letters-grid.rowData"
            "...vendors-shown.data..",
            [("vendors-tick", "n_intervals", 1), market_in],
            [lang_state, ("vendors-shown", "data", None)],
        ),
    ]


def payload(call: Call) -> dict[str, Any]:
    def parts(spec: str) -> list[dict[str, str]]:
        if not spec.startswith(".."):
            component, prop = spec.split(".", 1)
            return [{"id": component, "property": prop}]
        found = []
        for item in spec.strip(".").split("..."):
            component, prop = item.split(".", 1)
            found.append({"id": component, "property": prop})
        return found

    outputs = parts(call.output)
    return {
        "output": call.output,
        "outputs": outputs if call.output.startswith("..") else outputs[0],
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in call.inputs],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in call.state],
        "changedPropIds": [f"{call.inputs[0][0]}.{call.inputs[0][1]}"],
    }


def time_call(client: httpx.Client, call: Call, repeat: int) -> Timing:
    body = json.dumps(payload(call))
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.post(
            "/dashboard/_dash-update-component",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code not in (200, 204):
            raise RuntimeError(f"{call.name}: HTTP {response.status_code}: {response.text[:300]}")
    return Timing(call.name, samples)


def time_function(name: str, fn: Callable[[], object], repeat: int) -> Timing:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return Timing(name, samples)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with contextlib.ExitStack() as stack:
        server = None
        if args.influx_dir is not None:
            server = stack.enter_context(
                influxd(args.influx_dir, port=args.influx_port, start_timeout=INFLUXD_START_S)
            )
            if args.serve_influx:
                return _serve(server, args.influx_database)
            spec: StoreSpec = InfluxSpec(server.url, args.influx_database)
        else:
            if args.serve_influx:
                raise SystemExit("--serve-influx needs --influx-dir")
            spec = args.store
        return _bench(args, spec, server)
    raise AssertionError("unreachable")  # ExitStack may swallow exceptions, as far as mypy knows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", type=_store_spec, help=SPEC_SYNTAX)
    where.add_argument(
        "--influx-dir",
        type=Path,
        metavar="DIR",
        help="start a private influxd whose data is kept in DIR, and bench over it",
    )
    parser.add_argument("--influx-database", default="stallwatch", help="(default stallwatch)")
    parser.add_argument(
        "--influx-port", type=int, help="the private influxd's port (default: free)"
    )
    parser.add_argument(
        "--serve-influx",
        action="store_true",
        help="with --influx-dir: only start influxd and keep it running until interrupted "
        "(load data into it meanwhile)",
    )
    parser.add_argument("--market", type=Path, help="the (scaled) market file")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--lang", choices=["zh", "en"], default="zh")
    parser.add_argument(
        "--now",
        type=_aware,
        help="the dashboard's clock, ISO 8601 with offset (default: end of the latest sale hour)",
    )
    parser.add_argument(
        "--no-raw", action="store_true", help="skip the 30-day turnover from raw sales"
    )
    return parser


def _store_spec(text: str) -> StoreSpec:
    try:
        return parse_store_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a UTC offset")
    return moment


def _serve(server: Influxd, database: str) -> int:
    print(f"influxd at {server.url}, data in {server.workdir}; load it with e.g.")
    print(f"  .venv/bin/stallwatch simulate history ... --store influx:{server.url}/{database}")
    print("Ctrl-C or SIGTERM stops it.", flush=True)
    # Blocked only now: influxd, started above, must not inherit a mask that ignores SIGTERM.
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    received = signal.sigwait(stop)
    print(f"{signal.Signals(received).name}: stopping influxd")
    return 0


def _bench(args: argparse.Namespace, spec: StoreSpec, server: Influxd | None) -> int:
    if args.market is None:
        raise SystemExit("--market is needed to bench")
    from dashboard.queries import DashboardData, turnover_by_day
    from stallwatch.webapp import create_web_app, freeze_startup_heap

    if isinstance(spec, SQLiteSpec) and not spec.path.is_file():
        raise SystemExit(f"no store at {spec.path}")  # open_store would create an empty one
    registry = Registry.load([args.market])
    market = next(iter(registry))
    store = open_store(spec)
    now = args.now or _latest_sale(store, market.id)
    print(f"store {_describe(spec, server)}; dashboard clock {now.isoformat()}")
    lookups = _lookups(store, market.id, now, args.repeat)
    with (
        tempfile.TemporaryDirectory() as tmp,
        mosquitto(Path(tmp) / "mq", persistence=False) as broker,
    ):
        settings = _settings(spec, args.market, broker.url, Path(tmp))
        started = time.perf_counter()
        live = LiveView(registry, store, live_mqtt_options(settings))
        live.start()
        print(
            f"live view loaded {len(live.prices(market.id)):,} prices "
            f"in {time.perf_counter() - started:.1f} s"
        )
        # Every call computes: browsers share the overview's figures for 2 s, which
        # would make 14 of 15 runs a cache hit and hide what one viewer waits for.
        app = create_web_app(
            settings=settings,
            registry=registry,
            store=store,
            live=live,
            now=lambda: now,
            shared_for_s=0.0,
        )
        freeze_startup_heap()  # as `stallwatch serve` does before it serves
        data = DashboardData(registry=registry, store=store, live=live, now=lambda: now)
        batch = _a_sold_batch(store, market.id, now)
        plu = live.board(market.id).products[0].plu
        day = now.astimezone(market.tz).date().isoformat()
        try:
            # TCP_NODELAY: httpx writes headers and body separately, and with Nagle the body
            # waits for the server's delayed ACK (40 ms on Linux), which browsers do not pay.
            transport = httpx.HTTPTransport(
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
            )
            with (
                ServerThread(app) as web,
                httpx.Client(base_url=web.url, timeout=600, transport=transport) as client,
            ):
                timings = [
                    time_call(client, call, args.repeat)
                    for call in calls(market.id, args.lang, batch, plu, day)
                ]
        finally:
            live.stop()
        functions = [
            time_function(
                "rollup: 30-day turnover (query only)",
                lambda: turnover_by_day(data, market.id),
                args.repeat,
            )
        ]
        if not args.no_raw:
            functions.append(
                time_function(
                    "raw: 30-day turnover from raw sales",
                    lambda: _turnover_from_raw(store, market.id, now),
                    max(3, args.repeat // 5),
                )
            )
    store.close()
    _print(timings, functions, lookups, args.repeat)
    within = all(t.worst <= BUDGET_MS for t in timings)
    return 0 if within and all(t.worst <= LOOKUP_TARGET_MS for t in lookups) else 1


def _settings(spec: StoreSpec, market: Path, mqtt_url: str, tmp: Path) -> Settings:
    if isinstance(spec, InfluxSpec):
        return Settings(
            markets=(market,),
            mqtt_url=mqtt_url,
            store=StoreKind.INFLUX,
            influx_url=spec.url,
            influx_database=spec.database,
            spool_dir=tmp,
        )
    return Settings(markets=(market,), mqtt_url=mqtt_url, sqlite_path=spec.path, spool_dir=tmp)


def _describe(spec: StoreSpec, server: Influxd | None) -> str:
    """The store's kind and its size on disk, where this process can see the files."""
    if isinstance(spec, SQLiteSpec):
        wal = spec.path.with_name(spec.path.name + "-wal")
        size = spec.path.stat().st_size
        wal_size = wal.stat().st_size if wal.exists() else 0
        return (
            f"sqlite {spec.path}: {(size + wal_size) / 1e9:.2f} GB "
            f"(file {size / 1e9:.2f} GB + WAL {wal_size / 1e9:.2f} GB)"
        )
    if server is None:
        return f"influx {spec.url}/{spec.database}: size unknown (not a private influxd)"
    # influxd keeps each database in a directory of its own under data/ and wal/.
    data = _du(server.workdir / "data" / spec.database)
    wal_dir = _du(server.workdir / "wal" / spec.database)
    return (
        f"influx {spec.url}/{spec.database} (influxd in {server.workdir}): "
        f"{(data + wal_dir) / 1e9:.2f} GB on disk (data {data / 1e9:.2f} GB + WAL "
        f"{wal_dir / 1e9:.2f} GB)"
    )


def _du(directory: Path) -> int:
    # Blocks, not lengths: influxd preallocates sparse 4 MB series-index files.
    return sum(path.stat().st_blocks * 512 for path in directory.rglob("*") if path.is_file())


def _latest_sale(store: Store, market: str) -> datetime:
    # Backwards a week at a time: one query over all time would read every raw sale
    # of a store without rollups.
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    for _ in range(52 * 10):
        hours = store.sales_by_hour(market, end - timedelta(days=7), end)
        if hours:
            return hours[-1].hour + timedelta(minutes=59)
        end -= timedelta(days=7)
    raise SystemExit("the store holds no sales in the last ten years")


def _a_sold_batch(store: Store, market: str, now: datetime) -> str:
    for batch in store.batches(market, now - timedelta(days=2), now):
        if store.sales_of_batch(market, batch.trace_code):
            return batch.trace_code
    raise SystemExit(f"no batch with sales in the two days before {now.isoformat()}")


def _lookups(store: Store, market: str, now: datetime, repeat: int) -> list[Timing]:
    """Trace and receipt look-ups for a batch sold at ``now`` and one sold ``OLD`` before."""
    timings = []
    for age, moment in (("last day", now), (f"{OLD.days} d ago", now - OLD)):
        try:
            code = _a_sold_batch(store, market, moment)
        except SystemExit as missing:
            print(f"{age}: {missing}; its look-ups are left out")
            continue
        timings += _time_lookups(store, market, code, age, repeat)
    return timings


def _time_lookups(store: Store, market: str, code: str, age: str, repeat: int) -> list[Timing]:
    receipt = _a_receipt(store, market, code)
    return [
        time_function(
            f"batch(market, code), {age}", lambda: _found(store.batch(market, code)), repeat
        ),
        time_function(
            f"sales_of_batch, {age}", lambda: _found(store.sales_of_batch(market, code)), repeat
        ),
        time_function(
            f"sale_by_receipt, {age}",
            lambda: _found(store.sale_by_receipt(market, receipt.scale, receipt.msg_id)),
            repeat,
        ),
    ]


def _a_receipt(store: Store, market: str, code: str) -> SaleRow:
    sales = store.sales_of_batch(market, code)
    return sales[len(sales) // 2]


def _found(answer: object) -> object:
    # A look-up that finds nothing can be fast for the wrong reason.
    if not answer:
        raise RuntimeError("a look-up of a record taken from the store found nothing")
    return answer


def _turnover_from_raw(store: Store, market: str, now: datetime) -> int:
    sales = store.sales(market, now - timedelta(days=30), now)
    return sum(sale.total_fen for sale in sales)


def _print(
    timings: Sequence[Timing],
    functions: Sequence[Timing],
    lookups: Sequence[Timing],
    repeat: int,
) -> None:
    print(f"\nDash callbacks over HTTP, {repeat} runs each (budget {BUDGET_MS:.0f} ms)")
    print(f"{'callback':<44} {'p50 ms':>8} {'worst ms':>9}")
    for timing in timings:
        flag = "" if timing.worst <= BUDGET_MS else "  OVER BUDGET"
        print(f"{timing.name:<44} {timing.p50:>8.1f} {timing.worst:>9.1f}{flag}")
    print("\nThe rollup against the raw rows it replaces (in process, no HTTP)")
    for timing in functions:
        print(f"{timing.name:<44} {timing.p50:>8.1f} {timing.worst:>9.1f}")
    print(f"\nTrace and receipt look-ups (in process, target {LOOKUP_TARGET_MS:.0f} ms)")
    for timing in lookups:
        flag = "" if timing.worst <= LOOKUP_TARGET_MS else "  OVER TARGET"
        print(f"{timing.name:<44} {timing.p50:>8.1f} {timing.worst:>9.1f}{flag}")


if __name__ == "__main__":
    sys.exit(main())
