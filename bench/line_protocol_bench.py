"""Line protocol cost per point: stallwatch's builders vs influxdb-client's ``Point``.

Run from the repository root::

    .venv/bin/python -m bench.line_protocol_bench [--points 200000] [--repeat 3]

Every variant encodes the same sale readings (same tags, fields and ns
timestamps) and the outputs are checked to be identical line protocol first,
so the figures compare equal work. Best of ``--repeat`` runs is reported.
Also shown: what the store adds per point to send them (join, UTF-8, gzip).
"""

from __future__ import annotations

import argparse
import gzip
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import influxdb_client

from schemas.messages import Sale, expected_total_fen
from storage.influx.lineprotocol import FieldValue, build_line, reading_to_line
from storage.records import Reading, point_time_ns

T0 = datetime(2025, 5, 12, 0, 0, tzinfo=UTC)
#: influxdb-client's Point is unannotated; used through Any rather than per-call ignores.
_client: Any = influxdb_client


def make_readings(count: int) -> list[Reading]:
    readings = []
    for n in range(count):
        weight = 200 + n % 3000
        message = Sale(
            msg_id=n,
            ts=T0 + timedelta(milliseconds=n * 7),
            vendor=f"v{n % 40:03d}",
            plu=f"{1000 + n % 25}",
            weight_g=weight,
            tare_g=12 if n % 4 == 0 else None,
            unit_price_fen_per_kg=1_160,
            total_fen=expected_total_fen(weight, 1_160),
            trace_code=f"SD370782-20250512-{n % 500:03d}",
        )
        readings.append(
            Reading("nanmen", f"sc-{n % 40:03d}", 1_747_000_000_000_000_000 + n, message)
        )
    return readings


def _tags_and_fields(reading: Reading) -> tuple[dict[str, str], dict[str, FieldValue]]:
    m = reading.message
    assert isinstance(m, Sale)
    tags = {"market": reading.market, "scale": reading.device, "vendor": m.vendor, "plu": m.plu}
    fields: dict[str, FieldValue] = {"msg_id": m.msg_id, "weight_g": m.weight_g}
    if m.tare_g is not None:
        fields["tare_g"] = m.tare_g
    fields |= {
        "unit_price_fen_per_kg": m.unit_price_fen_per_kg,
        "total_fen": m.total_fen,
        "trace_code": m.trace_code,
        "received_ns": reading.received_ns,
    }
    return tags, fields


def schema_lines(readings: Sequence[Reading]) -> list[str]:
    return [reading_to_line(r) for r in readings]


def generic_lines(readings: Sequence[Reading]) -> list[str]:
    lines = []
    for r in readings:
        tags, fields = _tags_and_fields(r)
        lines.append(build_line("sale", tags, fields, point_time_ns(r)))
    return lines


def client_point_lines(readings: Sequence[Reading]) -> list[str]:
    lines = []
    for r in readings:
        tags, fields = _tags_and_fields(r)
        point = _client.Point("sale")
        for key, tag in tags.items():
            point.tag(key, tag)
        for key, field in fields.items():
            point.field(key, field)
        point.time(point_time_ns(r), _client.WritePrecision.NS)
        lines.append(point.to_line_protocol())
    return lines


def best_seconds(work: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def _fields_of(line: str) -> tuple[str, frozenset[str], str]:
    """Series key, field set and timestamp: Point orders tags and fields its own way."""
    head, fields, stamp = line.rsplit(" ", 2)
    measurement, *tags = head.split(",")
    return ",".join([measurement, *sorted(tags)]), frozenset(fields.split(",")), stamp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    readings = make_readings(args.points)
    sample = readings[:1000]
    ours = schema_lines(sample)
    assert ours == generic_lines(sample)
    assert [_fields_of(x) for x in ours] == [_fields_of(x) for x in client_point_lines(sample)]

    n = len(readings)
    builders = {
        "reading_to_line (schema f-strings)": schema_lines,
        "build_line (generic, from dicts)": generic_lines,
        "influxdb_client.Point": client_point_lines,
    }
    timed = {
        name: best_seconds(partial(build, readings), args.repeat)
        for name, build in builders.items()
    }
    lines = schema_lines(readings)
    send_prep = best_seconds(
        lambda: gzip.compress("\n".join(lines).encode(), compresslevel=1, mtime=0), args.repeat
    )

    point = timed["influxdb_client.Point"]
    print(f"{n} sale points, best of {args.repeat}")
    for name, seconds in timed.items():
        print(
            f"  {name:<36} {seconds / n * 1e6:6.2f} µs/point   Point/this = {point / seconds:4.1f}"
        )
    print(f"  {'then join + UTF-8 + gzip level 1':<36} {send_prep / n * 1e6:6.2f} µs/point")


if __name__ == "__main__":
    main()
