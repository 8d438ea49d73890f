"""Operations: liveness, readiness and Prometheus metrics.

These are served at the root, not under ``/api/v1``: probes and scrapers are
configured once per deployment and are not part of the versioned API.
``/healthz`` and ``/readyz`` are public (they say only which check failed; the
reason is logged); ``/metrics`` needs a ``monitor`` or ``manager`` token, and one limited
to a market is shown that market's device series only.
"""

from __future__ import annotations

import logging
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from api._exceptions import AUTH_ERRORS, error_responses
from api.deps import ContextDep
from api.metrics import CONTENT_TYPE
from api.security import Monitor
from marketview.live_mqtt import LiveView
from storage._exceptions import StoreError
from storage.base import Store

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Check(BaseModel):
    name: Literal["store", "broker", "live_view"]
    ok: bool
    message: str | None = Field(default=None, description="Why the check failed.")


class Readiness(BaseModel):
    """Whether this process can serve: 200 when every check passes, else 503."""

    status: Literal["ready", "not_ready"]
    checks: list[Check]


@router.get("/healthz", summary="Liveness: the process serves requests")
async def healthz() -> Health:
    # async on purpose: answered on the event loop, so a saturated thread pool of
    # slow store queries does not make the orchestrator kill a working process.
    return Health()


@router.get(
    "/readyz",
    summary="Readiness: the store answers and the live view follows the broker",
    responses={503: {"model": Readiness, "description": "At least one check failed."}},
)
def readyz(context: ContextDep, response: Response) -> Readiness:
    checks = [_check_store(context.store), *_check_live(context.live)]
    ready = all(check.ok for check in checks)
    if not ready:
        response.status_code = 503
    return Readiness(status="ready" if ready else "not_ready", checks=checks)


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={
        200: {
            "description": "Metrics in the Prometheus text format.",
            "content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
        },
        **AUTH_ERRORS,
        **error_responses(503),
    },
)
def metrics(context: ContextDep, caller: Monitor) -> Response:
    # A token limited to a market sees that market's devices only.
    return Response(context.metrics.exposition(caller.market), media_type=CONTENT_TYPE)


def _check_store(store: Store) -> Check:
    try:
        store.ping()
    except StoreError as exc:
        log.warning("readiness: store ping failed: %s", exc)
        return Check(name="store", ok=False, message="the store did not answer")
    return Check(name="store", ok=True)


def _check_live(live: LiveView) -> list[Check]:
    connected, synced = live.connected, live.synced
    return [
        Check(
            name="broker",
            ok=connected,
            message=None if connected else "not subscribed to the MQTT broker",
        ),
        Check(
            name="live_view",
            ok=synced,
            message=None if synced else "latest prices not loaded from the store yet",
        ),
    ]
