"""Food safety: a market day's rapid tests per category (``marketview.foodsafety``).

Public and read-only: markets must publish their test results (to shoppers, on the
hall screens), and the figures name no person. The failed batches are listed by
trace code, vendor and product, as the public trace page shows them.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from api.deps import DayParam, MarketDep, StoreDep, utc_now
from marketview import foodsafety

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
