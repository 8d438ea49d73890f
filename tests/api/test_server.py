"""The thread server's listening socket: connections must get TCP_NODELAY from asyncio."""

from __future__ import annotations

import socket

from api.server import _listening_socket


def test_the_listening_socket_is_tcp_so_accepted_connections_get_nodelay() -> None:
    # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP; with proto 0
    # (socket.create_server) every two-write response waited for a delayed ACK.
    listener = _listening_socket("127.0.0.1", 0)
    try:
        assert listener.proto == socket.IPPROTO_TCP
        with socket.create_connection(listener.getsockname()[:2]):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.proto == socket.IPPROTO_TCP
    finally:
        listener.close()
