"""Two measured shortcuts around paho-mqtt's socket handling, kept in one place.

**Buffered reads.** paho reads every packet with three or four ``recv`` calls
(one byte of header, one per length byte, then the body). For a subscriber
draining a backlog that is most of its cost. :class:`BufferedSocket` wraps the
socket paho opened (installed from ``on_socket_open``) and serves those small
reads from one 64 KiB ``recv``. paho already asks a socket for ``pending()``
bytes before it blocks in ``select`` (it does so for TLS sockets), so buffered
bytes are never stranded.

**One write for many PUBACKs.** After a group commit, the acknowledgements for
the whole batch are written with one ``sendall`` instead of one paho call and
one ``send`` each. A QoS 1 PUBACK with reason Success and no properties is four
bytes in both MQTT 3.1.1 and 5 (MQTT 5 §3.4.2.1 lets the reason code be
omitted). paho keeps no state for QoS 1 messages it delivered with
``manual_ack=True``, so writing these ourselves is invisible to it; the caller
only does so when paho has no half-written packet of its own queued.

Both rely on paho-mqtt 2.x internals (the ``_sock`` attribute and the
``pending()`` probe); ``tests/ingest/test_socket.py`` fails if an upgrade
changes either, and pyproject pins paho-mqtt below 3.
"""

from __future__ import annotations

import select
import struct
from collections.abc import Iterable
from typing import Any

_READ_SIZE = 65_536
_PUBACK = struct.Struct("!BBH")


def puback_packets(mids: Iterable[int]) -> bytes:
    """PUBACK (Success) packets for the given packet ids, back to back."""
    pack = _PUBACK.pack
    return b"".join(pack(0x40, 2, mid) for mid in mids)


class BufferedSocket:
    """A non-blocking socket whose ``recv`` is served from a read-ahead buffer."""

    __slots__ = ("_buf", "_pos", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        if self._pos >= len(self._buf):
            data: bytes = self._sock.recv(max(size, _READ_SIZE))  # may raise BlockingIOError
            if not data:
                return data  # orderly close: paho treats b"" as connection lost
            self._buf, self._pos = data, 0
        start = self._pos
        self._pos = min(start + size, len(self._buf))
        return self._buf[start : self._pos]

    def pending(self) -> int:
        """Bytes read from the kernel but not yet handed to paho."""
        return len(self._buf) - self._pos

    def readable_now(self) -> bool:
        """True when more bytes wait, buffered or in the kernel."""
        if self.pending():
            return True
        readable, _, _ = select.select([self._sock], [], [], 0)
        return bool(readable)

    def sendall(self, data: bytes) -> None:
        # The socket is non-blocking; wait for room rather than drop part of the write.
        view = memoryview(data)
        while view:
            try:
                sent = self._sock.send(view)
            except BlockingIOError:
                select.select([], [self._sock], [], 1.0)
                continue
            view = view[sent:]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
