"""Food safety: a market day's rapid tests (``marketview.foodsafety``), shaped for the page."""

from __future__ import annotations

from datetime import date

import pandas as pd

from dashboard.queries.common import DashboardData
from marketview import foodsafety
from marketview.foodsafety import DayOfTests
from marketview.recall import Recall, latest_recall

#: Columns of :func:`tally_frame`, one row per category.
TALLY_COLUMNS = (
    "category",
    "batches",
    "passed",
    "failed",
    "tests",
    "untested",
    "pass_rate_pct",
)


def rapid_tests_of_day(data: DashboardData, market_id: str, day: date) -> DayOfTests:
    """The day's tests: two store reads (the day's batches and its later reports)."""
    return foodsafety.day_of_tests(data.store, data.market(market_id), day)


def tally_frame(day: DayOfTests) -> pd.DataFrame:
    """The day's tally per category, in the read core's order (by category id)."""
    return pd.DataFrame(
        [
            (
                one.category,
                one.batches,
                one.passed,
                one.failed,
                one.tests,
                one.untested,
                one.pass_rate_pct,
            )
            for one in day.categories
        ],
        columns=list(TALLY_COLUMNS),
    )


def lock_recalls(data: DashboardData, market_id: str) -> list[Recall] | None:
    """The market's batches locked now, oldest first, each with its recall list; None
    without a lock keeper (markets from files: nothing is locked there)."""
    if data.lock_keeper is None:
        return None
    market = data.market(market_id)
    keeper = data.lock_keeper
    recalls = (
        latest_recall(data.store, keeper.of_batch(market.id, lock.trace_code), lock.plu)
        for lock in keeper.locks(market.id)
    )
    return [recall for recall in recalls if recall is not None]
