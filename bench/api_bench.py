"""HTTP API benchmark: the stall-screen price endpoint next to a hello-world on the same stack.

Run: ``.venv/bin/python -m bench.api_bench [--seconds 10] [--connections 50]``.

Everything runs on loopback, each part in its own process:

* a private Mosquitto, and a SQLite store holding one simulated market day of the
  40-vendor example market (``examples/markets/nanmen.toml``), so the live view
  starts with every vendor's prices loaded;
* two API servers, uvicorn with one worker and the same configuration, pinned to
  CPU 0 with ``taskset`` when it is available:
  - **bare**: a FastAPI app with nothing but ``GET /hello`` (FastAPI's tutorial
    hello world, ``async def`` returning a dict);
  - **stallwatch**: the web app exactly as ``stallwatch serve`` builds it
    (``stallwatch.webapp.create_web_app``: all API routers, metrics middleware, error
    handlers, a running live view, the dashboard mounted at ``/dashboard``) with the
    same ``/hello`` route added;
* the load generators, pinned to CPU 1: ``wrk`` (Debian's) for the saturation runs,
  and for the fixed-rate run an open-loop asyncio HTTP/1.1 client in this module
  (``wrk2`` is not in Debian and ``wrk`` cannot pace). The fixed-rate client measures
  each request from the moment it was *scheduled*, so a stalled server cannot hide
  queueing (no coordinated omission).

Contenders, each for ``--seconds`` after a short warm-up: bare hello, hello inside
the stallwatch app, the stall screen answered in full (200), and the stall screen
revalidated with ``If-None-Match`` (304, what polling screens get while nothing
changes). Stall-screen requests cycle over all 40 stalls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
MARKET_FILE = REPO / "examples" / "markets" / "nanmen.toml"
MARKET = "nanmen"
SCREEN_PATH = "/api/v1/markets/{market}/stalls/{stall}/screen"
HELLO_PATH = "/hello"
SERVER_CPU = "0"
LOADGEN_CPU = "1"

WRK_SCRIPT = """
local paths = {}
local i = 0
init = function(args)
  for _, p in ipairs(args) do table.insert(paths, p) end
end
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


# -- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    max_ms: float | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def _print_table(title: str, results: Sequence[Result], baseline: Result) -> None:
    print(f"\n{title}")
    print(f"{'contender':<44} {'req/s':>9} {'× bare':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for r in results:
        ratio = r.rate / baseline.rate
        print(
            f"{r.name:<44} {r.rate:>9,.0f} {ratio:>7.2f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}"
            f" {r.errors:>7}"
        )


# -- the store and the servers ------------------------------------------------------------


def fill_store(db: Path) -> int:
    """Yesterday as simulated for the example market: prices, sales, statuses; returns prices."""
    from schemas.registry import load_market
    from simulators.history import generate_history
    from storage.sqlite import SQLiteStore

    market = load_market(MARKET_FILE)
    with SQLiteStore(db) as store:
        generate_history(market, store, start_date=date.today() - timedelta(days=1), days=1, seed=7)
        return len(store.latest_prices(MARKET))


def _pinned(cpu: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if shutil.which("taskset") else argv


@contextmanager
def api_server(kind: str, port: int, db: Path, broker_url: str, workdir: Path) -> Iterator[str]:
    argv = [sys.executable, "-m", "bench.api_bench", "serve", kind, str(port)]
    argv += ["--db", str(db), "--broker", broker_url, "--workdir", str(workdir)]
    proc = subprocess.Popen(_pinned(SERVER_CPU, argv), cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, proc)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_until_serving(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the {url} server exited with {proc.returncode}")
        try:
            if httpx.get(url + HELLO_PATH, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.05)
    raise RuntimeError(f"the server at {url} did not start within {timeout}s")


def serve(kind: str, port: int, db: Path, broker_url: str, workdir: Path) -> None:
    """The server process: one uvicorn worker, the same configuration for both kinds."""
    import uvicorn
    from fastapi import FastAPI

    from api.server import proxy_options

    async def hello() -> dict[str, str]:
        return {"message": "Hello World"}

    live = None
    if kind == "bare":
        app = FastAPI()
    else:
        app, live = _stallwatch_app(db, broker_url, workdir)
    app.get(HELLO_PATH)(hello)
    # As ``stallwatch serve`` configures it (api.server.run_server), minus the access log.
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        workers=1,
        server_header=False,
        access_log=False,
        log_level="warning",
        **proxy_options(()),
    )
    try:
        uvicorn.Server(config).run()
    finally:
        if live is not None:
            live.stop()


def _stallwatch_app(db: Path, broker_url: str, workdir: Path) -> tuple[Any, Any]:
    from marketview.live_mqtt import LiveView
    from schemas.registry import Registry
    from stallwatch.options import live_mqtt_options
    from stallwatch.settings import Settings
    from stallwatch.webapp import create_web_app
    from storage.sqlite import SQLiteStore

    settings = Settings(
        markets=(MARKET_FILE,), mqtt_url=broker_url, sqlite_path=db, spool_dir=workdir / "spool"
    )
    registry = Registry.load(settings.markets)
    store = SQLiteStore(db)
    live = LiveView(registry, store, live_mqtt_options(settings))
    live.start()
    if not live.synced:
        raise RuntimeError("the live view could not load the store")
    app = create_web_app(settings=settings, registry=registry, store=store, live=live)
    return app, live


# -- saturation: wrk -------------------------------------------------------------------


def run_wrk(
    name: str,
    url: str,
    paths: Sequence[str],
    *,
    seconds: int,
    connections: int,
    script: Path,
    headers: Sequence[str] = (),
) -> Result:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script)]
    for header in headers:
        argv += ["-H", header]
    argv += [url, "--", *paths]
    out = subprocess.run(_pinned(LOADGEN_CPU, argv), capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    data = json.loads(line.removeprefix("RESULT "))
    return Result(
        name,
        data["requests"],
        data["duration_us"] / 1e6,
        data["p50_us"] / 1000,
        data["p99_us"] / 1000,
        data["errors"],
    )


# -- fixed rate: an open-loop asyncio HTTP/1.1 client ----------------------------------------


def run_fixed_rate(
    name: str,
    port: int,
    paths: Sequence[str],
    *,
    rate: int,
    seconds: int,
    headers: Sequence[str] = (),
) -> Result:
    argv = [sys.executable, "-m", "bench.api_bench", "load", str(port), str(rate), str(seconds)]
    for header in headers:
        argv += ["--header", header]
    argv += ["--", *paths]
    out = subprocess.run(_pinned(LOADGEN_CPU, argv), capture_output=True, text=True, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return Result(
        name,
        data["completed"],
        data["seconds"],
        data["p50_ms"],
        data["p99_ms"],
        data["errors"],
        data["max_ms"],
    )


def load(port: int, rate: int, seconds: int, paths: Sequence[str], headers: Sequence[str]) -> None:
    """The load generator process: prints one JSON line of results."""
    extra = "".join(f"{h}\r\n" for h in headers)
    requests = [
        f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode() for p in paths
    ]
    latencies_ns, errors, elapsed_ns = asyncio.run(_fixed_rate(port, requests, rate, seconds))
    latencies_ns.sort()
    print(
        json.dumps(
            {
                "completed": len(latencies_ns),
                "seconds": elapsed_ns / 1e9,
                "errors": errors,
                "p50_ms": _percentile(latencies_ns, 50) / 1e6,
                "p99_ms": _percentile(latencies_ns, 99) / 1e6,
                "max_ms": latencies_ns[-1] / 1e6,
            }
        )
    )


def _percentile(ordered: Sequence[int], pct: int) -> int:
    return ordered[min(len(ordered) - 1, len(ordered) * pct // 100)]


async def _fixed_rate(
    port: int, requests: Sequence[bytes], rate: int, seconds: int, connections: int = 32
) -> tuple[list[int], int, int]:
    """Latencies (ns), error responses, and ns from the first request due to the last reply."""
    queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
    latencies: list[int] = []
    errors = 0

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (item := await queue.get()) is not None:
            due_ns, request = item
            writer.write(request)
            status = await _read_response(reader)
            # From when the request was due, not when it went out: queueing counts.
            latencies.append(time.perf_counter_ns() - due_ns)
            errors += status >= 400
        writer.close()
        await writer.wait_closed()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    interval_ns = 1_000_000_000 // rate
    start_ns = time.perf_counter_ns() + 100_000_000
    for i in range(rate * seconds):
        due_ns = start_ns + i * interval_ns
        ahead_ns = due_ns - time.perf_counter_ns()
        if ahead_ns > 0:
            await asyncio.sleep(ahead_ns / 1e9)
        queue.put_nowait((due_ns, requests[i % len(requests)]))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return latencies, errors, time.perf_counter_ns() - start_ns


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for header in head.split(b"\r\n")[1:]:
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


# -- the run ---------------------------------------------------------------------------


def bench(seconds: int, connections: int, rate: int) -> None:
    from stallwatch.localservices import free_port, mosquitto

    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    with tempfile.TemporaryDirectory(prefix="api-bench-") as tmp_name:
        tmp = Path(tmp_name)
        script = tmp / "paths.lua"
        script.write_text(WRK_SCRIPT)
        db = tmp / "store.db"
        print(
            "load average (1/5/15 min) at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
        )
        print(f"loaded {fill_store(db)} current prices of 40 vendors into {db.name}")
        broker = mosquitto(tmp / "mosquitto", persistence=False)
        with (
            broker,
            api_server("bare", free_port(), db, broker.url, tmp) as bare_url,
            api_server("stallwatch", free_port(), db, broker.url, tmp) as app_url,
        ):
            _measure(bare_url, app_url, script, seconds=seconds, connections=connections, rate=rate)
            _measure_body(app_url)
        _describe_machine(connections)


def _measure(
    bare_url: str, app_url: str, script: Path, *, seconds: int, connections: int, rate: int
) -> None:
    from schemas.registry import load_market

    stalls = [v.stall for v in load_market(MARKET_FILE).spec.vendors]
    screens = [SCREEN_PATH.format(market=MARKET, stall=s) for s in stalls]
    # One ETag serves every stall: it names the market's view state (see marketview.live.ViewState).
    etag = httpx.get(app_url + screens[0]).headers["etag"]
    contenders: list[tuple[str, str, list[str], list[str]]] = [
        ("hello world, bare FastAPI app", bare_url, [HELLO_PATH], []),
        ("hello world, inside the stallwatch app", app_url, [HELLO_PATH], []),
        ("stall screen, 200 (full body)", app_url, screens, []),
        ("stall screen, 304 (If-None-Match)", app_url, screens, [f"If-None-Match: {etag}"]),
    ]
    saturation = []
    for name, url, paths, headers in contenders:
        for run_seconds in (2, seconds):  # the first run warms up and is thrown away
            result = run_wrk(
                name,
                url,
                paths,
                seconds=run_seconds,
                connections=connections,
                script=script,
                headers=headers,
            )
        saturation.append(result)
    _print_table(
        f"Saturation: wrk -t1 -c{connections}, {seconds} s each", saturation, saturation[0]
    )

    paced = [
        run_fixed_rate(
            f"{name} @ {rate}/s", _port(url), paths, rate=rate, seconds=seconds, headers=headers
        )
        for name, url, paths, headers in contenders
    ]
    _print_table(f"Fixed rate: {rate} req/s for {seconds} s, open loop", paced, paced[0])
    for r in paced:
        print(f"  {r.name}: {r.requests} done in {r.seconds:.1f} s, max {r.max_ms:.1f} ms")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _measure_body(app_url: str) -> None:
    body = httpx.get(app_url + SCREEN_PATH.format(market=MARKET, stall="A01")).content
    board = httpx.get(app_url + f"/api/v1/markets/{MARKET}/prices").content
    print(f"\nbody sizes: stall screen A01 {len(body)} bytes, market board {len(board)} bytes")


def _describe_machine(connections: int) -> None:
    pinned = "server on CPU 0, load generator on CPU 1" if shutil.which("taskset") else "unpinned"
    print(
        f"machine: {os.cpu_count()} CPUs ({pinned}); Python {sys.version.split()[0]};"
        f" uvicorn 1 worker, asyncio loop, h11; wrk 1 thread, {connections} connections"
    )
    _print_load("at the end")


def _print_load(when: str) -> None:
    # Other work on the machine shows up as latency outliers; say how busy it was.
    print("load average (1/5/15 min) {}: {:.2f} {:.2f} {:.2f}".format(when, *os.getloadavg()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("--seconds", type=int, default=10, help="per contender")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--rate", type=int, default=1000, help="fixed-rate run, req/s")
    serve_cmd = sub.add_parser("serve", help="(internal) run one API server")
    serve_cmd.add_argument("kind", choices=["bare", "stallwatch"])
    serve_cmd.add_argument("port", type=int)
    serve_cmd.add_argument("--db", type=Path, required=True)
    serve_cmd.add_argument("--broker", required=True)
    serve_cmd.add_argument("--workdir", type=Path, required=True)
    load_cmd = sub.add_parser("load", help="(internal) fixed-rate load generator")
    load_cmd.add_argument("port", type=int)
    load_cmd.add_argument("rate", type=int)
    load_cmd.add_argument("seconds", type=int)
    load_cmd.add_argument("--header", action="append", default=[])
    load_cmd.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.kind, args.port, args.db, args.broker, args.workdir)
    elif args.command == "load":
        load(args.port, args.rate, args.seconds, args.paths, args.header)
    else:
        bench(args.seconds, args.connections, args.rate)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
