"""The web service: the HTTP API with the dashboard mounted under ``/dashboard/``, one process.

One process because the dashboard reads what the API reads (the store, and the
live price view fed by MQTT): a second process would hold a second broker
subscription and a second copy of every price for nothing. The dashboard is a
WSGI (Flask) app; ``a2wsgi`` runs its requests on a thread pool beside the
API's event loop, so a slow dashboard query never stalls a screen's poll.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from a2wsgi import WSGIMiddleware
from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.types import ASGIApp

from api.main import create_app
from api.security import DatabaseTokens
from dashboard.app import DashboardOptions, create_dashboard
from dashboard.auth import DatabaseUsers, Logins, check_exposure
from dashboard.queries import DashboardData
from ingest.validate import Validator
from marketview.live_mqtt import LiveView
from schemas.registry import FixedRegistry, Market, Registry, RegistrySource
from stallwatch.options import api_options, broker_admin_options, command_mqtt_options, limits
from stallwatch.settings import Settings
from storage.base import Store
from storage.outage import OutageLog

if TYPE_CHECKING:
    from marketdb.management import Management
    from stallwatch.lockkeeper import KeeperThread, LockKeeper

log = logging.getLogger(__name__)

DASHBOARD_PATH = "/dashboard"
#: Threads serving dashboard requests; each callback is a few store queries.
DASHBOARD_WORKERS = 8


def freeze_startup_heap() -> None:
    """Take what startup built out of the garbage collector's full passes.

    Modules, the registry, Dash's layouts and the live view's first state live as
    long as the process, yet every full collection walked all of them: 225,000
    objects after a 300-vendor market's start, 170-240 ms a pass, landing inside
    one dashboard request in five on the vendors page. Frozen (``gc.freeze``), they
    are never walked again; a full pass then takes about 10 ms. Call once, after
    the app is built and before it serves.
    """
    gc.collect()
    gc.freeze()


def create_web_app(
    *,
    settings: Settings,
    registry: Registry | RegistrySource,
    store: Store,
    live: LiveView,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    management: Management | None = None,
    lock_keeper: LockKeeper | None = None,
    shared_for_s: float = 2.0,
) -> FastAPI:
    """The API and the dashboard over one store and live view; the caller runs both.

    ``now`` is the dashboard's clock (a benchmark over stored history sets it);
    ``management`` the market database's changes (see :func:`open_management`);
    ``lock_keeper`` what locks and unlocks failed batches (see :func:`open_lock_keeper`);
    ``shared_for_s`` how long browsers share the overview's figures (a benchmark of
    one viewer sets 0).
    """
    # On the market database, logins and tokens live there unless files are configured.
    logins: Logins | None = None
    options = api_options(settings)
    if management is not None:
        if settings.dashboard_users_file is None:
            logins = DatabaseUsers(management.sessions)
        if settings.api_tokens_file is None:
            options = replace(options, tokens=DatabaseTokens(management.sessions))
    check_exposure(settings.api_host, logins or settings.dashboard_users_file)
    # One outage log for both readers of the store: one outage, one log line.
    outage = OutageLog(logging.getLogger("stallwatch.web"))
    app = create_app(
        options=options,
        registry=registry,
        store=store,
        live=live,
        outage=outage,
        management=management,
        lock_keeper=lock_keeper,
    )
    secret = settings.dashboard_session_secret
    dashboard = create_dashboard(
        DashboardData(
            registry=registry,
            store=store,
            live=live,
            now=now,
            outage=outage,
            management=management,
            lock_keeper=lock_keeper,
            shared_for_s=shared_for_s,
            validator=Validator(
                registry if not isinstance(registry, Registry) else FixedRegistry(registry),
                limits(settings),
            ),
        ),
        DashboardOptions(
            url_prefix=DASHBOARD_PATH + "/",
            mounted=True,
            users_file=settings.dashboard_users_file,
            logins=logins,
            session_secret=None if secret is None else secret.get_secret_value().encode("utf-8"),
            secure_cookies=settings.dashboard_secure_cookies,
        ),
    )

    @app.get(DASHBOARD_PATH, include_in_schema=False)
    def dashboard_home() -> RedirectResponse:
        return RedirectResponse(DASHBOARD_PATH + "/", status_code=308)

    # a2wsgi types its ASGI interface with its own TypedDicts; Starlette's are looser aliases.
    wsgi = cast(ASGIApp, WSGIMiddleware(dashboard.server, workers=DASHBOARD_WORKERS))
    app.mount(DASHBOARD_PATH, wsgi)
    return app


@contextmanager
def open_lock_keeper(
    settings: Settings,
    management: Management | None,
    registry: Registry | RegistrySource,
    store: Store,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Iterator[KeeperThread | None]:
    """The lock keeper (``stallwatch.lockkeeper``) on its thread, publishing as
    ``stallwatch-command``; hand its ``observe`` to the live view. None without the
    market database, where locks are kept: a failed batch is then alerted, not locked."""
    if management is None:
        log.info("markets from files: a batch that fails its rapid test is not locked")
        yield None
        return
    from marketdb.locks import Locks
    from mqttedge.publisher import RetainedPublisher
    from stallwatch.lockkeeper import KeeperThread, LockKeeper

    def markets() -> Mapping[str, Market]:
        current = registry if isinstance(registry, Registry) else registry.current()
        return current.markets

    publisher = RetainedPublisher(command_mqtt_options(settings))
    publisher.start()
    keeper = LockKeeper(Locks(management.sessions, clock=now), markets, publisher, clock=now)
    thread = KeeperThread(
        keeper, on_start=lambda: keeper.start_up(store), sweep=lambda: keeper.sweep(store)
    )
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()
        publisher.close()


@contextmanager
def open_management(
    settings: Settings, store: Store, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> Iterator[Management | None]:
    """The market database's changes, with the broker's users following the devices when
    ``mqtt_admin_password_file`` is set; None when the markets come from market files."""
    if settings.markets:
        yield None
        return
    from marketdb.database import open_database, session_factory
    from marketdb.management import Management
    from marketview.stock import batches_on_hand

    def open_batches(market: str, vendor: str) -> list[str]:
        return batches_on_hand(store.batch_balances, market, vendor, now())

    sessions = session_factory(open_database(settings.market_database))
    admin = broker_admin_options(settings)
    if admin is None:
        yield Management(sessions, open_batches=open_batches)
        return
    from stallwatch.dynsec import DynsecControl

    with DynsecControl(admin) as broker:
        yield Management(sessions, broker=broker, open_batches=open_batches)
