"""The on-device buffer: order, acknowledgement, the window, and the drop-oldest policy."""

from __future__ import annotations

import pytest

from simulators.outbox import Outbox, Outgoing


def _message(device: str, n: int) -> Outgoing:
    return Outgoing(device, f"markets/m/scales/{device}/sale", f"{device}-{n}".encode())


def _send_all(outbox: Outbox, first_mid: int = 1) -> list[tuple[int, Outgoing]]:
    sent = []
    mid = first_mid
    while outbox.can_send():
        seq, message = outbox.next_to_send()
        outbox.sent(seq, message, mid)
        sent.append((mid, message))
        mid += 1
    return sent


def test_messages_leave_only_when_acknowledged() -> None:
    outbox = Outbox(capacity=10, window=10)
    for n in range(3):
        outbox.add(_message("S-1", n))
    sent = _send_all(outbox)
    assert [m.payload for _, m in sent] == [b"S-1-0", b"S-1-1", b"S-1-2"]
    assert outbox.unacknowledged == 3
    assert outbox.ack(sent[1][0])
    assert not outbox.ack(sent[1][0])  # a second PUBACK for the same id is not ours
    assert (outbox.pending, outbox.in_flight, outbox.acked) == (0, 2, 1)


def test_the_window_limits_messages_in_flight() -> None:
    outbox = Outbox(capacity=100, window=4)
    for n in range(10):
        outbox.add(_message("S-1", n))
    assert len(_send_all(outbox)) == 4
    assert outbox.pending == 6


def test_a_lost_connection_returns_unacknowledged_messages_in_order_ahead_of_newer_ones() -> None:
    outbox = Outbox(capacity=100, window=3)
    for n in range(5):
        outbox.add(_message("S-1", n))
    sent = _send_all(outbox)
    outbox.ack(sent[0][0])
    outbox.add(_message("S-1", 5))
    assert outbox.connection_lost() == 2
    resent = _send_all(outbox, first_mid=100)
    assert [m.payload for _, m in resent] == [b"S-1-1", b"S-1-2", b"S-1-3"]
    assert (outbox.published, outbox.republished) == (4, 2)


def test_a_full_device_buffer_drops_its_oldest_messages_and_counts_them() -> None:
    outbox = Outbox(capacity=3, window=10)
    for n in range(5):
        outbox.add(_message("S-1", n))
    outbox.add(_message("S-2", 0))
    assert outbox.dropped == {"S-1": 2}
    assert [m.payload for _, m in _send_all(outbox)] == [b"S-1-2", b"S-1-3", b"S-1-4", b"S-2-0"]


def test_messages_returned_by_a_lost_connection_count_against_the_capacity() -> None:
    outbox = Outbox(capacity=2, window=10)
    outbox.add(_message("S-1", 0))
    outbox.add(_message("S-1", 1))
    _send_all(outbox)
    outbox.add(_message("S-1", 2))
    outbox.connection_lost()
    assert outbox.dropped == {"S-1": 1}
    assert [m.payload for _, m in _send_all(outbox)] == [b"S-1-1", b"S-1-2"]


def test_a_failed_publish_puts_the_message_back_first() -> None:
    outbox = Outbox(capacity=10, window=10)
    outbox.add(_message("S-1", 0))
    outbox.add(_message("S-1", 1))
    seq, message = outbox.next_to_send()
    outbox.unsent(seq, message)
    assert [m.payload for _, m in _send_all(outbox)] == [b"S-1-0", b"S-1-1"]


def test_capacity_and_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Outbox(capacity=0, window=1)
