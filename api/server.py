"""Running the API under uvicorn: in the foreground (``stallwatch serve``) or in a thread.

:class:`ServerThread` binds its socket before the thread starts, so the port is
known (and taken) at once: tests pass port 0 and read :attr:`ServerThread.url`,
with no window in which another process could grab a "free" port.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

#: Seconds uvicorn lets open requests finish after a stop was asked for.
GRACEFUL_SHUTDOWN_S = 10


def run_server(app: ASGIApp, *, host: str, port: int, trusted_proxies: Sequence[str] = ()) -> None:
    """Serve ``app`` until SIGINT/SIGTERM (uvicorn's handlers); the caller owns what it uses."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        **proxy_options(trusted_proxies),
    )
    uvicorn.Server(config).run()


def proxy_options(trusted_proxies: Sequence[str]) -> dict[str, Any]:
    """uvicorn's settings for ``X-Forwarded-For``/``-Proto``: honoured from these peers only.

    uvicorn trusts the headers from 127.0.0.1 unless told otherwise, so any client
    that reaches the server through a local hop (or is local) could name itself
    any address and, for one, dodge the login throttle. With no trusted proxies the
    headers are ignored and the peer address is the client's.
    """
    if not trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": list(trusted_proxies)}


def _listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket whose ``proto`` is ``IPPROTO_TCP``.

    ``socket.create_server`` leaves ``proto`` at 0, which accepted connections
    inherit; asyncio then skips ``TCP_NODELAY`` on them (it checks the proto), and
    every response whose headers and body go out in two writes waits ~40 ms for
    the client's delayed ACK. Measured: 44 ms per request against 0.7 ms.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(socket.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    return sock


class ServerError(RuntimeError):
    """The server thread did not start (or stop) in time."""


class ServerThread:
    """An ASGI app served by uvicorn in a daemon thread, on a socket bound up front."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        access_log: bool = False,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        self._socket = _listening_socket(host, port)
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(
            app,
            # log_config=None leaves the embedding program's logging alone.
            log_config=None,
            access_log=access_log,
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            **proxy_options(trusted_proxies),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="api-server"
        )
        self._thread.daemon = True

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; returns once uvicorn accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        # uvicorn offers a flag, not an event, for "started".
        while not self._server.started:
            if not self._thread.is_alive():
                raise ServerError("the API server exited during startup (see the log)")
            if time.monotonic() > deadline:
                raise ServerError(f"the API server did not start within {timeout}s")
            time.sleep(0.01)

    def stop(self, timeout: float = GRACEFUL_SHUTDOWN_S + 5) -> None:
        """Ask uvicorn to finish open requests and exit, and wait for it."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()
        if self._thread.is_alive():
            raise ServerError(f"the API server did not stop within {timeout}s")

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
