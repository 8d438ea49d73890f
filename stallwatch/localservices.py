"""Throwaway Mosquitto and InfluxDB servers on free ports in a directory of their own.

Tests and benchmarks use these so that nothing
touches the machine's own services. The binaries come from Debian's
``mosquitto`` and ``influxdb`` packages (the test command installs them).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx


class ServiceError(RuntimeError):
    """A local service could not be started."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(
    port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{proc.args!r} exited with {proc.returncode}: {_tail(log)}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.2),
        ):
            return
        time.sleep(0.02)  # polling a port that is not up yet; nothing to wait on
    raise ServiceError(f"{proc.args!r} did not listen on {port} within {timeout}s: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"


@dataclass
class LocalService:
    """A server process we started; ``stop`` is graceful, ``kill`` is SIGKILL."""

    name: str
    workdir: Path
    port: int
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: Seconds to wait for the port, and for readiness: influxd over a kept directory
    #: of a year loads its index before it serves.
    start_timeout: float = 20.0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        log.close()
        _wait_for_port(self.port, self.proc, self.log_path, self.start_timeout)
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Hook for services whose port opens before they answer."""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _require_binary(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise ServiceError(f"{name} not found: install Debian's {package} package (make test does)")
    return found


MOSQUITTO_DEFAULTS = """\
# Never drop QoS 1 messages for a slow or offline persistent session.
max_queued_messages 0
max_queued_bytes 0
# The ingest client announces its own Receive Maximum (MQTT v5); this covers v3 clients.
max_inflight_messages 1000
message_size_limit 262144
"""


#: Where Debian's ``mosquitto`` package puts the dynamic-security plugin (per architecture).
DYNSEC_PLUGIN_GLOB = "/usr/lib/*/mosquitto_dynamic_security.so"


def dynsec_plugin() -> Path:
    """Mosquitto's dynamic-security plugin, as Debian's ``mosquitto`` package installs it."""
    found = sorted(Path("/").glob(DYNSEC_PLUGIN_GLOB.lstrip("/")))
    if not found:
        raise ServiceError(f"no {DYNSEC_PLUGIN_GLOB}: install Debian's mosquitto package")
    return found[0]


class Mosquitto(LocalService):
    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


def mosquitto(
    workdir: Path, *, port: int | None = None, extra_conf: str = "", persistence: bool = True
) -> Mosquitto:
    """A Mosquitto listening on 127.0.0.1 with anonymous access, or as ``extra_conf`` says."""
    binary = _require_binary("mosquitto", "mosquitto")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = workdir / "mosquitto.conf"
    # Run as whoever we are: as root, mosquitto would otherwise switch to the `mosquitto`
    # user and fail to save its persistence file in our directory, losing sessions on restart.
    lines = [f"listener {port} 127.0.0.1", MOSQUITTO_DEFAULTS]
    if not any(line.startswith("user ") for line in extra_conf.splitlines()):
        lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
    if "allow_anonymous" not in extra_conf and "password_file" not in extra_conf:
        lines.append("allow_anonymous true")
    if persistence:
        lines += ["persistence true", f"persistence_location {workdir}/", "autosave_interval 1"]
    lines.append(extra_conf)
    conf.write_text("\n".join(lines) + "\n")
    return Mosquitto("mosquitto", workdir, port, [binary, "-c", str(conf)])


class Influxd(LocalService):
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + max(30.0, self.start_timeout)
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/ping", timeout=1).status_code == 204:
                    return
            time.sleep(0.05)  # influxd opens its port before it serves
        raise ServiceError(f"influxd did not answer /ping: {_tail(self.log_path)}")


def influxd(
    workdir: Path,
    *,
    port: int | None = None,
    auth: bool = False,
    max_row_limit: int = 0,
    start_timeout: float = 20.0,
) -> Influxd:
    """An InfluxDB 1.x server (Debian's 1.6.7 here) with its data under ``workdir``.

    The data stays in ``workdir`` after the server stops, so a kept directory is
    opened again by the next server started on it (a benchmark's year of data).
    ``max_row_limit`` truncates unchunked answers as a server configured so does
    (0: no limit, 1.x's default).
    """
    binary = _require_binary("influxd", "influxdb")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = workdir / "influxdb.conf"
    conf.write_text(
        f"""reporting-enabled = false
bind-address = "127.0.0.1:{free_port()}"
[meta]
  dir = "{workdir}/meta"
[data]
  dir = "{workdir}/data"
  wal-dir = "{workdir}/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  auth-enabled = {str(auth).lower()}
  log-enabled = false
  max-body-size = 0
  max-row-limit = {int(max_row_limit)}
[logging]
  level = "warn"
[[udp]]
  enabled = false
[continuous_queries]
  enabled = true
"""
    )
    return Influxd(
        "influxd", workdir, port, [binary, "-config", str(conf)], start_timeout=start_timeout
    )


#: Where Debian's PostgreSQL server packages put their binaries (one directory per version).
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
#: The superuser the throwaway cluster is made with (trust auth on 127.0.0.1 only).
POSTGRES_USER = "stallwatch"


class Postgres(LocalService):
    """A throwaway PostgreSQL cluster; ``url`` is SQLAlchemy's for its ``postgres`` database."""

    data_dir: Path = Path()
    run_as: str | None = None
    owns_data_dir: bool = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{POSTGRES_USER}@127.0.0.1:{self.port}/postgres"

    def database_url(self, database: str) -> str:
        return self.url.rsplit("/", 1)[0] + f"/{database}"

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, cwd="/", user=self.run_as
        )
        log.close()
        _wait_for_port(self.port, self.proc, self.log_path, self.start_timeout)
        self._wait_ready()

    def _wait_ready(self) -> None:
        """The port opens while the cluster still says "starting up"."""
        import psycopg  # only the market database's tests need it

        deadline = time.monotonic() + self.start_timeout
        dsn = f"host=127.0.0.1 port={self.port} user={POSTGRES_USER} dbname=postgres"
        while True:
            try:
                psycopg.connect(dsn, connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ServiceError(f"postgres did not accept connections: {exc}") from exc
            time.sleep(0.02)  # polling a server that is not ready yet; nothing to wait on

    def stop(self, timeout: float = 10.0) -> None:
        # SIGTERM is a "smart" shutdown that waits for every client to leave; SIGINT
        # ("fast") ends their sessions, which a test's connection pool may still hold.
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def postgres_bin_dir() -> Path:
    """The newest PostgreSQL server's binaries, as Debian's ``postgresql`` package installs them."""
    found = sorted(Path("/").glob(POSTGRES_BIN_GLOB.lstrip("/")), key=lambda p: int(p.parent.name))
    if not found or not (found[-1] / "initdb").exists():
        raise ServiceError(
            f"no {POSTGRES_BIN_GLOB}/initdb: install Debian's postgresql package (make test does)"
        )
    return found[-1]


def postgres(workdir: Path, *, port: int | None = None) -> Postgres:
    """A PostgreSQL cluster made with ``initdb`` for this run, listening on 127.0.0.1 only.

    PostgreSQL refuses to run as root; as root the cluster belongs to the ``postgres``
    user the Debian package creates, in a directory of its own under the system's
    temporary directory (a test's ``workdir`` is private to root), removed on stop.
    """
    binaries = postgres_bin_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    run_as = "postgres" if os.geteuid() == 0 else None
    if run_as is None:
        data_dir, owns = workdir / "data", False
    else:
        data_dir, owns = Path(tempfile.mkdtemp(prefix="stallwatch-pg-")), True
        account = pwd.getpwnam(run_as)
        os.chown(data_dir, account.pw_uid, account.pw_gid)
    initdb = [
        str(binaries / "initdb"),
        "--pgdata",
        str(data_dir / "cluster"),
        "--username",
        POSTGRES_USER,
        "--auth",
        "trust",
        "--encoding",
        "UTF8",
        "--no-locale",
        "--no-sync",
    ]
    done = subprocess.run(initdb, capture_output=True, cwd="/", user=run_as, check=False)
    if done.returncode != 0:
        raise ServiceError(f"initdb failed: {done.stderr.decode(errors='replace')[-2000:]}")
    argv = [
        str(binaries / "postgres"),
        "-D",
        str(data_dir / "cluster"),
        "-p",
        str(port),
        "-k",
        str(data_dir),
        "-c",
        "listen_addresses=127.0.0.1",
        # A throwaway cluster: durability is not what is tested.
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
    ]
    service = Postgres("postgres", workdir, port, argv)
    service.data_dir, service.run_as, service.owns_data_dir = data_dir, run_as, owns
    return service
