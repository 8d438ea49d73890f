"""Ingest benchmark: end-to-end msgs/s into InfluxDB next to the raw paho-mqtt ceiling.

Run: ``make bench`` or ``.venv/bin/python -m bench.ingest_bench [-n 200000]``.

Both contenders drain the *same kind of backlog* from the same private
Mosquitto in the same run, so the publisher's cost is not on the clock:

1. a persistent session is created for the consumer and left offline;
2. N QoS 1 sale messages are published and queued by the broker for it;
3. the consumer connects and the clock runs until the last message is done:
   * **raw paho**: a bare paho-mqtt subscriber (auto-ack, no work per message),
     the physical ceiling of a Python consumer here;
   * **stallwatch ingest**: the real ``stallwatch ingest`` process, durable
     (spool fsync before PUBACK), validating, writing to a private ``influxd``;
     done when InfluxDB holds all N points.

It prints msgs/s for both, the ratio, the ingest process's peak RSS, and the CPU
time each part used while draining (Linux ``/proc``): the receiver process, the
forwarder process and influxd for ingest, the benchmark process for raw paho.
CPU seconds move much less than rates when another load shares the machine, so
they tell where a change between two commits went.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from schemas.registry import Market, load_market
from schemas.topics import SUBSCRIPTION
from simulators.load import publish_load
from stallwatch.localservices import Influxd, Mosquitto, influxd, mosquitto
from storage.influx.client import InfluxClient
from storage.influx.influxql import Query

REPO = Path(__file__).resolve().parent.parent
MARKET = REPO / "examples" / "markets" / "nanmen.toml"
DATABASE = "bench"


@dataclass(frozen=True)
class CpuSeconds:
    """CPU time (user + system) used while draining, by part."""

    parts: dict[str, float]

    def text(self) -> str:
        return ", ".join(f"{name} {seconds:.2f}" for name, seconds in self.parts.items())


@dataclass(frozen=True)
class Result:
    name: str
    messages: int
    seconds: float
    peak_rss_mb: float | None = None
    cpu: CpuSeconds | None = None

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def create_offline_session(broker: Mosquitto, client_id: str) -> None:
    """Subscribe once and leave, so the broker queues everything published next for us."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    subscribed = threading.Event()
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    client.loop_start()
    client.subscribe(SUBSCRIPTION, qos=1)
    if not subscribed.wait(10):
        raise RuntimeError("the broker did not confirm the subscription")
    client.disconnect()
    client.loop_stop()


def queue_backlog(broker: Mosquitto, market: Market, client_id: str, n: int) -> None:
    create_offline_session(broker, client_id)
    rate = publish_load(broker.url, market, n).rate
    print(f"queued {n} QoS 1 sales for {client_id} (published at {rate:,.0f} msgs/s)")


def raw_paho_drain(broker: Mosquitto, client_id: str, n: int) -> Result:
    received = 0
    started = 0.0
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)

    def on_message(c: paho.Client, _u: object, _m: paho.MQTTMessage) -> None:
        nonlocal received
        received += 1
        if received == n:
            c.disconnect()

    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    started, cpu_started = time.perf_counter(), time.process_time()
    client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    client.loop_forever()  # in this thread: paho's fastest mode
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return Result(
        "raw paho-mqtt drain (auto-ack, no work)", n, elapsed, cpu=CpuSeconds({"bench": cpu})
    )


def stallwatch_drain(
    broker: Mosquitto, influx: Influxd, client_id: str, n: int, workdir: Path, market: Path
) -> Result:
    env = {
        **os.environ,
        "STALLWATCH_STORE": "influx",
        "STALLWATCH_INFLUX_URL": influx.url,
        "STALLWATCH_INFLUX_DATABASE": DATABASE,
        "STALLWATCH_SPOOL_DIR": str(workdir / "spool"),
        "STALLWATCH_MQTT_CLIENT_ID": client_id,
        "STALLWATCH_MAX_AGE_S": str(86_400),
    }
    argv = [
        sys.executable,
        "-m",
        "stallwatch.cli",
        "ingest",
        "--market",
        str(market),
        "--mqtt-url",
        f"mqtt://127.0.0.1:{broker.port}",
    ]
    client = InfluxClient(influx.url)
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    connected = threading.Event()
    threading.Thread(target=_watch_log, args=(proc, connected), daemon=True).start()
    try:
        # The clock starts at the MQTT connection, as for raw paho: start-up is not ingest.
        if not connected.wait(60):
            raise RuntimeError("stallwatch ingest did not connect")
        started = time.perf_counter()
        cpu_started = _ingest_cpu(proc.pid, influx)
        # COUNT over a growing measurement costs influxd real CPU: poll rarely until the
        # end is near, then often, so the probe neither slows ingest nor blurs the finish.
        _wait_for(lambda: _count(client) >= n * 0.9, 600, interval=0.5)
        _wait_for(lambda: _count(client) >= n, 600, interval=0.02)
        elapsed = time.perf_counter() - started
        cpu = _ingest_cpu(proc.pid, influx)
        rss = _peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    used = None
    if cpu is not None and cpu_started is not None:
        used = CpuSeconds({part: cpu[part] - cpu_started.get(part, 0.0) for part in cpu})
    return Result("stallwatch ingest → InfluxDB (durable)", n, elapsed, rss, used)


def _ingest_cpu(pid: int, influx: Influxd) -> dict[str, float] | None:
    """CPU seconds so far of the receiver process, its forwarder process(es) and influxd."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        parts = {
            "receiver": _cpu_seconds(str(pid)),
            "forwarder": sum(_cpu_seconds(child) for child in children),
        }
        if influx.proc is not None:
            parts["influxd"] = _cpu_seconds(str(influx.proc.pid))
        return parts
    except OSError:
        return None  # not Linux, or a process ended


def _cpu_seconds(pid: str) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    # The command name, in parentheses, may hold spaces: the fields follow the last ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _watch_log(proc: subprocess.Popen[str], connected: threading.Event) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        if "connected to MQTT broker" in line:
            connected.set()
        elif "ERROR" in line or "Traceback" in line:
            print("ingest:", line.rstrip(), file=sys.stderr)


def _count(client: InfluxClient) -> int:
    for series in client.query(DATABASE, Query("SELECT COUNT(weight_g) FROM sale")):
        count = series.rows[0]["count"]
        assert isinstance(count, int)
        return count
    return 0


def _peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory of ingest: the receiver and its forwarder process, summed."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return sum(_vm_hwm_kb(p) for p in [str(pid), *children]) / 1024
    except OSError:
        return None


def _vm_hwm_kb(pid: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _wait_for(condition: object, timeout: float, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=200_000, help="messages per contender")
    parser.add_argument(
        "--market", type=Path, default=MARKET, help="market file (default: the example market)"
    )
    args = parser.parse_args(argv)
    market = load_market(args.market)
    with tempfile.TemporaryDirectory(prefix="stallwatch-bench-") as tmp:
        workdir = Path(tmp)
        with (
            mosquitto(workdir / "mosquitto", persistence=False) as broker,
            influxd(workdir / "influxd") as influx,
        ):
            assert isinstance(broker, Mosquitto)
            assert isinstance(influx, Influxd)
            InfluxClient(influx.url).create_database(DATABASE)
            queue_backlog(broker, market, "bench-raw", args.n)
            results = [raw_paho_drain(broker, "bench-raw", args.n)]
            queue_backlog(broker, market, "bench-stallwatch", args.n)
            results.append(
                stallwatch_drain(broker, influx, "bench-stallwatch", args.n, workdir, args.market)
            )
    report(results)
    return 0


def report(results: list[Result]) -> None:
    ceiling = results[0].rate
    print()
    header = f"{'contender':45} {'messages':>9} {'seconds':>8} {'msgs/s':>9} {'vs raw':>7}"
    print(f"{header} {'peak RSS':>9}  CPU seconds while draining")
    for result in results:
        rss = f"{result.peak_rss_mb:.0f} MB" if result.peak_rss_mb else "-"
        cpu = "-" if result.cpu is None else result.cpu.text()
        print(
            f"{result.name:45} {result.messages:>9} {result.seconds:>8.2f} {result.rate:>9,.0f} "
            f"{result.rate / ceiling:>7.2f} {rss:>9}  {cpu}"
        )


if __name__ == "__main__":
    sys.exit(main())
