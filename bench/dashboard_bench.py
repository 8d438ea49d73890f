"""Every dashboard callback, timed over HTTP on a year of a 300-vendor market.

The store is made once with the simulator's fast-forward mode (~20 min, ~5 GB)::

    .venv/bin/stallwatch simulate history --market examples/markets/nanmen.toml \\
        --vendors 300 --days 365 --store sqlite:var/year/year.db \\
        --write-market var/year/nanmen300.toml

then::

    .venv/bin/python -m bench.dashboard_bench --db var/year/year.db \\
        --market var/year/nanmen300.toml

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

The clock the dashboard uses is the end of the stored year (``--now``, default:
the latest sale in the store), so "today" is a full market day.
"""

from __future__ import annotations

import argparse
import json
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
from stallwatch.localservices import mosquitto
from stallwatch.options import live_mqtt_options
from stallwatch.settings import Settings
from storage.sqlite import SQLiteStore

BUDGET_MS = 300.0


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--market", type=Path, required=True, help="the (scaled) market file")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--lang", choices=["zh", "en"], default="zh")
    args = parser.parse_args(argv)

    from dashboard.queries import DashboardData, turnover_by_day
    from stallwatch.webapp import create_web_app

    registry = Registry.load([args.market])
    market = next(iter(registry))
    store = SQLiteStore(args.db)
    now = _latest_sale(store, market.id)
    print(
        f"store {args.db} ({args.db.stat().st_size / 1e9:.2f} GB); "
        f"dashboard clock {now.isoformat()}"
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        mosquitto(Path(tmp) / "mq", persistence=False) as broker,
    ):
        settings = Settings(
            markets=(args.market,), mqtt_url=broker.url, sqlite_path=args.db, spool_dir=Path(tmp)
        )
        started = time.perf_counter()
        live = LiveView(registry, store, live_mqtt_options(settings))
        live.start()
        print(
            f"live view loaded {len(live.prices(market.id)):,} prices "
            f"in {time.perf_counter() - started:.1f} s"
        )
        app = create_web_app(
            settings=settings, registry=registry, store=store, live=live, now=lambda: now
        )
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
                ServerThread(app) as server,
                httpx.Client(base_url=server.url, timeout=60, transport=transport) as client,
            ):
                timings = [
                    time_call(client, call, args.repeat)
                    for call in calls(market.id, args.lang, batch, plu, day)
                ]
        finally:
            live.stop()
        raw = time_function(
            "raw: 30-day turnover from raw sales",
            lambda: _turnover_from_raw(store, market.id, now),
            max(3, args.repeat // 5),
        )
        rollup = time_function(
            "rollup: 30-day turnover (query only)",
            lambda: turnover_by_day(data, market.id),
            args.repeat,
        )
    store.close()
    _print(timings, [rollup, raw], args.repeat)
    return 0 if all(t.worst <= BUDGET_MS for t in timings) else 1


def _latest_sale(store: SQLiteStore, market: str) -> datetime:
    hours = store.sales_by_hour(
        market, datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=400)
    )
    if not hours:
        raise SystemExit("the store holds no sales")
    return hours[-1].hour + timedelta(minutes=59)


def _a_sold_batch(store: SQLiteStore, market: str, now: datetime) -> str:
    for batch in store.batches(market, now - timedelta(days=2), now):
        if store.sales_of_batch(market, batch.trace_code):
            return batch.trace_code
    raise SystemExit("no batch with sales in the last two days")


def _turnover_from_raw(store: SQLiteStore, market: str, now: datetime) -> int:
    sales = store.sales(market, now - timedelta(days=30), now)
    return sum(sale.total_fen for sale in sales)


def _print(timings: Sequence[Timing], functions: Sequence[Timing], repeat: int) -> None:
    print(f"\nDash callbacks over HTTP, {repeat} runs each (budget {BUDGET_MS:.0f} ms)")
    print(f"{'callback':<44} {'p50 ms':>8} {'worst ms':>9}")
    for timing in timings:
        flag = "" if timing.worst <= BUDGET_MS else "  OVER BUDGET"
        print(f"{timing.name:<44} {timing.p50:>8.1f} {timing.worst:>9.1f}{flag}")
    print("\nThe rollup against the raw rows it replaces (in process, no HTTP)")
    for timing in functions:
        print(f"{timing.name:<44} {timing.p50:>8.1f} {timing.worst:>9.1f}")


if __name__ == "__main__":
    sys.exit(main())
