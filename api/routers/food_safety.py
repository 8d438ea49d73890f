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
from pydantic import BaseModel, ConfigDict, Field

from api._exceptions import AUTH_ERRORS, ManagementUnavailable, error_responses
from api.deps import ContextDep, DayParam, MarketDep, StoreDep, utc_now
from api.security import Manager, Viewer
from marketdb.locks import MAX_REASON_CHARS, BatchLock, LockService
from marketview import foodsafety
from schemas.messages import Plu, TraceCode

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
    trace_code: Annotated[TraceCode, Path(description="Trace code of the locked batch.")],
    plu: Annotated[Plu, Path(description="PLU of the locked product.")],
    body: UnlockRequest,
    keeper: KeeperDep,
    caller: Manager,
) -> LockOut:
    lifted = keeper.unlock(market.id, trace_code, plu, actor=caller.name, reason=body.reason)
    return _lock(market.tz, lifted)


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
