"""Food safety: a market day's rapid tests per category (``marketview.foodsafety``), and
the batches locked on their vendor's scales and screens (``stallwatch.lockkeeper``).

The day's tests are public and read-only: markets must publish their test results (to
shoppers, on the hall screens), and the figures name no person. The failed batches are
listed by trace code, vendor and product, as the public trace page shows them.

Locks are management data: a viewer's token lists them, a manager's lifts one, with
the reason on record (a passed re-test, a finding); the lift is published to the
vendor's scales and screens at once.
"""

from __future__ import annotations

from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from api._exceptions import AUTH_ERRORS, ManagementUnavailable, NotFound, error_responses
from api.deps import ContextDep, DayParam, MarketDep, StoreDep, utc_now
from api.routers.trace import public_base_url
from api.security import Manager, Viewer
from marketdb.locks import MAX_REASON_CHARS, BatchLock, LockService
from marketview import foodsafety, recall
from marketview.recall import receipt_page_path
from schemas.messages import Plu, TraceCode
from storage.interfaces.sales import SaleRow

router = APIRouter(tags=["food safety"])


class Tally(BaseModel):
    category: str = Field(description="Product category, or `all` for the whole market.")
    batches: int = Field(ge=0, description="Batches tested that day.")
    passed: int = Field(ge=0, description="Batches whose latest test that day passed.")
    failed: int = Field(ge=0, description="Batches whose latest test that day failed.")
    tests: int = Field(ge=0, description="Tests made (a re-tested batch counts each test).")
    untested: int = Field(
        ge=0,
        description="Batches taken in that day that no test covered that day (at intake or "
        "after): on sale untested.",
    )
    pass_rate_pct: Decimal | None = Field(
        description="Passed per 100 batches tested, one decimal; null without tests."
    )


class FailedBatch(BaseModel):
    trace_code: str
    vendor: str
    plu: str
    inhibition_pct: Decimal
    tested_at: datetime
    at_intake: bool = Field(description="False: a spot check or re-test after intake.")


class DayTests(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "market": "nanmen",
                    "date": "2026-11-21",
                    "quota": 12,
                    "quota_met": True,
                    "total": {
                        "category": "all",
                        "batches": 412,
                        "passed": 405,
                        "failed": 7,
                        "tests": 425,
                        "untested": 1230,
                        "pass_rate_pct": "98.3",
                    },
                    "categories": [],
                    "failed": [],
                }
            ]
        }
    )

    market: str
    date: date
    quota: int = Field(
        ge=0, description="Batches the market must test each day (its `[food_safety]`); 0: none."
    )
    quota_met: bool = Field(description="Whether that many batches were tested this day.")
    total: Tally
    categories: list[Tally]
    failed: list[FailedBatch]


@router.get(
    "/markets/{market}/food-safety/tests",
    response_model=DayTests,
    summary="A market day's rapid tests: batches tested, passed and failed per category",
    operation_id="rapid_tests_of_day",
)
def rapid_tests_of_day(
    market: MarketDep,
    store: StoreDep,
    now: Annotated[datetime, Depends(utc_now)],
    day: DayParam = None,
) -> DayTests:
    found = foodsafety.day_of_tests(store, market, day or now.astimezone(market.tz).date())
    return DayTests(
        market=found.market,
        date=found.day,
        quota=found.quota,
        quota_met=found.quota_met,
        total=_tally(found.total),
        categories=[_tally(one) for one in found.categories],
        failed=[
            FailedBatch(
                trace_code=one.trace_code,
                vendor=one.vendor,
                plu=one.plu,
                inhibition_pct=one.inhibition_pct,
                tested_at=one.ts.astimezone(market.tz),
                at_intake=one.at_intake,
            )
            for one in found.failed
        ],
    )


def _tally(tally: foodsafety.BatchesTested) -> Tally:
    return Tally(
        category=tally.category,
        batches=tally.batches,
        passed=tally.passed,
        failed=tally.failed,
        tests=tally.tests,
        untested=tally.untested,
        pass_rate_pct=tally.pass_rate_pct,
    )


# -- locks ----------------------------------------------------------------------------


class LockOut(BaseModel):
    trace_code: str
    vendor: str
    plu: str
    reason: str = Field(description="`rapid_test_failed`, or `manager`.")
    cause: str = Field(description="What caused it: the failed test (time, inhibition).")
    locked_at: datetime
    unlocked_at: datetime | None
    unlocked_by: str | None
    unlock_reason: str | None


class UnlockRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        min_length=4,
        max_length=MAX_REASON_CHARS,
        description="Why the batch may be sold again (a passed re-test, a finding); audited.",
    )


def _keeper(context: ContextDep) -> LockService:
    if context.lock_keeper is None:
        raise ManagementUnavailable(
            "locks need the market database and the lock keeper of `stallwatch serve` "
            "(see docs/food-safety.md)"
        )
    return context.lock_keeper


KeeperDep = Annotated[LockService, Depends(_keeper)]

_TraceCodePath = Annotated[TraceCode, Path(description="Trace code of the locked batch.")]
_PluPath = Annotated[Plu, Path(description="PLU of the locked product.")]


@router.get(
    "/markets/{market}/food-safety/locks",
    response_model=list[LockOut],
    responses=AUTH_ERRORS,
    summary="Batches locked on their vendor's scales and screens",
    operation_id="batch_locks",
)
def batch_locks(
    market: MarketDep,
    keeper: KeeperDep,
    _viewer: Viewer,
    lifted: Annotated[bool, Query(description="Also the locks lifted since.")] = False,
) -> list[LockOut]:
    return [_lock(market.tz, lock) for lock in keeper.locks(market.id, lifted=lifted)]


@router.post(
    "/markets/{market}/food-safety/locks/{trace_code}/{plu}/unlock",
    response_model=LockOut,
    responses={**AUTH_ERRORS, **error_responses(400, 404, 409)},
    summary="Lift a batch's lock, with the reason; the vendor's devices are told at once",
    operation_id="unlock_batch",
)
def unlock_batch(
    market: MarketDep,
    trace_code: _TraceCodePath,
    plu: _PluPath,
    body: UnlockRequest,
    keeper: KeeperDep,
    caller: Manager,
) -> LockOut:
    lifted = keeper.unlock(market.id, trace_code, plu, actor=caller.name, reason=body.reason)
    return _lock(market.tz, lifted)


class RecalledSale(BaseModel):
    scale: str
    receipt: int = Field(description="The sale's `msg_id`: the receipt number on its scale.")
    sold_at: datetime
    weight_g: int
    unit_price_fen_per_kg: int
    total_fen: int
    receipt_page: str = Field(
        description="The receipt's public trace page (its QR code's address); it says that "
        "the batch later failed its test."
    )


class RecallOut(BaseModel):
    lock: LockOut = Field(description="The batch's latest lock of this product.")
    recall: list[RecalledSale] = Field(
        description="Every sale of the batch's product by its vendor before the lock, "
        "oldest first: the buyers to reach."
    )
    recalled_g: int = Field(ge=0, description="Weight sold before the lock.")
    recalled_fen: int = Field(ge=0, description="Money taken before the lock.")
    sold_while_locked: list[RecalledSale] = Field(
        description="Sales made while the lock held: the scale ignored it (flagged, alerted)."
    )


def _recall(
    market: MarketDep, trace_code: _TraceCodePath, plu: _PluPath, keeper: KeeperDep, store: StoreDep
) -> recall.Recall:
    found = recall.latest_recall(store, keeper.of_batch(market.id, trace_code), plu)
    if found is None:
        raise NotFound(f"batch {trace_code!r}, product {plu!r} has never been locked")
    return found


RecallDep = Annotated[recall.Recall, Depends(_recall)]
BaseUrlDep = Annotated[str, Depends(public_base_url)]


@router.get(
    "/markets/{market}/food-safety/locks/{trace_code}/{plu}/recall",
    response_model=RecallOut,
    responses={**AUTH_ERRORS, **error_responses(404)},
    summary="Recall list of a locked batch: its sales before the lock, and those made while locked",
    operation_id="batch_recall",
)
def batch_recall(
    _viewer: Viewer, market: MarketDep, found: RecallDep, base_url: BaseUrlDep
) -> RecallOut:
    def sale_out(sale: SaleRow) -> RecalledSale:
        return RecalledSale(
            scale=sale.scale,
            receipt=sale.msg_id,
            sold_at=sale.ts.astimezone(market.tz),
            weight_g=sale.weight_g,
            unit_price_fen_per_kg=sale.unit_price_fen_per_kg,
            total_fen=sale.total_fen,
            receipt_page=base_url + receipt_page_path(market.id, sale.scale, sale.msg_id),
        )

    return RecallOut(
        lock=_lock(market.tz, found.lock),
        recall=[sale_out(sale) for sale in found.before_lock],
        recalled_g=found.recalled_g,
        recalled_fen=found.recalled_fen,
        sold_while_locked=[sale_out(sale) for sale in found.while_locked],
    )


@router.get(
    "/markets/{market}/food-safety/locks/{trace_code}/{plu}/recall.csv",
    response_class=Response,
    responses={
        **AUTH_ERRORS,
        **error_responses(404),
        200: {"content": {"text/csv": {}}, "description": "The recall list as CSV."},
    },
    summary="Recall list of a locked batch as CSV (sales before the lock, then those flagged)",
    operation_id="batch_recall_csv",
)
def batch_recall_csv(
    _viewer: Viewer, market: MarketDep, found: RecallDep, base_url: BaseUrlDep
) -> Response:
    name = f"recall-{market.id}-{found.lock.trace_code}-{found.lock.plu}.csv"
    return Response(
        recall.recall_csv(found, market.tz, base_url),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _lock(tz: tzinfo, lock: BatchLock) -> LockOut:
    return LockOut(
        trace_code=lock.trace_code,
        vendor=lock.vendor,
        plu=lock.plu,
        reason=lock.reason.value,
        cause=lock.cause,
        locked_at=lock.locked_at.astimezone(tz),
        unlocked_at=None if lock.unlocked_at is None else lock.unlocked_at.astimezone(tz),
        unlocked_by=lock.unlocked_by,
        unlock_reason=lock.unlock_reason,
    )
