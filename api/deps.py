"""Dependency providers: what a route may ask FastAPI for.

``create_app`` puts one :class:`AppContext` on ``app.state``; everything here
reads it from the request, so nothing is global and two apps in one process
(tests) never share state. Routes ask by type alias::

    def devices(market: MarketDep, store: StoreDep, who: ScreenOrManager) -> ...

(the token aliases live in :mod:`api.security`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Path, Query, Request
from pydantic import Field

from api._exceptions import UnknownMarket
from api.metrics import ApiMetrics
from ingest.validate import Validator
from marketview.analytics import EARLIEST_DAY, LATEST_DAY
from marketview.live_mqtt import LiveView
from schemas.messages import Identifier
from schemas.registry import Market, Registry, RegistrySource
from storage.base import Store
from storage.outage import OutageLog

if TYPE_CHECKING:
    # Only for the annotation: api.security itself depends on this module.
    from api.security import TokenAuthority
    from marketdb.locks import LockService
    from marketdb.management import Management


@dataclass(frozen=True, slots=True)
class AppContext:
    """Everything one running API shares between requests."""

    #: Market files (fixed) or the market database (followed): read per request.
    registry_source: RegistrySource
    store: Store
    live: LiveView
    #: None when no tokens are configured: protected routes then answer 503.
    tokens: TokenAuthority | None
    #: The ingest edge check, for what the API accepts as if it came over MQTT.
    validator: Validator
    metrics: ApiMetrics
    #: Where store failures are reported: one line per outage, shared with the dashboard.
    outage: OutageLog
    #: The market database's changes; None when the registry comes from market files.
    management: Management | None = None
    #: Locks failed batches on scales and screens; None without the market database.
    lock_keeper: LockService | None = None


def get_context(request: Request) -> AppContext:
    context = request.app.state.context
    if not isinstance(context, AppContext):
        raise TypeError("the app was not built by api.main.create_app")
    return context


ContextDep = Annotated[AppContext, Depends(get_context)]


async def get_store(context: ContextDep) -> AsyncIterator[Store]:
    """The store; a route that used it and returned ends a logged outage.

    The code after ``yield`` runs only when the route did not raise, so a
    request answered from the store tells the outage log the store is back.
    An async generator, so it runs on the event loop, not in the thread pool.
    """
    yield context.store
    context.outage.answered()


def get_registry(context: ContextDep) -> Registry:
    return context.registry_source.current()


def get_live(context: ContextDep) -> LiveView:
    return context.live


StoreDep = Annotated[Store, Depends(get_store)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
LiveDep = Annotated[LiveView, Depends(get_live)]

MarketId = Annotated[
    Identifier, Path(description="Market id from the market file.", examples=["nanmen"])
]
"""The ``{market}`` path parameter: shaped like every registry id (else 422)."""


def get_market(market: MarketId, registry: RegistryDep) -> Market:
    """The market the path names; 404 when it is not registered."""
    found = registry.markets.get(market)
    if found is None:
        raise UnknownMarket(market)
    return found


MarketDep = Annotated[Market, Depends(get_market)]


def utc_now() -> datetime:
    """The current time; a dependency tests can fix (one override covers every router)."""
    return datetime.now(UTC)


#: EARLIEST_DAY to LATEST_DAY as JSON Schema can state it of a date string: the years 20xx.
#: (``minimum`` applies to numbers only.) Enforced by the bounds; stated by the pattern, so a
#: client generating requests from the OpenAPI document never sends a day it would refuse.
DAY_PATTERN = r"^20[0-9]{2}-[0-9]{2}-[0-9]{2}$"
MarketDay = Annotated[
    date,
    Field(ge=EARLIEST_DAY, le=LATEST_DAY, json_schema_extra={"pattern": DAY_PATTERN}),
]
"""A calendar day the aggregates accept, 2000-01-01 to 2099-12-31."""

DayParam = Annotated[
    MarketDay | None,
    Query(
        alias="date",
        description="Local market day (YYYY-MM-DD); today in the market's time zone if omitted.",
    ),
]
