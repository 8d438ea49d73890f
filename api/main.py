"""Builds the HTTP API. Wiring only: the routes live in ``api.routers``, the rest beside them.

``/api/v1/...``   the versioned API (one router per resource)
``/healthz``, ``/readyz``, ``/metrics``   operations, unversioned
``/docs``, ``/openapi.json``   the OpenAPI document and its browser

Read-only price and trace endpoints are public; everything else needs a bearer
token (:mod:`api.security`). Errors are JSON (:mod:`api._exceptions`). Money is
integer fen, with display prices as decimal strings, never floats.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI

from api._exceptions import API_ERRORS, install_error_handlers
from api.deps import AppContext
from api.metrics import ApiMetrics, MetricsMiddleware, RouteTemplates, install_ingest_collector
from api.routers import (
    audit,
    batches,
    device_registry,
    devices,
    food_safety,
    footfall,
    history,
    ops,
    prices,
    products,
    sales,
    stalls,
    trace,
    vendors,
)
from api.security import BodySizeLimit, TokenAuthority, TokenStore
from ingest.validate import Limits, Validator
from marketdb.management import Management
from marketview.live_mqtt import LiveView
from schemas.registry import FixedRegistry, Registry, RegistrySource
from storage.base import Store
from storage.outage import OutageLog

if TYPE_CHECKING:
    from marketdb.locks import LockService

log = logging.getLogger("api")

API_PREFIX = "/api/v1"
#: The OpenAPI document's version: the major number is the one in API_PREFIX.
API_VERSION = "1.0"
#: No endpoint takes more than a batch registration; refuse large bodies before parsing.
MAX_BODY_BYTES = 64 * 1024

DESCRIPTION = """\
Monitoring of smart farmers' markets: prices, traceability, footfall, sales and devices.

* **Authentication**: price and trace reads are public; everything else needs
  `Authorization: Bearer <token>` with a token from `stallwatch api-token create`
  (roles `administrator`, `manager`, `viewer`, `screen`, `monitor`). 401: no or unknown
  token; 403: the token's role or market does not cover the request.
* **Management** (vendors, stalls, products, the device registry, the audit log) needs
  the market database. Reads answer the record's version as `ETag`; an edit sends it
  back in `If-Match` and gets 412 when someone changed the record since, 428 without it.
* **Errors** are JSON: `{"error": {"code": "...", "message": "...", "details": [...]}}`.
* **Money** is integer fen (分), with display prices as decimal strings; never floats.
* **Operations**: `/healthz`, `/readyz` and `/metrics` (Prometheus) are outside `/api/v1`.
"""

_VERSIONED: tuple[APIRouter, ...] = (
    prices.router,
    history.router,
    trace.router,
    footfall.router,
    sales.router,
    devices.router,
    batches.router,
    food_safety.router,
    vendors.router,
    stalls.router,
    products.router,
    device_registry.router,
    audit.router,
)


@dataclass(frozen=True, slots=True)
class ApiOptions:
    """What the composition root tells the API."""

    #: Where ingest keeps its spool files, whose backlog ``/metrics`` reports.
    spool_dir: Path
    #: None (and no ``tokens``): every endpoint that needs a token answers 503.
    tokens_file: Path | None = None
    #: Tokens from elsewhere (the market database); takes the place of ``tokens_file``.
    tokens: TokenAuthority | None = None
    #: The ingest edge check, for what the API accepts as if it came over MQTT.
    limits: Limits = field(default_factory=Limits)


def create_app(
    *,
    options: ApiOptions,
    registry: Registry | RegistrySource,
    store: Store,
    live: LiveView,
    outage: OutageLog | None = None,
    management: Management | None = None,
    lock_keeper: LockService | None = None,
) -> FastAPI:
    """The API over this store and live view; starting and stopping them is the caller's job.

    ``outage`` is shared with whatever else reads the same store in this process
    (the dashboard), so one outage is one log line. ``management`` is the market
    database's (None when the registry comes from market files: the management routes
    then answer 503).
    """
    metrics = ApiMetrics()
    outage = outage or OutageLog(log)
    app = FastAPI(title="stallwatch", version=API_VERSION, description=DESCRIPTION)
    source = FixedRegistry(registry) if isinstance(registry, Registry) else registry
    app.state.context = AppContext(
        registry_source=source,
        store=store,
        live=live,
        tokens=options.tokens or (TokenStore(options.tokens_file) if options.tokens_file else None),
        validator=Validator(source, options.limits),
        metrics=metrics,
        outage=outage,
        management=management,
        lock_keeper=lock_keeper,
    )
    templates = RouteTemplates()
    # Routes are tried in the order included, so the prices router, which screens poll
    # every few seconds, comes first: each router tried before it costs every poll ~8 us.
    for router in _VERSIONED:
        app.include_router(router, prefix=API_PREFIX, responses=API_ERRORS)
        templates.add_router(router, API_PREFIX)
    app.include_router(ops.router)
    templates.add_router(ops.router)
    # The public trace page lives at /trace/..., the short URL a receipt's QR code carries.
    app.include_router(trace.pages)
    templates.add_router(trace.pages)
    # Each middleware added wraps the ones before: metrics see every answer, errors included.
    install_error_handlers(app, outage=outage, on_store_error=metrics.count_store_error)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(MetricsMiddleware, metrics=metrics, templates=templates)
    install_ingest_collector(metrics, options.spool_dir, store, live)
    return app
