"""The dashboard's real stack for browser tests, built once per session.

* the example market (40 vendors) with 15 days of simulator history up to now,
  written into a real SQLite store by the simulator's fast-forward mode;
* a private Mosquitto feeding the real live price view;
* the web app as ``stallwatch serve`` builds it (API + dashboard, with a login)
  under a real uvicorn;
* Debian's Chromium driven by Playwright, logged in as a manager.

Screenshots of each page go to ``test-artifacts/screenshots/`` on every run; with
``STALLWATCH_UPDATE_SCREENSHOTS=1`` they are also copied to ``docs/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from api.server import ServerThread
from dashboard.auth import add_user
from marketview.live_mqtt import LiveView
from schemas.registry import Market, Registry
from simulators.history import generate_history
from stallwatch.localservices import Mosquitto, mosquitto
from stallwatch.options import live_mqtt_options
from stallwatch.settings import Settings
from stallwatch.webapp import DASHBOARD_PATH, create_web_app
from storage.sqlite import SQLiteStore
from tests.conftest import EXAMPLE_MARKET, REPO
from tests.ingest.helpers import wait_until

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts" / "screenshots"
DOCS_SCREENSHOTS = REPO / "docs" / "screenshots"
HISTORY_DAYS = 15
USER = "manager"


@dataclass(frozen=True)
class Stack:
    url: str
    market: Market
    store: SQLiteStore
    live: LiveView
    broker: Mosquitto
    password: str
    users: Path

    @property
    def dashboard(self) -> str:
        return self.url + DASHBOARD_PATH + "/"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, example_market: Market) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("dashboard")
    store = SQLiteStore(tmp / "store.db")
    now = datetime.now(UTC)
    today = now.astimezone(example_market.tz).date()
    generate_history(
        example_market,
        store,
        start_date=today - timedelta(days=HISTORY_DAYS - 1),
        days=HISTORY_DAYS,
        seed=11,
        until=now,
    )
    users = tmp / "users.json"
    password = add_user(users, USER)
    registry = Registry([example_market])
    with mosquitto(tmp / "mosquitto", persistence=False) as broker:
        assert isinstance(broker, Mosquitto)
        settings = Settings(
            markets=(EXAMPLE_MARKET,),
            mqtt_url=broker.url,
            sqlite_path=tmp / "store.db",
            spool_dir=tmp / "spool",
            dashboard_users_file=users,
        )
        live = LiveView(registry, store, live_mqtt_options(settings))
        live.start()
        wait_until(lambda: live.connected and live.synced, timeout=20, what="live view ready")
        app = create_web_app(settings=settings, registry=registry, store=store, live=live)
        try:
            with ServerThread(app) as server:
                yield Stack(server.url, example_market, store, live, broker, password, users)
        finally:
            live.stop()
            store.close()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: run `make test` (it installs it)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    """A fresh browser context (no cookies, no stored language), logged in as a manager."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    page = context.new_page()
    errors = page_errors(page)
    login(page, stack)
    yield page
    context.close()
    assert errors == [], f"JavaScript errors or policy violations on the page: {errors}"


def page_errors(page: Page) -> list[str]:
    """Uncaught JavaScript errors and what the Content-Security-Policy blocked, as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda message: (
            errors.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return errors


@pytest.fixture
def anonymous(browser: Browser) -> Iterator[Page]:
    """A fresh browser context that has not logged in."""
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    page = context.new_page()
    errors = page_errors(page)
    yield page
    context.close()
    assert errors == [], f"JavaScript errors or policy violations on the page: {errors}"


def login(page: Page, stack: Stack, user: str = USER, password: str | None = None) -> None:
    page.goto(stack.dashboard)
    page.fill("#username", user)
    page.fill("#password", stack.password if password is None else password)
    page.click("#login-submit")
    page.wait_for_url(stack.dashboard)


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("STALLWATCH_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)
    return path
