"""The receiver against a real Mosquitto: acks, redelivery, and the paho internals it uses."""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from ingest._socket import BufferedSocket, puback_packets
from ingest.mqtt import (
    RECEIVE_MAXIMUM,
    SESSION_EXPIRY_S,
    MqttOptions,
    MqttReceiver,
    persistent_session,
)
from ingest.spool import ArrivedMessage, Spool
from mqttedge import EdgeOptions
from schemas.commands import command_topic
from schemas.messages import DeviceKind
from stallwatch.localservices import Mosquitto
from tests.ingest.helpers import SALE_TOPIC, Publisher, ingest_mqtt, sale_payload, wait_until


def _receiver(broker: Mosquitto, spool: Spool) -> MqttReceiver:
    return MqttReceiver(ingest_mqtt(broker.port, "receiver-under-test"), spool, lambda: None)


def test_acknowledged_messages_are_not_redelivered_and_unacknowledged_are(
    mosquitto_server: Mosquitto, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool.db")
    receiver = _receiver(mosquitto_server, spool)
    receiver.start()
    publisher = Publisher(mosquitto_server.port)
    try:
        assert receiver.subscribed.wait(10)
        publisher.publish_all((SALE_TOPIC, sale_payload(i)) for i in range(500))
        wait_until(lambda: receiver.acknowledged == 500, what="500 PUBACKs")
        receiver.stop()
        # Offline: the broker must queue these for the persistent session.
        publisher.publish_all((SALE_TOPIC, sale_payload(i)) for i in range(500, 600))
        again = _receiver(mosquitto_server, spool)
        again.start()
        wait_until(lambda: again.acknowledged == 100, what="the queued 100")
        publisher.publish_all([(SALE_TOPIC, sale_payload(999_999))])
        wait_until(lambda: again.received == 101, what="the marker message")
        again.stop()
    finally:
        publisher.close()
    # Had any of the first 500 PUBACKs been malformed or lost, the broker would have resent them.
    assert spool.pending() == 601
    spool.close()


def test_commands_to_devices_are_acknowledged_but_never_spooled(
    mosquitto_server: Mosquitto, tmp_path: Path
) -> None:
    """The subscription matches stallwatch's own commands to devices (they are not
    readings): the receiver acknowledges them, so the broker keeps nothing for ingest,
    and spools only the devices' messages around them."""
    spool = Spool(tmp_path / "spool.db")
    receiver = _receiver(mosquitto_server, spool)
    receiver.start()
    publisher = Publisher(mosquitto_server.port)
    command = command_topic("tm", DeviceKind.SCALE, "S-A01")
    try:
        assert receiver.subscribed.wait(10)
        publisher.publish_all(
            [
                (SALE_TOPIC, sale_payload(1)),
                (command, b'{"suspended":[]}'),
                (SALE_TOPIC, sale_payload(2)),
            ]
        )
        wait_until(lambda: receiver.acknowledged == 3, what="three PUBACKs")
    finally:
        receiver.stop()
        publisher.close()
    assert (receiver.received, receiver.commands_ignored) == (2, 1)
    assert [row[1] for row in spool.peek(10)] == [SALE_TOPIC, SALE_TOPIC]
    spool.close()


def test_paho_reads_through_our_buffered_socket(
    mosquitto_server: Mosquitto, tmp_path: Path
) -> None:
    """Guards the paho internals ingest._socket relies on (``_sock``, ``pending()``)."""
    spool = Spool(tmp_path / "spool.db")
    receiver = _receiver(mosquitto_server, spool)
    receiver.start()
    try:
        assert receiver.subscribed.wait(10)
        assert isinstance(receiver._client.socket(), BufferedSocket)
    finally:
        receiver.stop()
        spool.close()


def test_buffered_socket_serves_small_reads_from_one_recv() -> None:
    left, right = socket.socketpair()
    left.setblocking(False)
    right.sendall(b"\x30\x05hello" * 3)
    buffered = BufferedSocket(left)
    assert buffered.recv(1) == b"\x30"
    assert buffered.pending() == 20
    assert buffered.recv(1) == b"\x05"
    assert buffered.recv(5) == b"hello"
    assert buffered.recv(100) == b"\x30\x05hello\x30\x05hello"
    assert buffered.pending() == 0
    assert not buffered.readable_now()
    right.close()
    assert buffered.recv(1) == b""  # orderly close reaches paho as such
    left.close()


def test_puback_packets_are_the_four_byte_success_form() -> None:
    assert puback_packets([1, 258, 65535]) == b"\x40\x02\x00\x01\x40\x02\x01\x02\x40\x02\xff\xff"


def test_spool_failure_withholds_acknowledgements(
    mosquitto_server: Mosquitto, tmp_path: Path
) -> None:
    class BrokenSpool(Spool):
        fail = threading.Event()

        def append(self, messages: Sequence[ArrivedMessage]) -> None:
            if self.fail.is_set():
                from ingest.spool import SpoolError

                raise SpoolError("disk full")
            super().append(messages)

    spool = BrokenSpool(tmp_path / "spool.db")
    spool.fail.set()
    receiver = _receiver(mosquitto_server, spool)
    receiver.start()
    publisher = Publisher(mosquitto_server.port)
    try:
        assert receiver.subscribed.wait(10)
        info = publisher.client.publish(SALE_TOPIC, sale_payload(1), qos=1)
        info.wait_for_publish(10)
        wait_until(lambda: receiver._inbox != [], what="the message to arrive")
        assert receiver.acknowledged == 0
        spool.fail.clear()
        wait_until(lambda: receiver.acknowledged == 1, what="acknowledgement once the spool works")
    finally:
        publisher.close()
        receiver.stop()
    assert spool.pending() == 1
    spool.close()


def test_ingest_refuses_a_clean_session() -> None:
    # Acknowledging only what is durable means nothing if the broker drops the rest on a disconnect.
    with pytest.raises(ValueError, match="persistent session"):
        MqttOptions(EdgeOptions("127.0.0.1", 1883, "ingest-clean"))
    session = persistent_session(EdgeOptions("127.0.0.1", 1883, "ingest", password="pw-s3cret"))
    options = MqttOptions(session)
    assert (session.persistent, session.session_expiry_s, session.receive_maximum) == (
        True,
        SESSION_EXPIRY_S,
        RECEIVE_MAXIMUM,
    )
    assert options.session_expiry == timedelta(days=7)
    assert "s3cret" not in repr(options)
