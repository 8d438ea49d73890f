"""Footfall: a day by gate and hour, the weekday x hour heatmap, daily totals."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

from dashboard.queries.common import (
    HEATMAP_WEEKS,
    TREND_DAYS,
    DashboardData,
    day_start,
    market_today,
)
from marketview import analytics


def footfall_day(data: DashboardData, market_id: str, day: date) -> pd.DataFrame:
    """``gate, hour, people_in, people_out`` for one local day (hours as local datetimes)."""
    market = data.market(market_id)
    start = day_start(market, day)
    end = min(start + timedelta(days=1), data.now())
    if end <= start:
        return analytics.footfall_frame([])
    frame = analytics.footfall_frame(data.store.footfall_hourly(market.id, start, end))
    return frame[frame["hour"].map(lambda h: h.astimezone(market.tz).date() == day)]


def footfall_heatmap(
    data: DashboardData, market_id: str, weeks: int = HEATMAP_WEEKS
) -> pd.DataFrame:
    """Mean people in per (weekday, local hour) over the last ``weeks`` weeks, today excluded.

    Weekday 0 is Monday. Each weekday's mean is over the dates of that weekday
    with any footfall: a store younger than ``weeks`` weeks is not diluted by
    days before it existed, and within a counted day a quiet hour is a zero.
    """
    market = data.market(market_id)
    today = market_today(market, data.now())
    first = today - timedelta(days=7 * weeks)
    rows = data.store.footfall_hourly(market.id, day_start(market, first), day_start(market, today))
    frame = analytics.footfall_frame(rows)
    local = frame["hour"].map(lambda h: h.astimezone(market.tz))
    shaped = pd.DataFrame(
        {
            "date": local.map(lambda h: h.date()),
            "weekday": local.map(lambda h: h.weekday()).astype("int64"),
            "hour": local.map(lambda h: h.hour).astype("int64"),
            "people_in": frame["people_in"],
        }
    )
    days = shaped.groupby("weekday")["date"].nunique()
    summed = shaped.groupby(["weekday", "hour"])["people_in"].sum().rename("total").reset_index()
    summed["mean_in"] = (summed["total"] / summed["weekday"].map(days)).round(1)
    return summed[["weekday", "hour", "mean_in"]]


def footfall_daily(data: DashboardData, market_id: str, days: int = TREND_DAYS) -> pd.DataFrame:
    """``day, people_in`` for the last ``days`` local days, today so far included; zeros kept."""
    market = data.market(market_id)
    now = data.now()
    today = market_today(market, now)
    first = today - timedelta(days=days - 1)
    frame = analytics.footfall_frame(
        data.store.footfall_hourly(market.id, day_start(market, first), now)
    )
    day = frame["hour"].map(lambda h: h.astimezone(market.tz).date())
    summed = frame.groupby(day)["people_in"].sum()
    every_day = [first + timedelta(days=i) for i in range(days)]
    summed = summed.reindex(every_day, fill_value=0).astype("int64")
    return summed.rename_axis("day").reset_index()
