"""Fault tests: a SIGKILLed ingest, an InfluxDB outage, and bad input, all on real servers."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from ingest.service import IngestService
from schemas.registry import Registry, load_market
from stallwatch.localservices import Influxd, Mosquitto, influxd
from stallwatch.logs import PER_REQUEST_LOGGERS, quiet_per_request_loggers
from storage.base import Store
from storage.influx.store import InfluxStore
from storage.records import UNREGISTERED
from storage.sqlite import SQLiteStore
from tests.ingest.helpers import (
    SALE_TOPIC,
    LossyLink,
    Publisher,
    ingest_mqtt,
    now_iso,
    sale_payload,
    wait_until,
    write_market,
)

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
FOREVER = datetime(2100, 1, 1, tzinfo=UTC)


def sale_ids(store: Store) -> list[int]:
    return sorted(row.msg_id for row in store.sales("tm", EPOCH, FOREVER, scale="S-A01"))


# -- SIGKILL mid-stream -----------------------------------------------------------
def _spawn_ingest(market: Path, broker: Mosquitto, workdir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "STALLWATCH_SQLITE_PATH": str(workdir / "store.db"),
        "STALLWATCH_SPOOL_DIR": str(workdir / "spool"),
        "STALLWATCH_MQTT_CLIENT_ID": "ingest-killed",
        "STALLWATCH_BATCH_LINES": "500",
    }
    log = (workdir / "ingest.log").open("ab")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stallwatch.cli",
            "ingest",
            "--market",
            str(market),
            "--mqtt-url",
            broker.url,
            "--store",
            "sqlite",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def test_sigkill_mid_stream_loses_nothing_and_duplicates_nothing(
    mosquitto_server: Mosquitto, tmp_path: Path
) -> None:
    market = write_market(tmp_path)
    total = 20_000
    ingest = _spawn_ingest(market, mosquitto_server, tmp_path)
    store = SQLiteStore(tmp_path / "store.db")
    publisher = Publisher(mosquitto_server.port)
    try:
        # The session must exist before the first publish, or the broker would not queue for it.
        wait_until(
            lambda: b"connected" in (tmp_path / "ingest.log").read_bytes(), what="ingest to connect"
        )
        sender = threading.Thread(
            target=publisher.publish_all,
            args=([(SALE_TOPIC, sale_payload(i)) for i in range(total)],),
        )
        sender.start()
        wait_until(lambda: len(sale_ids(store)) >= total // 5, what="a fifth of the stream stored")
        ingest.send_signal(signal.SIGKILL)
        ingest.wait(10)
        killed_at = len(sale_ids(store))
        ingest = _spawn_ingest(market, mosquitto_server, tmp_path)
        sender.join(120)
        wait_until(lambda: len(sale_ids(store)) >= total, timeout=120, what="every sale stored")
    finally:
        ingest.terminate()
        ingest.wait(20)
        publisher.close()
    assert killed_at < total, "the kill must happen mid-stream"
    assert sale_ids(store) == list(range(total))
    store.close()


def stored_at_least(store: Store, sales: int) -> Callable[[], bool]:
    return lambda: len(sale_ids(store)) >= sales


def bad_sale(msg_id: int) -> bytes:
    return sale_payload(msg_id, weight_g=-5, total_fen=0)


def test_sigkills_mid_stream_dead_letter_each_bad_message_once(
    mosquitto_server: Mosquitto, tmp_path: Path
) -> None:
    # Every fifth message is bad; the last one is good, so once every good sale is
    # stored the spool has forwarded everything before it, redeliveries included.
    market = write_market(tmp_path)
    total, kills = 20_000, 3
    stream = [(SALE_TOPIC, bad_sale(i) if i % 5 == 1 else sale_payload(i)) for i in range(total)]
    good = [i for i in range(total) if i % 5 != 1]
    ingest = _spawn_ingest(market, mosquitto_server, tmp_path)
    store = SQLiteStore(tmp_path / "store.db")
    publisher = Publisher(mosquitto_server.port)
    try:
        wait_until(
            lambda: b"connected" in (tmp_path / "ingest.log").read_bytes(), what="ingest to connect"
        )
        sender = threading.Thread(target=publisher.publish_all, args=(stream,))
        sender.start()
        for kill in range(1, kills + 1):
            wait_until(
                stored_at_least(store, len(good) * kill // (kills + 1)),
                timeout=120,
                what=f"stream stored before kill {kill}",
            )
            ingest.send_signal(signal.SIGKILL)
            ingest.wait(10)
            ingest = _spawn_ingest(market, mosquitto_server, tmp_path)
        sender.join(120)
        wait_until(lambda: sale_ids(store) == good, timeout=120, what="every good sale stored")
    finally:
        ingest.terminate()
        ingest.wait(20)
        publisher.close()
    assert store.reject_counts(EPOCH, FOREVER) == {("tm", "S-A01"): total - len(good)}
    letters = store.dead_letters(EPOCH, FOREVER, limit=total)
    assert sorted(letter.payload for letter in letters) == sorted(
        payload for _, payload in stream if b'"weight_g": -5' in payload
    )
    store.close()


def test_a_redelivery_of_a_dead_lettered_message_is_not_dead_lettered_again(
    mosquitto_server: Mosquitto, any_store: Store, tmp_path: Path
) -> None:
    # Deterministic version of the above: the PUBACKs of spooled messages are lost.
    registry = Registry([load_market(write_market(tmp_path))])
    link = LossyLink(mosquitto_server.port)
    options = ingest_mqtt(link.port, "ingest-lossy", receive_maximum=1000)
    service = IngestService.in_process(options, registry, any_store, tmp_path / "spool.db")
    service.start()
    publisher = Publisher(mosquitto_server.port)
    bad = [(SALE_TOPIC, bad_sale(i)) for i in range(50)]
    good = [(SALE_TOPIC, sale_payload(i)) for i in range(50, 100)]
    try:
        assert service.receiver.subscribed.wait(10)
        link.losing.set()
        publisher.publish_all([*bad, *good])
        wait_until(lambda: service.status().received == 100, what="all spooled")
        wait_until(lambda: service.status().pending == 0, what="all forwarded")
        link.cut()  # the broker never saw a PUBACK: it sends all 100 again, flagged DUP
        wait_until(lambda: service.status().received == 200, what="all redelivered")
        wait_until(lambda: service.status().pending == 0, what="redeliveries forwarded")
    finally:
        publisher.close()
        service.stop()
        link.close()
    assert any_store.reject_counts(EPOCH, FOREVER) == {("tm", "S-A01"): 50}
    assert len(any_store.dead_letters(EPOCH, FOREVER, limit=1000)) == 50
    assert service.forwarder.stats.redeliveries == 50, "the bad ones; good ones are harmless"
    assert sale_ids(any_store) == list(range(50, 100))


# -- InfluxDB outage mid-stream ----------------------------------------------------
@pytest.fixture
def private_influxd(tmp_path: Path) -> Iterator[Influxd]:
    with influxd(tmp_path / "influxd") as server:
        assert isinstance(server, Influxd)
        yield server


@pytest.fixture
def app_logging() -> Iterator[None]:
    """Logging as the stallwatch commands set it up, undone afterwards."""
    loggers = [logging.getLogger(name) for name in PER_REQUEST_LOGGERS]
    levels = [logger.level for logger in loggers]
    quiet_per_request_loggers()
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def _service(
    broker: Mosquitto, registry: Registry, store: Store, spool: Path, client_id: str
) -> IngestService:
    options = ingest_mqtt(broker.port, client_id, receive_maximum=1000)
    return IngestService.in_process(options, registry, store, spool, batch_size=1000)


def test_influx_outage_mid_stream_loses_nothing_and_drains(
    mosquitto_server: Mosquitto,
    private_influxd: Influxd,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    app_logging: None,
) -> None:
    caplog.set_level(logging.INFO)
    registry = Registry([load_market(write_market(tmp_path))])
    store = InfluxStore(private_influxd.url, "outage", create_database=True)
    service = _service(mosquitto_server, registry, store, tmp_path / "spool.db", "ingest-outage")
    service.start()
    publisher = Publisher(mosquitto_server.port)
    try:
        assert service.receiver.subscribed.wait(10)
        publisher.publish_all((SALE_TOPIC, sale_payload(i)) for i in range(3_000))
        wait_until(lambda: service.status().stored >= 1_000, what="stream flowing into influxd")

        private_influxd.stop()
        publisher.publish_all((SALE_TOPIC, sale_payload(i)) for i in range(3_000, 6_000))
        wait_until(lambda: service.status().received == 6_000, what="all messages spooled")
        wait_until(lambda: "store unavailable" in caplog.text, what="the outage to be noticed")
        assert service.status().pending > 0, "messages must wait in the spool during the outage"

        private_influxd.start()
        wait_until(lambda: service.status().pending == 0, timeout=90, what="the spool to drain")
    finally:
        publisher.close()
        service.stop()
    assert sale_ids(store) == list(range(6_000))
    assert caplog.text.count("store unavailable") == 1, "an outage is logged once"
    assert "store resumed" in caplog.text
    assert "pending" in caplog.text
    # One line for the outage, one for the recovery, nothing per request or per retry.
    lines = [record for record in caplog.records if record.levelno >= logging.INFO]
    outage = [r for r in lines if r.getMessage().startswith("store unavailable")]
    recovery = [r for r in lines if r.getMessage().startswith("store resumed")]
    assert [r.levelno for r in outage] == [logging.WARNING]
    assert [r.levelno for r in recovery] == [logging.INFO]
    assert [r for r in lines if r.levelno >= logging.WARNING] == outage
    per_request = [r.getMessage() for r in lines if r.name.startswith(("httpx", "storage."))]
    assert per_request == []
    store.close()


# -- bad input ------------------------------------------------------------------------
BAD_INPUT: list[tuple[str, str, bytes, str]] = [
    ("malformed JSON", SALE_TOPIC, b'{"msg_id": 1, "ts": ', "invalid payload"),
    ("not JSON at all", SALE_TOPIC, b"\xff\xfe\x00garbage", "invalid payload"),
    ("wrong type", SALE_TOPIC, sale_payload(900_001, weight_g="heavy"), "weight_g"),
    ("float weight", SALE_TOPIC, sale_payload(900_002, weight_g=1.5), "weight_g"),
    ("negative weight", SALE_TOPIC, sale_payload(900_003, weight_g=-5, total_fen=0), "weight_g"),
    (
        "absurd price",
        SALE_TOPIC,
        sale_payload(900_004, unit_price_fen_per_kg=10**9, total_fen=10**9),
        "unit_price_fen_per_kg",
    ),
    ("total mismatch", SALE_TOPIC, sale_payload(900_005, total_fen=99_999), "does not match"),
    (
        "a day in the future",
        SALE_TOPIC,
        sale_payload(900_006, ts=now_iso(timedelta(days=1))),
        "in the future",
    ),
    ("naive timestamp", SALE_TOPIC, sale_payload(900_007, ts="2026-11-21T08:00:00"), "ts"),
    ("unknown device", "markets/tm/scales/S-ZZZ/sale", sale_payload(900_008), "unknown device"),
    (
        "unknown market",
        "markets/nowhere/scales/S-A01/sale",
        sale_payload(900_009),
        "unknown market",
    ),
    ("not the owner", "markets/tm/scales/S-B01/sale", sale_payload(900_010), "does not own"),
    (
        "kind mismatch",
        "markets/tm/gates/S-A01/count",
        sale_payload(900_011),
        "registered as scales",
    ),
    ("wrong channel", "markets/tm/scales/S-A01/price", sale_payload(900_012), "no channel"),
    ("unknown product", SALE_TOPIC, sale_payload(900_013, plu="9999"), "unknown product"),
    ("extra field", SALE_TOPIC, sale_payload(900_014, discount=5), "discount"),
    (
        "oversized",
        SALE_TOPIC,
        sale_payload(900_015, trace_code="X" * 40) + b" " * 40_000,
        "too large",
    ),
]


@pytest.fixture(params=["sqlite", "influx"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        store: Store = SQLiteStore(tmp_path / "store.db")
    else:
        influx_server: Influxd = request.getfixturevalue("influx_server")
        store = InfluxStore(influx_server.url, f"bad_{uuid4().hex[:10]}", create_database=True)
    yield store
    store.close()


def test_every_class_of_bad_input_is_dead_lettered_and_good_messages_all_stored(
    mosquitto_server: Mosquitto, any_store: Store, tmp_path: Path
) -> None:
    registry = Registry([load_market(write_market(tmp_path))])
    service = _service(mosquitto_server, registry, any_store, tmp_path / "spool.db", "ingest-bad")
    service.start()
    publisher = Publisher(mosquitto_server.port)
    good = [(SALE_TOPIC, sale_payload(i)) for i in range(len(BAD_INPUT) * 3)]
    interleaved = []
    for index, (_, topic, payload, _) in enumerate(BAD_INPUT):
        interleaved += [*good[index * 3 : index * 3 + 3], (topic, payload)]
    try:
        assert service.receiver.subscribed.wait(10)
        publisher.publish_all(interleaved)
        wait_until(lambda: service.status().received == len(interleaved), what="all received")
        wait_until(lambda: service.status().pending == 0, what="spool drained")
    finally:
        publisher.close()
        service.stop()

    assert sale_ids(any_store) == list(range(len(good)))
    letters = any_store.dead_letters(EPOCH, FOREVER, limit=1000)
    assert len(letters) == len(BAD_INPUT)
    by_payload = {letter.payload: letter for letter in letters}
    for name, topic, payload, reason in BAD_INPUT:
        kept = payload if len(payload) <= 1024 else payload[:1024]
        assert kept in by_payload, f"{name}: not dead-lettered"
        letter = by_payload[kept]
        assert letter.topic == topic, name
        assert reason in letter.reason, f"{name}: reason {letter.reason!r}"
        assert letter.payload_size == len(payload), name
    counts = any_store.reject_counts(EPOCH, FOREVER)
    assert counts[("tm", "S-A01")] == sum(1 for _, topic, _, _ in BAD_INPUT if topic == SALE_TOPIC)
    assert counts[(UNREGISTERED, UNREGISTERED)] >= 3


def test_rejects_are_counted_per_device_in_process(
    mosquitto_server: Mosquitto, tmp_path: Path
) -> None:
    registry = Registry([load_market(write_market(tmp_path))])
    store = SQLiteStore(tmp_path / "store.db")
    service = _service(mosquitto_server, registry, store, tmp_path / "spool.db", "ingest-count")
    service.start()
    publisher = Publisher(mosquitto_server.port)
    try:
        assert service.receiver.subscribed.wait(10)
        bad = json.dumps({"msg_id": 1}).encode()
        publisher.publish_all(
            [(SALE_TOPIC, bad), (SALE_TOPIC, bad), ("markets/tm/scales/S-B01/sale", bad)]
        )
        wait_until(lambda: service.status().rejected == 3, what="three rejects")
    finally:
        publisher.close()
        service.stop()
        store.close()
    assert service.forwarder.stats.rejected_by_device == {("tm", "S-A01"): 2, ("tm", "S-B01"): 1}


def test_a_killed_forwarder_process_is_restarted_and_nothing_is_lost(
    mosquitto_server: Mosquitto, tmp_path: Path
) -> None:
    market = write_market(tmp_path)
    ingest = _spawn_ingest(market, mosquitto_server, tmp_path)
    store = SQLiteStore(tmp_path / "store.db")
    publisher = Publisher(mosquitto_server.port)
    try:
        wait_until(lambda: b"connected" in (tmp_path / "ingest.log").read_bytes(), what="connect")
        publisher.publish_all((SALE_TOPIC, sale_payload(i)) for i in range(1_000))
        wait_until(lambda: len(sale_ids(store)) == 1_000, what="first thousand stored")
        children = Path(f"/proc/{ingest.pid}/task/{ingest.pid}/children").read_text().split()
        # multiprocessing's resource tracker is a child too; the forwarder is the spawned one.
        forwarders = [
            c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()
        ]
        assert len(forwarders) == 1, "one forwarder process"
        os.kill(int(forwarders[0]), signal.SIGKILL)
        publisher.publish_all((SALE_TOPIC, sale_payload(i)) for i in range(1_000, 2_000))
        wait_until(lambda: len(sale_ids(store)) == 2_000, what="the rest, via a new forwarder")
    finally:
        ingest.terminate()
        ingest.wait(20)
        publisher.close()
    assert sale_ids(store) == list(range(2_000))
    assert b"forwarder process exited" in (tmp_path / "ingest.log").read_bytes()
    store.close()
