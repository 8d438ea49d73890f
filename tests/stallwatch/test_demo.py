"""The README's demo command runs end to end on the embedded broker and store."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from storage.sqlite import SQLiteStore
from tests.ingest.helpers import wait_until

REPO = Path(__file__).resolve().parents[2]
#: Runs the README's examples strictly: the first failing command or HTTP status >= 400 stops it.
STRICT_SHELL = """set -euo pipefail
curl() { command curl --fail --silent --show-error "$@"; }
"""


def test_demo_flows_sales_footfall_and_prices_into_the_embedded_store(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stallwatch.cli",
            "demo",
            "--speed",
            "0",
            "--history-days",
            "1",
            "--workdir",
            str(workdir),
            "--report-every",
            "2",
            "--api-port",
            "0",
            "--exit-when-done",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "embedded MQTT broker" in out
    final = out.rsplit("[ingest]", 1)[1]
    received, stored, rejected = (
        int(re.search(rf"{word} ([\d,]+)", final).group(1).replace(",", ""))  # type: ignore[union-attr]
        for word in ("received", "stored", "rejected")
    )
    assert received > 5_000
    assert stored == received
    assert rejected == 0
    assert re.search(r"[1-9][\d,]* sales, turnover ¥[\d,]+\.\d\d, [1-9][\d,]* visitors in", final)
    assert re.search(r"current prices, e\.g\. \S+ ¥\d+\.\d\d/斤", final)
    assert re.search(r"HTTP API on http://127\.0\.0\.1:\d+", out)
    assert re.search(r"administrator token \(shown once\): \S{20,}", out)
    assert re.search(r"/prices: HTTP 200, [1-9]\d* products on the price board", out)
    assert re.search(
        r"dashboard on http://127\.0\.0\.1:\d+/dashboard/ +\(user manager, password \S{12,}\)", out
    )
    assert re.search(r"dashboard \S+: HTTP 200 after login, Dash app served: True", out)

    tz = ZoneInfo("Asia/Shanghai")
    today = datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    with SQLiteStore(workdir / "stallwatch.db") as store:
        assert len(store.sales("nanmen", today, today + timedelta(days=1))) > 1_000
        assert len(store.sales("nanmen", today - timedelta(days=1), today)) > 1_000, "history"
        assert store.latest_prices("nanmen")


class Demo:
    """A running ``stallwatch demo`` whose output is read all the time, on a thread.

    Its output must be drained: a demo whose pipe is full (64 KiB, after a few hundred
    log lines) blocks in ``print`` and ``logging``, and with it every thread that logs,
    the simulated devices among them.
    """

    def __init__(self, workdir: Path, *options: str) -> None:
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "stallwatch.cli", "demo", "--workdir", str(workdir)),
                *("--api-port", "0", "--report-every", "600", *options),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._drain, name="demo-output", daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def read_until(self, marker: str, timeout: float = 300) -> str:
        """The output up to and including the first line containing ``marker``."""
        seen = []
        while (line := self._lines.get(timeout=timeout)) is not None:
            seen.append(line)
            if marker in line:
                return "".join(seen)
        raise AssertionError(f"the demo ended before printing {marker!r}:\n" + "".join(seen))

    def interrupt(self, timeout: float = 120) -> str:
        """Ctrl-C, then the rest of the output once the demo has exited."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout)
        rest = []
        while (line := self._lines.get(timeout=timeout)) is not None:
            rest.append(line)
        return "".join(rest)


@pytest.fixture
def demos() -> Iterator[Callable[..., Demo]]:
    """Starts demos; any still running at the end are killed."""
    started: list[Demo] = []

    def start(workdir: Path, *options: str) -> Demo:
        started.append(Demo(workdir, *options))
        return started[-1]

    yield start
    for demo in started:
        if demo.proc.poll() is None:
            demo.proc.kill()
            demo.proc.wait()


def test_one_ctrl_c_during_the_simulated_day_stops_the_demo(
    tmp_path: Path, demos: Callable[..., Demo]
) -> None:
    demo = demos(tmp_path / "demo", "--speed", "60", "--history-days", "0")
    demo.read_until("simulating ")
    rest = demo.interrupt()
    assert demo.proc.returncode == 0, rest
    assert "stopped." in rest
    assert "keep serving" not in rest


def test_a_vendor_stall_and_scale_added_while_the_demo_plays_start_selling(
    tmp_path: Path, demos: Callable[..., Demo]
) -> None:
    """The market database followed end to end: added over the API (the dashboard's forms
    make the same calls), the new scale's simulated sales reach the store, no restart."""
    demo = demos(tmp_path / "demo", "--speed", "300", "--history-days", "0")
    out = demo.read_until("administrator token")
    url = re.search(r"HTTP API on (http://127\.0\.0\.1:\d+)", out).group(1)  # type: ignore[union-attr]
    token = re.search(r"administrator token \(shown once\): (\S+)", out).group(1)  # type: ignore[union-attr]
    demo.read_until("simulating ")
    market = f"{url}/api/v1/markets/nanmen"
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        plu = api.get(f"{market}/products").json()[0]["product"]["plu"]
        assert api.post(f"{market}/stalls", json={"id": "Z01", "row": 40, "col": 1}).is_success
        vendor = {"id": "V-NEW", "name": "新来的菜摊", "stall": "Z01", "products": [plu]}
        assert api.post(f"{market}/vendors", json=vendor).is_success
        scale = {"id": "S-NEW", "kind": "scales", "vendor": "V-NEW"}
        assert api.post(f"{market}/registry/devices", json=scale).status_code == 201

        def new_vendor_sold() -> bool:
            per_vendor = api.get(f"{market}/sales").json()["per_vendor"]
            return any(row["vendor"] == "V-NEW" and row["transactions"] > 0 for row in per_vendor)

        wait_until(new_vendor_sold, timeout=60, what="the new scale's sales in the store")


def test_the_demo_day_locks_two_failed_batches_and_alerts_the_old_scale_selling_on(
    tmp_path: Path, demos: Callable[..., Demo]
) -> None:
    """Food safety's loop in the demo: two spot checks fail, both batches are locked, and
    the old scale staged to ignore its lock sells on: its sales are flagged."""
    demo = demos(tmp_path / "demo", "--speed", "600", "--history-days", "0")
    out = demo.read_until("administrator token")
    url = re.search(r"HTTP API on (http://127\.0\.0\.1:\d+)", out).group(1)  # type: ignore[union-attr]
    token = re.search(r"administrator token \(shown once\): (\S+)", out).group(1)  # type: ignore[union-attr]
    out += demo.read_until("simulating ")  # the staging is said before the day plays
    staged = re.search(r"staged: nanmen (\S+)'s batch (\S+) \((\d+)\)", out)
    assert staged, out
    deaf_vendor, deaf_code, deaf_plu = staged.groups()
    locks = f"{url}/api/v1/markets/nanmen/food-safety/locks"
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:

        def locked() -> list[dict[str, str]]:
            return list(api.get(locks).json())

        wait_until(lambda: len(locked()) >= 2, timeout=150, what="two batches locked")
        assert (deaf_code, deaf_vendor) in {
            (lock["trace_code"], lock["vendor"]) for lock in locked()
        }

        def sold_while_locked() -> bool:
            recall = api.get(f"{locks}/{deaf_code}/{deaf_plu}/recall").json()
            return bool(recall["sold_while_locked"])

        wait_until(sold_while_locked, timeout=150, what="the old scale's sales while locked")


def readme_examples() -> str:
    """The README's shell examples that talk to the API on 127.0.0.1:8000, in order."""
    blocks = re.findall(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    return "".join(block for block in blocks if "127.0.0.1:8000" in block)


def test_every_readme_example_works_as_written_against_the_demo(
    tmp_path: Path, demos: Callable[..., Demo]
) -> None:
    # Run from a directory laid out like the repository: var/demo/ and .venv/ where
    # the README's commands expect them; only the port differs.
    demo = demos(tmp_path / "var" / "demo", "--speed", "0", "--history-days", "1")
    out = demo.read_until("keep serving")
    address = re.search(r"HTTP API on http://(127\.0\.0\.1:\d+)", out)
    assert address, out
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    script = readme_examples().replace("127.0.0.1:8000", address.group(1))
    assert script.count("curl ") >= 11, script

    ran = subprocess.run(
        ["bash", "-c", STRICT_SHELL + script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr
    assert '"trace_code"' in ran.stdout
    assert (tmp_path / "qr.png").read_bytes().startswith(b"\x89PNG")
    rest = demo.interrupt()
    assert demo.proc.returncode == 0, rest
