"""From a failed rapid test to the lock on the vendor's scale: end-to-end latency.

Run: ``.venv/bin/python -m bench.lock_latency_bench [--rounds 30]``.

Everything as ``stallwatch serve`` wires it, on loopback: a private Mosquitto, a SQLite
store and a SQLite market database holding the 40-vendor example market, the live view
validating what arrives, and the lock keeper on its thread, publishing as a command
client. Each round:

1. the intake desk (an MQTT client) publishes a failed ``RapidTestReport`` for a new
   batch of one vendor (QoS 1);
2. the live view validates it and hands it to the keeper, which records the lock in the
   market database and publishes the vendor's scales' and screens' new states (retained,
   QoS 1), waiting for each PUBACK;
3. the vendor's scale, connected and subscribed to its command topic, receives the state
   naming the batch.

The clock runs from just before the desk's publish to the scale's receipt, in one
process (one monotonic clock). Side by side, the **baseline**: the same desk publishing
straight to a topic the scale subscribes to (one broker hop, the floor any lock path
stands on). Target (issue 12): under 2 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from marketdb.database import open_database, session_factory
from marketdb.management import Management
from marketdb.marketfile import import_market
from marketview.live_mqtt import LiveView
from schemas.commands import command_topic
from schemas.messages import DeviceKind, RapidTest, RapidTestReport, RapidTestResult
from schemas.registry import Market, Registry, load_market
from schemas.topics import topic_for
from stallwatch.localservices import mosquitto
from stallwatch.options import live_mqtt_options
from stallwatch.settings import Settings
from stallwatch.webapp import open_lock_keeper
from storage.sqlite import SQLiteStore

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "markets" / "nanmen.toml"
FAIL = RapidTest(result=RapidTestResult.FAIL, inhibition_pct=Decimal("62.5"))
TIMEOUT_S = 10.0


class Receiver:
    """An MQTT client that wakes the bench when a payload matching a test arrives."""

    def __init__(self, port: int, client_id: str, topic: str) -> None:
        self._arrived = threading.Condition()
        self._payloads: list[bytes] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        with self._arrived:
            self._payloads.append(bytes(message.payload))
            self._arrived.notify_all()

    def wait_for(self, wanted: Callable[[bytes], bool]) -> float:
        """Block until a payload ``wanted`` accepts has arrived; returns the monotonic time."""
        with self._arrived:
            if not self._arrived.wait_for(
                lambda: any(wanted(p) for p in self._payloads), TIMEOUT_S
            ):
                raise TimeoutError("nothing arrived in time")
            self._payloads.clear()
            return time.monotonic()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _desk(port: int) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-desk")
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _report(vendor: str, plu: str, code: str, msg_id: int) -> bytes:
    report = RapidTestReport(
        msg_id=msg_id,
        ts=datetime.now(UTC),
        trace_code=code,
        vendor=vendor,
        plu=plu,
        rapid_test=FAIL,
    )
    return report.model_dump_json().encode()


def _equals(expected: bytes) -> Callable[[bytes], bool]:
    return lambda payload: payload == expected


def _names(code: str) -> Callable[[bytes], bool]:
    return lambda payload: code in {s["trace_code"] for s in json.loads(payload)["suspended"]}


def run(rounds: int) -> dict[str, list[float]]:
    market = load_market(EXAMPLE)
    vendor = next(v for v in market.spec.vendors if v.scales and v.products)
    plu, scale = vendor.products[0], vendor.scales[0]
    desk_id = market.spec.intake[0].id
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with mosquitto(work / "mosquitto", persistence=False) as broker:
            figures = _measure(market, vendor.id, plu, scale, desk_id, broker.port, work, rounds)
    return figures


def _measure(
    market: Market,
    vendor: str,
    plu: str,
    scale: str,
    desk_id: str,
    port: int,
    work: Path,
    rounds: int,
) -> dict[str, list[float]]:
    sessions = session_factory(open_database(f"sqlite:///{work / 'market.db'}"))
    with sessions() as session, session.begin():
        import_market(session, market.spec)
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{port}", markets=(EXAMPLE,))
    registry = Registry([market])
    figures: dict[str, list[float]] = {"baseline": [], "lock": []}
    with (
        SQLiteStore(work / "store.db") as store,
        open_lock_keeper(settings, Management(sessions), registry, store) as keeper,
    ):
        assert keeper is not None
        live = LiveView(registry, store, live_mqtt_options(settings), on_reading=keeper.observe)
        live.start()
        desk = _desk(port)
        commands = Receiver(port, scale, command_topic(market.id, DeviceKind.SCALE, scale))
        direct = Receiver(port, f"{scale}-baseline", "bench/baseline")
        try:
            _wait(lambda: live.connected)
            report_topic = topic_for(market.id, DeviceKind.INTAKE, desk_id, "test")
            for n in range(rounds):
                code = f"BENCH-{n:04d}"
                started = time.monotonic()
                desk.publish("bench/baseline", code.encode(), qos=1)
                figures["baseline"].append(direct.wait_for(_equals(code.encode())) - started)
                started = time.monotonic()
                desk.publish(report_topic, _report(vendor, plu, code, n + 1), qos=1)
                figures["lock"].append(commands.wait_for(_names(code)) - started)
        finally:
            commands.close()
            direct.close()
            desk.loop_stop()
            desk.disconnect()
            live.stop()
    return figures


def _wait(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the live view did not subscribe")
        time.sleep(0.05)


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    figures = run(args.rounds)
    print(f"{'path':<44} {'p50 ms':>8} {'p90 ms':>8} {'worst ms':>9}")
    for name, label in (
        ("baseline", "baseline: desk → broker → scale (one hop)"),
        ("lock", "failed test → lock on the scale"),
    ):
        values = figures[name]
        print(
            f"{label:<44} {1000 * statistics.median(values):8.1f} {_ms(values, 0.9):8.1f} "
            f"{1000 * max(values):9.1f}"
        )


if __name__ == "__main__":
    main()
