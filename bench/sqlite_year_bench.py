"""Size and speed of the SQLite store for a 300-vendor market, extrapolated to a year.

Writes ``--days`` days of a synthetic market the way ingest does (batches of
``--batch-size`` readings, one transaction each): ~60k sales a day, the batches
they were sold from, prices, gate counters and scale heartbeats. Prints write
rates, bytes per sale (table plus indexes, from SQLite's ``dbstat``), the file
size extrapolated to 365 days, and timings of the hot queries on the result.

    .venv/bin/python -m bench.sqlite_year_bench --days 30

Query timings are warm (the file was just written, so it is in the OS cache).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from schemas.messages import (
    BatchIntake,
    GateCount,
    PriceSet,
    Promotion,
    RapidTest,
    RapidTestResult,
    Sale,
    ScaleStatus,
    expected_total_fen,
)
from storage.base import Store
from storage.interfaces.sales import SaleRow
from storage.records import Reading, to_ns
from storage.sqlite import SQLiteStore

MARKET = "nanmen"
TZ = ZoneInfo("Asia/Shanghai")
FIRST_DAY = date(2025, 1, 1)
OPENS_H, CLOSES_H = 6, 19
HEARTBEAT_S = 300
GATE_INTERVAL_S = 60
GATES = ("gate-north", "gate-south", "gate-east", "gate-west")
#: A (vendor, PLU) gets a fresh batch every this many days.
BATCH_EVERY_DAYS = 3
#: What a sale costs on disk: its row, its indexes, and its share of the intern tables.
SALE_OBJECTS = (
    "sale",
    "sale_by_source",
    "sale_by_trace",
    "sale_by_receipt",
    "sale_source",
    "sqlite_autoindex_sale_source_1",
    "product",
    "sqlite_autoindex_product_1",
    "trace_code",
    "sqlite_autoindex_trace_code_1",
)


@dataclass(frozen=True)
class Stall:
    index: int
    vendor: str
    scales: tuple[str, ...]
    screen: str
    plus: tuple[str, ...]


@dataclass
class Market:
    stalls: list[Stall]
    rng: random.Random
    msg_ids: dict[str, int] = field(default_factory=dict)

    def next_msg_id(self, device: str) -> int:
        self.msg_ids[device] = self.msg_ids.get(device, 0) + 1
        return self.msg_ids[device]


def build_market(vendors: int, seed: int) -> Market:
    rng = random.Random(seed)
    pool = [str(plu) for plu in range(10001, 10401)]
    stalls = []
    for i in range(vendors):
        vendor = f"v{i + 1:03d}"
        scales = tuple(f"nm-sc-{i + 1:03d}{suffix}" for suffix in "ab"[: rng.choice((1, 1, 2))])
        stalls.append(Stall(i, vendor, scales, f"nm-scr-{i + 1:03d}", tuple(rng.sample(pool, 25))))
    return Market(stalls, rng)


def trace_code(stall: Stall, plu_index: int, day: int) -> str:
    """Code of the batch a (vendor, PLU) sells from on ``day``: a new one every few days."""
    batch_day = day - (day + stall.index + plu_index) % BATCH_EVERY_DAYS
    stamp = (FIRST_DAY + timedelta(days=batch_day)).strftime("%Y%m%d")
    return f"SD{370700 + stall.index:06d}-{stamp}-{plu_index:02d}"


def local(day: int, seconds: float) -> datetime:
    midnight = datetime.combine(FIRST_DAY + timedelta(days=day), datetime.min.time(), TZ)
    return midnight + timedelta(seconds=round(seconds, 3))


def received(ts: datetime) -> int:
    return to_ns(ts) + 150_000_000


def sales_of_day(market: Market, day: int, count: int) -> list[Reading]:
    rng = market.rng
    span = (CLOSES_H - OPENS_H) * 3600
    moments = sorted(OPENS_H * 3600 + rng.random() * span for _ in range(count))
    readings = []
    for seconds in moments:
        stall = rng.choice(market.stalls)
        plu_index = rng.randrange(len(stall.plus))
        scale = rng.choice(stall.scales)
        weight = rng.randint(100, 5_000)
        unit_price = rng.randint(400, 8_000)
        ts = local(day, seconds)
        sale = Sale(
            msg_id=market.next_msg_id(scale),
            ts=ts,
            vendor=stall.vendor,
            plu=stall.plus[plu_index],
            weight_g=weight,
            tare_g=rng.choice((None, None, 15, 40)),
            unit_price_fen_per_kg=unit_price,
            total_fen=expected_total_fen(weight, unit_price),
            trace_code=trace_code(stall, plu_index, day),
        )
        readings.append(Reading(MARKET, scale, received(ts), sale))
    return readings


def others_of_day(market: Market, day: int, heartbeats: bool) -> list[Reading]:
    readings = [*_batches(market, day), *_prices(market, day), *_gate_counts(market, day)]
    if heartbeats:
        readings += _heartbeats(market, day)
    readings.sort(key=lambda reading: reading.received_ns)
    return readings


def _batches(market: Market, day: int) -> Iterator[Reading]:
    for stall in market.stalls:
        for plu_index, plu in enumerate(stall.plus):
            if (day + stall.index + plu_index) % BATCH_EVERY_DAYS:
                continue
            ts = local(day, 5 * 3600 + stall.index * 7 + plu_index)
            inhibition = Decimal(market.rng.randint(0, 600)).scaleb(-1)
            rapid = RapidTestResult.PASS if inhibition < 50 else RapidTestResult.FAIL
            batch = BatchIntake(
                msg_id=market.next_msg_id("nm-in-01"),
                ts=ts,
                trace_code=trace_code(stall, plu_index, day),
                vendor=stall.vendor,
                plu=plu,
                origin="山东寿光",
                supplier="寿光农产品物流园 批发23档",
                quantity_g=market.rng.randint(20_000, 500_000),
                certificate_no=f"HG{370700 + stall.index}-{day:04d}-{plu_index:02d}",
                rapid_test=RapidTest(result=rapid, inhibition_pct=inhibition),
            )
            yield Reading(MARKET, "nm-in-01", received(ts), batch)


def _prices(market: Market, day: int) -> Iterator[Reading]:
    for stall in market.stalls:
        for plu_index, plu in enumerate(stall.plus):
            base = 1_000 + 37 * plu_index + stall.index
            morning = local(day, OPENS_H * 3600 + plu_index)
            yield _price(market, stall, plu, morning, base + day % 50, None)
            if market.rng.random() < 0.2:
                noon = local(day, 12 * 3600 + plu_index)
                promo = Promotion(
                    price_fen_per_kg=base - 100, text="午市特价", until=local(day, 14 * 3600)
                )
                yield _price(market, stall, plu, noon, base, promo)


def _price(
    market: Market, stall: Stall, plu: str, ts: datetime, fen: int, promo: Promotion | None
) -> Reading:
    message = PriceSet(
        msg_id=market.next_msg_id(stall.screen),
        ts=ts,
        vendor=stall.vendor,
        plu=plu,
        price_fen_per_kg=fen,
        promo=promo,
    )
    return Reading(MARKET, stall.screen, received(ts), message)


def _gate_counts(market: Market, day: int) -> Iterator[Reading]:
    for gate_index, gate in enumerate(GATES):
        total = day * 5_000
        for step in range((CLOSES_H - OPENS_H + 1) * 3600 // GATE_INTERVAL_S):
            total += market.rng.randint(0, 12)
            ts = local(day, (OPENS_H - 0.5) * 3600 + step * GATE_INTERVAL_S + gate_index)
            count = GateCount(
                msg_id=market.next_msg_id(gate), ts=ts, in_total=total, out_total=total * 9 // 10
            )
            yield Reading(MARKET, gate, received(ts), count)


def _heartbeats(market: Market, day: int) -> Iterator[Reading]:
    for stall in market.stalls:
        for scale in stall.scales:
            for step in range((CLOSES_H - OPENS_H) * 3600 // HEARTBEAT_S):
                ts = local(day, OPENS_H * 3600 + step * HEARTBEAT_S + stall.index % 60)
                status = ScaleStatus(
                    msg_id=market.next_msg_id(scale),
                    ts=ts,
                    online=True,
                    zero_ok=True,
                    seal_intact=True,
                    calibration_due=date(2026, 3, 31),
                )
                yield Reading(MARKET, scale, received(ts), status)


def write_batches(store: SQLiteStore, readings: Sequence[Reading], batch_size: int) -> float:
    """Seconds spent in ``store.write`` for all readings."""
    elapsed = 0.0
    for first in range(0, len(readings), batch_size):
        chunk = readings[first : first + batch_size]
        started = time.perf_counter()
        refused = store.write(chunk)
        elapsed += time.perf_counter() - started
        if refused:
            raise RuntimeError(
                f"the store refused {len(refused)} synthetic readings: {refused[0].reason}"
            )
    return elapsed


def object_sizes(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as conn:
        try:
            rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
        except sqlite3.OperationalError:
            return {}  # SQLite built without DBSTAT
    return {name: int(size) for name, size in rows}


def timed(call: Callable[[], object], repeat: int) -> tuple[float, int]:
    """Median milliseconds of ``call`` and the size of its last result."""
    times = []
    result: object = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - started) * 1000)
    size = len(result) if isinstance(result, list | dict) else int(result is not None)
    return statistics.median(times), size


def query_timings(
    store: SQLiteStore, market: Market, days: int, repeat: int
) -> list[tuple[str, float, int]]:
    rng = random.Random(7)
    last_day = days - 1
    stall = rng.choice(market.stalls)
    day_start, day_end = local(last_day, 0), local(last_day + 1, 0)
    month_start = local(max(0, days - 30), 0)
    hour_start, hour_end = local(last_day, 10 * 3600), local(last_day, 11 * 3600)
    sample = sale_from_a_known_batch(store, hour_start, hour_end)
    queries: list[tuple[str, Callable[[], object]]] = [
        (
            "sales of a vendor, one day",
            lambda: store.sales(MARKET, day_start, day_end, vendor=stall.vendor),
        ),
        (
            "sales of a vendor, 30 days",
            lambda: store.sales(MARKET, month_start, day_end, vendor=stall.vendor),
        ),
        (
            "sales of a product, one day",
            lambda: store.sales(MARKET, day_start, day_end, plu=stall.plus[0]),
        ),
        ("sales of the market, one hour", lambda: store.sales(MARKET, hour_start, hour_end)),
        ("sales_of_batch", lambda: store.sales_of_batch(MARKET, sample.trace_code)),
        ("batch by trace code", lambda: store.batch(MARKET, sample.trace_code)),
        ("sale_by_receipt", lambda: store.sale_by_receipt(MARKET, sample.scale, sample.msg_id)),
        ("latest_prices", lambda: store.latest_prices(MARKET)),
        ("scale_status", lambda: store.scale_status(MARKET)),
        ("footfall_hourly, one day", lambda: store.footfall_hourly(MARKET, day_start, day_end)),
    ]
    return [
        (name, *timed(call, repeat)) for name, call in [*queries, *dashboard_queries(store, days)]
    ]


def _summaries(
    store: Store, label: str, start: datetime, end: datetime
) -> list[tuple[str, Callable[[], object]]]:
    return [
        (f"sales_summary, {label}", lambda: store.sales_summary(MARKET, start, end)),
        (f"sales_by_hour, {label}", lambda: store.sales_by_hour(MARKET, start, end)),
    ]


def dashboard_queries(store: Store, days: int) -> list[tuple[str, Callable[[], object]]]:
    """What a manager dashboard asks: summaries over long ranges and devices' last readings.

    Ranges end mid-afternoon, off the hour, so both edge hours come from raw rows.
    """
    end = local(days - 1, 15 * 3600 + 1234.5)
    queries: list[tuple[str, Callable[[], object]]] = []
    for label, span in (("one day", 1), ("30 days", 30), ("365 days", 365)):
        if span <= days:
            queries += _summaries(store, label, end - timedelta(days=span), end)
    # The overview's batch alerts: a week of batches with their sales so far.
    week = max(end - timedelta(days=7), local(0, 0))
    week_label = f"{min(days, 7)} days"
    queries += [
        (
            f"batch_balances, {week_label}",
            lambda: store.batch_balances(MARKET, week, end),
        ),
        (
            f"batch_balances, {week_label} (generic)",
            lambda: Store.batch_balances(store, MARKET, week, end),
        ),
    ]
    eight_weeks = max(end - timedelta(weeks=8), local(0, 0))
    queries += [
        ("footfall_hourly, 8 weeks", lambda: store.footfall_hourly(MARKET, eight_weeks, end)),
        (
            "device_last_seen, past day",
            lambda: store.device_last_seen(MARKET, end - timedelta(days=1)),
        ),
        (
            "device_last_seen, past week",
            lambda: store.device_last_seen(MARKET, end - timedelta(days=7)),
        ),
    ]
    return queries


def sale_from_a_known_batch(store: SQLiteStore, start: datetime, end: datetime) -> SaleRow:
    """A sale whose batch was written (batches from before the first day were not)."""
    for sale in store.sales(MARKET, start, end):
        if store.batch(MARKET, sale.trace_code) is not None:
            return sale
    raise RuntimeError("no sale in the sample hour comes from a written batch; write more days")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--sales-per-day", type=int, default=60_000)
    parser.add_argument("--vendors", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--no-heartbeats", action="store_true", help="leave out scale heartbeats")
    parser.add_argument("--repeat", type=int, default=5, help="runs per query timing")
    parser.add_argument("--path", type=Path, help="database file (default: a temporary directory)")
    parser.add_argument(
        "--queries-only",
        action="store_true",
        help="time the dashboard queries on the existing --path, which holds --days days",
    )
    args = parser.parse_args(argv)
    if args.queries_only:
        return time_existing(args.path, args.days, args.repeat)

    workdir = None if args.path else tempfile.TemporaryDirectory(prefix="stallwatch-bench-")
    path = args.path or Path(workdir.name) / "store.db"  # type: ignore[union-attr]
    market = build_market(args.vendors, seed=1)
    sale_seconds = other_seconds = 0.0
    sale_rows = other_rows = 0
    try:
        store = SQLiteStore(path)
        with store:
            for day in range(args.days):
                sales = sales_of_day(market, day, args.sales_per_day)
                others = others_of_day(market, day, heartbeats=not args.no_heartbeats)
                day_sale_seconds = write_batches(store, sales, args.batch_size)
                other_seconds += write_batches(store, others, args.batch_size)
                sale_seconds += day_sale_seconds
                sale_rows += len(sales)
                other_rows += len(others)
                print(
                    f"day {day + 1:3d}: {len(sales) / day_sale_seconds:8.0f} sales/s",
                    file=sys.stderr,
                )
            timings = query_timings(store, market, args.days, args.repeat)
        report(path, args.days, sale_rows, sale_seconds, other_rows, other_seconds, timings)
    finally:
        if workdir is not None:
            workdir.cleanup()
    return 0


def time_existing(path: Path | None, days: int, repeat: int) -> int:
    """Open (and so migrate) an existing file, then time the dashboard queries on it."""
    if path is None or not path.exists():
        raise SystemExit("--queries-only needs the --path of an existing database")
    started = time.perf_counter()
    with SQLiteStore(path) as store:
        print(f"opening (with any migration): {time.perf_counter() - started:.1f} s")
        print("dashboard queries (median, warm cache):")
        for name, call in dashboard_queries(store, days):
            millis, rows = timed(call, repeat)
            print(f"    {name:32s} {millis:9.2f} ms  ({rows} rows)")
    return 0


def report(
    path: Path,
    days: int,
    sale_rows: int,
    sale_seconds: float,
    other_rows: int,
    other_seconds: float,
    timings: list[tuple[str, float, int]],
) -> None:
    sizes = object_sizes(path)
    total = path.stat().st_size
    sale_bytes = sum(sizes.get(name, 0) for name in SALE_OBJECTS)
    print(f"days written:            {days} ({sale_rows:,} sales, {other_rows:,} other readings)")
    print(f"sale writes:             {sale_rows / sale_seconds:,.0f} rows/s")
    print(f"other writes:            {other_rows / other_seconds:,.0f} rows/s")
    print(f"file size:               {total / 1e6:,.1f} MB")
    if sale_bytes:
        per_sale = sale_bytes / sale_rows
        print(f"bytes per sale row:      {per_sale:.1f} (row, indexes, series, trace codes)")
        for name in sorted(sizes, key=sizes.__getitem__, reverse=True):
            print(f"    {name:34s} {sizes[name] / 1e6:9.1f} MB")
    print(f"bytes per day (file):    {total / days / 1e6:,.1f} MB")
    print(f"extrapolated, 365 days:  {total / days * 365 / 1e9:,.2f} GB (all readings)")
    if sale_bytes:
        print(f"    of which sales:      {sale_bytes / days * 365 / 1e9:,.2f} GB")
    print("hot queries (median, warm cache):")
    for name, millis, rows in timings:
        print(f"    {name:32s} {millis:9.2f} ms  ({rows} rows)")


if __name__ == "__main__":
    raise SystemExit(main())
