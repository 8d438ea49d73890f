"""What the store's checks cost a write: ``InfluxStore.write`` next to a bare write.

Both contenders write the ingest benchmark's load (``simulators.load``: sales of
the example market, validated by the edge check) in batches of ``--batch``
readings into a fresh database of one private ``influxd``:

1. **bare line protocol**: each batch's lines as :func:`reading_to_line` builds
   them, POSTed with :class:`InfluxClient` and nothing else: what a write costs
   without any check;
2. **InfluxStore.write**: the store as ingest calls it, with the msg_id ledger
   (lookup and its own points), each sale's trace status and the look for
   batches its sales name (the load's trace codes are never registered: the
   worst case, a look every write).

It prints readings/s for both, the ratio, and per contender the time spent
waiting on InfluxDB's answers, so what is Python and what is the server shows.

    .venv/bin/python -m bench.store_write_bench [-n 50000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from ingest.validate import Validator
from schemas.registry import Registry
from simulators.load import load_messages
from stallwatch.localservices import influxd
from storage.influx.client import InfluxClient
from storage.influx.lineprotocol import reading_to_line
from storage.influx.store import InfluxStore
from storage.records import Reading

MARKET_FILE = Path("examples/markets/nanmen.toml")


@dataclass(frozen=True)
class Result:
    name: str
    readings: int
    seconds: float
    waiting: float

    @property
    def rate(self) -> float:
        return self.readings / self.seconds


def load(n: int) -> list[Reading]:
    registry = Registry.load([MARKET_FILE])
    validator = Validator(registry)
    received = time.time_ns()
    readings = []
    for message in load_messages(registry.markets["nanmen"], n):
        checked = validator.check(message.topic, message.payload, received)
        if not isinstance(checked, Reading):
            raise SystemExit(f"the load generator made an invalid message: {checked.reason}")
        readings.append(checked)
    return readings


class TimedTransport(httpx.HTTPTransport):
    """An HTTP transport that adds up the time its requests wait for InfluxDB."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0.0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = super().handle_request(request)
            response.read()  # the answer's body is part of the wait
            return response
        finally:
            self.waiting += time.perf_counter() - started


def timed(
    name: str,
    readings: Sequence[Reading],
    write: Callable[[Sequence[Reading]], object],
    batch: int,
    transport: TimedTransport,
) -> Result:
    started = time.perf_counter()
    for start in range(0, len(readings), batch):
        write(readings[start : start + batch])
    return Result(name, len(readings), time.perf_counter() - started, transport.waiting)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=50_000, help="readings (default 50000)")
    parser.add_argument("--batch", type=int, default=5_000, help="readings per write")
    args = parser.parse_args(argv)
    readings = load(args.n)
    with tempfile.TemporaryDirectory() as work, influxd(Path(work) / "influxd") as server:
        bare_transport = TimedTransport()
        with InfluxClient(server.url, transport=bare_transport) as client:
            client.create_database("bare")

            def bare(chunk: Sequence[Reading]) -> None:
                client.write("bare", [reading_to_line(reading) for reading in chunk])

            baseline = timed("bare line protocol", readings, bare, args.batch, bare_transport)
        store_transport = TimedTransport()
        with InfluxStore(
            server.url, "store", create_database=True, transport=store_transport
        ) as store:
            checked = timed("InfluxStore.write", readings, store.write, args.batch, store_transport)
    print(
        f"\n{'contender':<24}{'readings':>10}{'seconds':>9}{'readings/s':>12}"
        f"{'waiting on InfluxDB':>21}{'vs bare':>9}"
    )
    for result in (baseline, checked):
        print(
            f"{result.name:<24}{result.readings:>10}{result.seconds:>9.2f}{result.rate:>12,.0f}"
            f"{result.waiting:>19.2f} s{result.rate / baseline.rate:>9.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
