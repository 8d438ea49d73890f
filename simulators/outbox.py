"""A connection's on-device buffer: every message not yet acknowledged by the broker.

Messages are kept as the bytes they were created with, so whatever is sent
again after an outage is byte-identical (same message id, same device time).

* ``pending`` messages have not been handed to the current connection; they
  are sent oldest first, at most ``window`` at a time.
* ``in flight`` messages were published on the current connection and wait for
  their PUBACK. Only the PUBACK removes a message from the buffer. When the
  connection is lost they become pending again, in their original order, ahead
  of everything newer.
* Each device may hold at most ``capacity`` pending messages. When a device
  buffers more (a long outage) its *oldest* pending message is dropped and
  counted: fresh readings are worth more than stale ones.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Outgoing:
    device: str
    topic: str
    payload: bytes


class Outbox:
    def __init__(self, *, capacity: int, window: int) -> None:
        if capacity < 1 or window < 1:
            raise ValueError("capacity and window must be positive")
        self.capacity = capacity
        self.window = window
        self._seq = 0
        self._pending: OrderedDict[int, Outgoing] = OrderedDict()
        self._pending_of: dict[str, deque[int]] = {}
        self._in_flight: dict[int, tuple[int, Outgoing]] = {}  # mid -> (seq, message)
        self._returned: set[int] = set()  # seqs that were in flight when a connection was lost
        self.dropped: Counter[str] = Counter()
        self.acked = 0
        self.published = 0  # first publications
        self.republished = 0  # publications of messages a lost connection had not acknowledged

    # -- filling ---------------------------------------------------------------
    def add(self, message: Outgoing) -> None:
        self._seq += 1
        self._pending[self._seq] = message
        self._pending_of.setdefault(message.device, deque()).append(self._seq)
        self._trim(message.device)

    def _trim(self, device: str) -> None:
        queue = self._pending_of[device]
        while len(queue) > self.capacity:
            seq = queue.popleft()
            del self._pending[seq]
            self._returned.discard(seq)
            self.dropped[device] += 1

    # -- sending -----------------------------------------------------------------
    def can_send(self) -> bool:
        return bool(self._pending) and len(self._in_flight) < self.window

    def next_to_send(self) -> tuple[int, Outgoing]:
        """The oldest pending message; call :meth:`sent` or :meth:`unsent` with its seq next."""
        seq, message = self._pending.popitem(last=False)
        popped = self._pending_of[message.device].popleft()
        assert popped == seq, "per-device order diverged from the buffer's order"
        return seq, message

    def sent(self, seq: int, message: Outgoing, mid: int) -> None:
        self._in_flight[mid] = (seq, message)
        if seq in self._returned:
            self._returned.discard(seq)
            self.republished += 1
        else:
            self.published += 1

    def unsent(self, seq: int, message: Outgoing) -> None:
        """Put a message taken by :meth:`next_to_send` back at the front (the publish failed)."""
        self._pending[seq] = message
        self._pending.move_to_end(seq, last=False)
        self._pending_of[message.device].appendleft(seq)

    def ack(self, mid: int) -> bool:
        """The broker acknowledged ``mid``; False if no message in flight has that id."""
        if self._in_flight.pop(mid, None) is None:
            return False
        self.acked += 1
        return True

    def connection_lost(self) -> int:
        """Everything in flight becomes pending again, ahead of newer messages; returns how many."""
        returned = sorted(self._in_flight.values(), key=lambda entry: entry[0])
        self._in_flight.clear()
        for seq, message in reversed(returned):
            self.unsent(seq, message)
            self._returned.add(seq)
        for device in {message.device for _, message in returned}:
            self._trim(device)
        return len(returned)

    # -- state -------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def unacknowledged(self) -> int:
        return len(self._pending) + len(self._in_flight)
