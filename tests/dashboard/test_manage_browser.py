"""Managing the market in the dashboard, in headless Chromium over the real stack with the
market database: a vendor, a stall, a product and a scale added in forms; an error shown
next to its field; a stale edit refused; a viewer refused; the audit log naming who; a
failed batch locked, its recall downloaded and the lock lifted with a reason.
Screenshots go to docs/screenshots/ (see conftest)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from sqlalchemy.orm import Session, sessionmaker

from api.server import ServerThread
from dashboard import ids
from dashboard.auth import UserRole, add_user
from dashboard.manage import devices, intake, vendors
from marketdb.database import open_database, session_factory
from marketdb.follow import RegistryFollower
from marketdb.management import Management
from marketdb.marketfile import import_market
from marketview.live_mqtt import LiveView
from schemas.messages import RapidTest, RapidTestResult, Sale
from schemas.registry import Market, Vendor
from simulators.history import generate_history
from stallwatch.localservices import Mosquitto, mosquitto
from stallwatch.lockkeeper import LockKeeper
from stallwatch.options import live_mqtt_options
from stallwatch.settings import Settings
from stallwatch.webapp import DASHBOARD_PATH, create_web_app
from storage.records import Reading
from storage.sqlite import SQLiteStore
from tests.dashboard.conftest import page_errors, screenshot
from tests.ingest.helpers import wait_until
from tests.stallwatch.keepers import start_lock_keeper

LOAD_MS = 15_000
FAIL = RapidTest(result=RapidTestResult.FAIL, inhibition_pct=Decimal("58.0"))


@dataclass(frozen=True)
class Managed:
    url: str
    market: Market
    management: Management
    follower: RegistryFollower
    passwords: dict[str, str]
    store: SQLiteStore
    keeper: LockKeeper

    @property
    def dashboard(self) -> str:
        return self.url + DASHBOARD_PATH + "/"


@pytest.fixture(scope="module")
def managed(tmp_path_factory: pytest.TempPathFactory, example_market: Market) -> Iterator[Managed]:
    tmp = tmp_path_factory.mktemp("managed")
    store = SQLiteStore(tmp / "store.db")
    today = datetime.now(UTC).astimezone(example_market.tz).date()
    generate_history(
        example_market,
        store,
        start_date=today - timedelta(days=1),
        days=2,
        seed=5,
        until=datetime.now(UTC),
    )
    engine = open_database(f"sqlite:///{tmp / 'market.db'}")
    sessions: sessionmaker[Session] = session_factory(engine)
    with sessions() as session, session.begin():
        import_market(session, example_market.spec)
    users = tmp / "users.json"
    passwords = {
        "admin": add_user(users, "admin", role=UserRole.ADMINISTRATOR),
        "looker": add_user(users, "looker", role=UserRole.VIEWER),
    }
    broker = mosquitto(tmp / "mosquitto", persistence=False)
    server_of_broker = broker.__enter__()
    assert isinstance(server_of_broker, Mosquitto)
    settings = Settings(
        markets=(),
        mqtt_url=server_of_broker.url,
        sqlite_path=tmp / "store.db",
        spool_dir=tmp / "spool",
        dashboard_users_file=users,
    )
    follower = RegistryFollower(sessions, poll_s=0.1)
    live = LiveView(follower, store, live_mqtt_options(settings))
    live.start()
    management = Management(sessions)
    keeper, publisher = start_lock_keeper(sessions, follower, server_of_broker.port)
    app = create_web_app(
        settings=settings,
        registry=follower,
        store=store,
        live=live,
        management=management,
        lock_keeper=keeper,
    )
    try:
        with ServerThread(app) as server:
            yield Managed(
                server.url, example_market, management, follower, passwords, store, keeper
            )
    finally:
        live.stop()
        publisher.close()
        store.close()
        engine.dispose()
        broker.__exit__(None, None, None)


def logged_in(browser: Browser, managed: Managed, user: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1100}, locale="zh-CN")
    page = context.new_page()
    errors = page_errors(page)
    page.goto(managed.dashboard)
    page.fill("#username", user)
    page.fill("#password", managed.passwords[user])
    page.click("#login-submit")
    page.wait_for_url(managed.dashboard)
    yield page
    context.close()
    assert errors == [], f"JavaScript errors or policy violations on the page: {errors}"


@pytest.fixture
def admin(browser: Browser, managed: Managed) -> Iterator[Page]:
    yield from logged_in(browser, managed, "admin")


@pytest.fixture
def viewer(browser: Browser, managed: Managed) -> Iterator[Page]:
    yield from logged_in(browser, managed, "looker")


def field(page: Page, form: str, name: str) -> Locator:
    return page.locator(f'[id=\'{{"field":"{name}","type":"{form}"}}\']')


def feedback(page: Page, form: str, name: str) -> Locator:
    return page.locator(f'[id=\'{{"field":"{name}","type":"{form}-feedback"}}\']')


def choose(page: Page, dropdown: Locator, text: str) -> None:
    """Open a dropdown and pick the option whose label contains ``text``."""
    dropdown.click()
    page.get_by_role("option").filter(has_text=text).first.click()


def open_manage(page: Page, managed: Managed, tab: str) -> None:
    page.goto(managed.dashboard + "manage")
    page.locator(f"#tab-{tab}, a[data-rb-event-key='{tab}']").first.wait_for(timeout=LOAD_MS)
    page.get_by_role("tab", name=TAB_NAMES[tab]).click()


TAB_NAMES = {
    "vendors": "商户",
    "stalls": "摊位",
    "products": "商品",
    "devices": "设备",
    "intake": "进货登记",
}


def test_a_manager_adds_a_stall_a_product_a_vendor_and_a_scale(
    admin: Page, managed: Managed
) -> None:
    open_manage(admin, managed, "stalls")
    field(admin, "stall-form", "id").fill("Z01")
    field(admin, "stall-form", "zone").fill("新区")
    field(admin, "stall-form", "row").fill("40")
    field(admin, "stall-form", "col").fill("1")
    admin.click("#stall-save")
    expect(admin.locator("#stall-result")).to_contain_text("已保存：Z01", timeout=LOAD_MS)

    admin.get_by_role("tab", name="商品").click()
    field(admin, "product-form", "plu").fill("9901")
    field(admin, "product-form", "name_zh").fill("山药")
    field(admin, "product-form", "name_en").fill("Yam")
    choose(admin, field(admin, "product-form", "category"), "蔬菜")
    admin.click("#product-save")
    expect(admin.locator("#product-result")).to_contain_text("已保存：9901", timeout=LOAD_MS)

    admin.get_by_role("tab", name="商户").click()
    for name, value in {"id": "V-NEW", "name": "新来的菜摊", "stall": "Z01"}.items():
        field(admin, vendors.FORM, name).fill(value)
    field(admin, vendors.FORM, "health_certificates").fill("李四, JK-2026-0099, 2027-05-31")
    admin.click(f"#{vendors.SAVE}")
    expect(admin.locator(f"#{vendors.RESULT}")).to_contain_text("已保存：V-NEW", timeout=LOAD_MS)
    screenshot(admin, "manage-vendor")

    admin.get_by_role("tab", name="设备").click()
    field(admin, devices.FORM, "id").fill("S-NEW-1")
    choose(admin, field(admin, devices.FORM, "vendor"), "V-NEW")
    admin.click(f"#{devices.ADD}")
    expect(admin.locator(f"#{devices.RESULT}")).to_contain_text("S-NEW-1", timeout=LOAD_MS)
    assert managed.management.device(managed.market.id, "S-NEW-1").vendor == "V-NEW"
    screenshot(admin, "manage-devices")

    wait_until(
        lambda: managed.follower.current().device(managed.market.id, "S-NEW-1") is not None,
        timeout=5,
        what="the new scale in the registry ingest and the live view follow",
    )
    admin.goto(managed.dashboard + "audit")
    rows = admin.locator("#audit-grid .ag-center-cols-container .ag-row")
    expect(rows.first).to_contain_text("admin", timeout=LOAD_MS)
    expect(admin.locator("#audit-grid")).to_contain_text("S-NEW-1")
    screenshot(admin, "audit")


def test_a_refused_vendor_shows_the_error_next_to_its_field_and_saves_nothing(
    admin: Page, managed: Managed
) -> None:
    taken = managed.market.spec.vendors[0]
    open_manage(admin, managed, "vendors")
    for name, value in {"id": "V-CLASH", "name": "抢摊位的", "stall": taken.stall}.items():
        field(admin, vendors.FORM, name).fill(value)
    admin.click(f"#{vendors.SAVE}")
    expect(feedback(admin, vendors.FORM, "stall")).to_contain_text(taken.stall, timeout=LOAD_MS)
    expect(field(admin, vendors.FORM, "stall")).to_have_class(re.compile(r"\bis-invalid\b"))
    field(admin, vendors.FORM, "food_licence_no").fill("bad licence!")
    admin.click(f"#{vendors.SAVE}")
    expect(feedback(admin, vendors.FORM, "food_licence_no")).not_to_be_empty(timeout=LOAD_MS)
    screenshot(admin, "manage-vendor-error")
    assert all(v.vendor.id != "V-CLASH" for v in managed.management.vendors(managed.market.id))


def test_a_stale_edit_is_refused_with_a_message(admin: Page, managed: Managed) -> None:
    market = managed.market.id
    target = managed.market.spec.vendors[1]
    open_manage(admin, managed, "vendors")
    choose(admin, admin.locator(f"#{vendors.SELECT}"), target.id)
    expect(field(admin, vendors.FORM, "name")).to_have_value(target.name, timeout=LOAD_MS)

    # Another manager renames the vendor meanwhile.
    current = managed.management.vendor(market, target.id)
    renamed = current.vendor.model_copy(update={"name": target.name + "（新）"})
    managed.management.update_vendor(market, renamed, if_version=current.version, actor="other")

    field(admin, vendors.FORM, "contact").fill("0527-0000000")
    admin.click(f"#{vendors.SAVE}")
    expect(admin.locator(f"#{vendors.RESULT}")).to_contain_text("其他人已修改", timeout=LOAD_MS)
    assert managed.management.vendor(market, target.id).vendor.contact != "0527-0000000"


def test_a_viewer_sees_the_forms_but_may_not_save(viewer: Page, managed: Managed) -> None:
    open_manage(viewer, managed, "vendors")
    for name, value in {"id": "V-VIEW", "name": "看看", "stall": "Z99"}.items():
        field(viewer, vendors.FORM, name).fill(value)
    viewer.click(f"#{vendors.SAVE}")
    expect(viewer.locator(f"#{vendors.RESULT}")).to_contain_text("无权", timeout=LOAD_MS)
    assert all(v.vendor.id != "V-VIEW" for v in managed.management.vendors(managed.market.id))


def test_staff_register_a_batch_and_its_failed_rapid_test_at_the_intake_form(
    admin: Page, managed: Managed
) -> None:
    vendor = managed.market.spec.vendors[2]
    product = managed.market.products[vendor.products[0]]
    open_manage(admin, managed, "intake")
    form = intake.FORM
    field(admin, form, "trace_code").fill("NM-FORM-0001")
    choose(admin, field(admin, form, "vendor"), vendor.id)
    choose(admin, field(admin, form, "plu"), product.plu)
    field(admin, form, "origin").fill("山东寿光")
    field(admin, form, "supplier").fill("寿光批发市场")
    field(admin, form, "quantity_kg").fill("12.5x")
    field(admin, form, "certificate_no").fill("HG-2026-0001")
    field(admin, form, "inhibition_pct").fill("62.5")
    admin.click(f"#{intake.SAVE}")
    expect(feedback(admin, form, "quantity_kg")).not_to_be_empty(timeout=LOAD_MS)
    # A rate without its result is half a test: refused on the result, not stored untested.
    expect(feedback(admin, form, "rapid_test_result")).to_contain_text(
        "快检结果和抑制率须一并填写", timeout=LOAD_MS
    )
    assert managed.store.batch(managed.market.id, "NM-FORM-0001") is None

    field(admin, form, "quantity_kg").fill("12.5")
    choose(admin, field(admin, form, "rapid_test_result"), "不合格")
    admin.click(f"#{intake.SAVE}")
    expect(admin.locator(f"#{intake.RESULT}")).to_contain_text("快检不合格", timeout=LOAD_MS)
    screenshot(admin, "manage-intake")
    stored = managed.store.batch(managed.market.id, "NM-FORM-0001")
    assert stored is not None
    assert (stored.vendor, stored.quantity_g, stored.rapid_test_passed) == (
        vendor.id,
        12_500,
        False,
    )
    # Entered by hand, it is locked at once, as a failed test arriving over MQTT is.
    locks = managed.keeper.locks(managed.market.id)
    assert [(lock.trace_code, lock.vendor) for lock in locks] == [("NM-FORM-0001", vendor.id)]


def test_the_web_app_on_the_market_database_checks_its_tokens_there(managed: Managed) -> None:
    """No tokens file configured: the API's tokens are the database's, revoked at once."""
    from api.security import Role, issue_token
    from marketdb import accounts

    token, record = issue_token(Role.VIEWER, name="screen-office")
    stored = accounts.StoredToken(
        record.name, record.sha256, record.role.value, None, None, record.created
    )
    with managed.management.sessions() as session, session.begin():
        accounts.add_token(session, stored, actor="test")
    vendors = f"{managed.url}/api/v1/markets/{managed.market.id}/vendors"
    headers = {"Authorization": f"Bearer {token}"}

    assert httpx.get(vendors, headers=headers, timeout=30).status_code == 200
    with managed.management.sessions() as session, session.begin():
        accounts.revoke_token(session, "screen-office", actor="test")
    assert httpx.get(vendors, headers=headers, timeout=30).status_code == 401


def test_an_administrator_replaces_a_scale_and_reassigns_its_successor(
    admin: Page, managed: Managed
) -> None:
    market = managed.market.id
    vendor = managed.market.spec.vendors[4]
    other = managed.market.spec.vendors[5]
    old = vendor.scales[0]
    open_manage(admin, managed, "devices")
    choose(admin, admin.locator(f"#{devices.CHOSEN}"), old)
    admin.fill(f"#{devices.SUCCESSOR}", f"{old}-R")
    admin.click(f"#{devices.REPLACE}")
    expect(admin.locator(f"#{devices.SWITCH_RESULT}")).to_contain_text(f"{old}-R", timeout=LOAD_MS)
    assert managed.management.device(market, old).enabled is False
    assert managed.management.device(market, f"{old}-R").vendor == vendor.id

    choose(admin, admin.locator(f"#{devices.CHOSEN}"), f"{old}-R")
    choose(admin, admin.locator(f"#{devices.ASSIGN_VENDOR}"), f"{other.id} {other.name}")
    admin.click(f"#{devices.ASSIGN}")
    expect(admin.locator(f"#{devices.SWITCH_RESULT}")).to_contain_text(
        f"改为所属: {old}-R", timeout=LOAD_MS
    )
    assert managed.management.device(market, f"{old}-R").vendor == other.id


def _sell(managed: Managed, vendor: Vendor, code: str, msg_id: int, at: datetime) -> None:
    sale = Sale(
        msg_id=msg_id,
        ts=at,
        vendor=vendor.id,
        plu=vendor.products[0],
        weight_g=1_500,
        unit_price_fen_per_kg=1_000,
        total_fen=1_500,
        trace_code=code,
    )
    managed.store.write([Reading(managed.market.id, vendor.scales[0], time.time_ns(), sale)])


def test_a_locked_batch_shows_its_recall_and_a_manager_lifts_it_with_a_reason(
    admin: Page, viewer: Page, managed: Managed
) -> None:
    market, vendor = managed.market, managed.market.spec.vendors[3]
    code, plu, now = "NM-RECALL-0001", vendor.products[0], datetime.now(UTC)
    _sell(managed, vendor, code, 2**41 + 1, now - timedelta(hours=2))
    _sell(managed, vendor, code, 2**41 + 2, now - timedelta(hours=1))
    lock = managed.keeper.failed_test(market.id, code, vendor.id, plu, FAIL, now)
    _sell(managed, vendor, code, 2**41 + 3, lock.locked_at + timedelta(seconds=5))

    admin.goto(managed.dashboard + "food-safety")
    row = admin.locator("tr.fs-lock", has_text=code)
    expect(row.locator(".fs-recalled")).to_contain_text("2 笔", timeout=LOAD_MS)
    expect(row.locator(".fs-sold-locked")).to_have_text("锁定后仍售出 1 笔")
    screenshot(admin, "food-safety-locks")
    with admin.expect_download() as download:
        row.get_by_role("button").click()
    lines = download.value.path().read_text(encoding="utf-8").splitlines()
    assert [line.split(",")[4] for line in lines[1:]] == [str(2**41 + n) for n in (1, 2, 3)]
    assert [line.split(",")[8] for line in lines[1:]] == ["no", "no", "yes"]

    viewer.goto(managed.dashboard + "food-safety")
    _lift(viewer, code, "复检合格（抑制率 12.0%）")
    expect(viewer.locator("#fs-unlock-alert")).to_contain_text("无权", timeout=LOAD_MS)
    assert [open.trace_code for open in managed.keeper.locks(market.id)].count(code) == 1

    _lift(admin, code, "复检合格（抑制率 12.0%）")
    expect(admin.locator("#fs-unlock-alert")).to_contain_text("已解除锁定", timeout=LOAD_MS)
    expect(admin.locator("tr.fs-lock", has_text=code)).to_have_count(0, timeout=LOAD_MS)
    (lifted,) = [one for one in managed.keeper.locks(market.id, lifted=True) if one.id == lock.id]
    assert (lifted.unlocked_by, lifted.unlock_reason) == ("admin", "复检合格（抑制率 12.0%）")


def test_a_sale_of_a_locked_batch_raises_an_alert_naming_the_vendor(
    admin: Page, managed: Managed
) -> None:
    market, vendor = managed.market, managed.market.spec.vendors[4]
    code, now = "NM-IGNORED-0001", datetime.now(UTC)
    lock = managed.keeper.failed_test(market.id, code, vendor.id, vendor.products[0], FAIL, now)
    admin.goto(managed.dashboard)
    expect(admin.locator("#kpi-turnover")).not_to_be_empty(timeout=LOAD_MS)

    _sell(managed, vendor, code, 2**41 + 9, lock.locked_at + timedelta(seconds=5))

    alert = admin.locator(".alert-locked_sale", has_text=code)
    expect(alert).to_contain_text(vendor.name, timeout=10_000)  # the overview polls
    expect(alert.get_by_role("link", name=code)).to_be_visible()


def _lift(page: Page, code: str, reason: str) -> None:
    choose(page, page.locator(f"#{ids.FOOD_SAFETY_UNLOCK_WHICH}"), code)
    page.locator(f"#{ids.FOOD_SAFETY_UNLOCK_REASON}").fill(reason)
    page.click(f"#{ids.FOOD_SAFETY_UNLOCK}")
