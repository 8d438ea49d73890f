"""Footfall of a market day: people in per gate and per hour, the number inside now,
and the same weekday of the previous four weeks. Managers only.

Built from the gates' cumulative counters by :meth:`~storage.base.Store.footfall_hourly`
(lost, repeated or reset counter messages do not skew it); shaped by
:mod:`marketview.analytics`. A day is a local calendar day of the market's time zone.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from api._exceptions import AUTH_ERRORS
from api.deps import DayParam, MarketDep, StoreDep, utc_now
from api.security import Viewer
from marketview import analytics
from marketview.analytics import HourTotals
from schemas.registry import Market
from storage.base import Store

router = APIRouter(tags=["footfall"])

#: How many weeks back the same weekday is compared.
WEEKS_BACK = 4


# -- response models -------------------------------------------------------------------


class GateFootfall(BaseModel):
    gate: str
    name: str | None = Field(description="Gate name from the market file; null if unlisted.")
    people_in: int = Field(ge=0)
    people_out: int = Field(ge=0)


class HourFootfall(BaseModel):
    hour: datetime = Field(description="Start of the local hour.")
    people_in: int = Field(ge=0)
    people_out: int = Field(ge=0)
    occupancy: int = Field(
        description="People inside at the end of the hour: in minus out since the day began."
    )


class PreviousDay(BaseModel):
    date: date
    people_in: int = Field(ge=0)
    people_out: int = Field(ge=0)
    hours: list[HourFootfall]


class Footfall(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "market": "nanmen",
                    "date": "2026-11-21",
                    "timezone": "Asia/Shanghai",
                    "people_in": 6120,
                    "people_out": 5480,
                    "occupancy_now": 640,
                    "per_gate": [
                        {"gate": "G-N", "name": "北门", "people_in": 2100, "people_out": 1900}
                    ],
                    "per_hour": [
                        {
                            "hour": "2026-11-21T07:00:00+08:00",
                            "people_in": 820,
                            "people_out": 310,
                            "occupancy": 510,
                        }
                    ],
                    "previous_weeks": [
                        {"date": "2026-11-14", "people_in": 6034, "people_out": 6031, "hours": []}
                    ],
                }
            ]
        }
    )

    market: str
    date: date
    timezone: str
    people_in: int = Field(ge=0, description="People counted entering, all gates, all day.")
    people_out: int = Field(ge=0)
    occupancy_now: int | None = Field(
        description=(
            "People inside now (in minus out since the market day began, i.e. local "
            "midnight, when the market is empty); null unless the date is today."
        )
    )
    per_gate: list[GateFootfall]
    per_hour: list[HourFootfall] = Field(description="Hours with counter readings, in order.")
    previous_weeks: list[PreviousDay] = Field(
        description=f"The same weekday of the previous {WEEKS_BACK} weeks, newest first."
    )


# -- endpoint -------------------------------------------------------------------------------


@router.get(
    "/markets/{market}/footfall",
    response_model=Footfall,
    responses=AUTH_ERRORS,
    summary="Footfall of a market day, per gate and hour, compared with previous weeks",
    operation_id="footfall",
)
def footfall(
    market: MarketDep,
    store: StoreDep,
    _viewer: Viewer,
    now: Annotated[datetime, Depends(utc_now)],
    day: DayParam = None,
) -> Footfall:
    today = now.astimezone(market.tz).date()
    day = day or today
    # Today counts readings up to now only: a counter whose clock runs ahead must
    # not add people who have not come yet to the occupancy.
    frame = _day_frame(store, market, day, until=now if day == today else None)
    people_in, people_out = analytics.footfall_totals(frame)
    return Footfall(
        market=market.id,
        date=day,
        timezone=market.spec.market.timezone,
        people_in=people_in,
        people_out=people_out,
        occupancy_now=analytics.occupancy(frame) if day == today else None,
        per_gate=[
            GateFootfall(
                gate=totals.gate,
                name=_gate_name(market, totals.gate),
                people_in=totals.people_in,
                people_out=totals.people_out,
            )
            for totals in analytics.footfall_per_gate(frame)
        ],
        per_hour=_hours(analytics.footfall_per_hour(frame)),
        previous_weeks=[
            _previous_day(store, market, day - timedelta(weeks=weeks))
            for weeks in range(1, WEEKS_BACK + 1)
        ],
    )


def _day_frame(
    store: Store, market: Market, day: date, *, until: datetime | None = None
) -> pd.DataFrame:
    start, end = analytics.local_day_range(day, day, market.tz)
    if until is not None:
        end = max(start, min(end, until))
    return analytics.footfall_frame(store.footfall_hourly(market.id, start, end))


def _previous_day(store: Store, market: Market, day: date) -> PreviousDay:
    frame = _day_frame(store, market, day)
    people_in, people_out = analytics.footfall_totals(frame)
    return PreviousDay(
        date=day,
        people_in=people_in,
        people_out=people_out,
        hours=_hours(analytics.footfall_per_hour(frame)),
    )


def _hours(hours: list[HourTotals]) -> list[HourFootfall]:
    return [
        HourFootfall(
            hour=hour.hour,
            people_in=hour.people_in,
            people_out=hour.people_out,
            occupancy=hour.occupancy,
        )
        for hour in hours
    ]


def _gate_name(market: Market, gate_id: str) -> str | None:
    names = {gate.id: gate.name for gate in market.spec.gates}
    return names.get(gate_id)
