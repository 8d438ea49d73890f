"""How long each kind of data is kept, per market: the market file's ``[retention]`` table.

One time-to-live for everything either keeps heartbeats for years or throws
away records the law wants kept, so the days are set per *kind* of data
(:class:`DataKind`). Which stored measurement or table belongs to which kind is
the stores' business (``storage.interfaces.retention``); this module is pure:
the days, their defaults and checks, and the cut-off they give at a moment.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DataKind(StrEnum):
    """What a stored row is, as far as keeping it goes."""

    #: sales and batches (and their indexes): the food-safety record
    TRACE = "trace"
    #: price changes of screens
    PRICES = "prices"
    #: scale status reports (raw)
    HEARTBEATS = "heartbeats"
    #: gate counter readings (raw)
    GATE_COUNTS = "gate_counts"
    #: messages ingest rejected
    DEAD_LETTERS = "dead_letters"
    #: the hourly sales and footfall rollups
    ROLLUPS = "rollups"


#: China's Food Safety Law (art. 50, 53) wants purchase and sales records kept at
#: least six months past the shelf life and at least two years where there is none.
MIN_TRACE_DAYS: Final = 730
#: A century: beyond that a cut-off is no longer a meaningful date.
MAX_DAYS: Final = 36_500

DEFAULT_DAYS: Final[dict[DataKind, int]] = {
    DataKind.TRACE: 3 * 365,
    DataKind.PRICES: 2 * 365,
    DataKind.HEARTBEATS: 30,
    DataKind.GATE_COUNTS: 90,
    DataKind.DEAD_LETTERS: 90,
    DataKind.ROLLUPS: 10 * 365,
}

Days = Annotated[int, Field(strict=True, ge=1, le=MAX_DAYS)]


class RetentionPolicy(BaseModel):
    """Days each kind of data of one market is kept; the ``[retention]`` table.

    Validated like the rest of the market file (unknown keys are errors). Trace
    records are kept at least :data:`MIN_TRACE_DAYS`, and the rollups at least as
    long as the raw rows they summarise (sales and gate counts), since queries
    over whole hours read only the rollups.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    trace: Days = DEFAULT_DAYS[DataKind.TRACE]
    prices: Days = DEFAULT_DAYS[DataKind.PRICES]
    heartbeats: Days = DEFAULT_DAYS[DataKind.HEARTBEATS]
    gate_counts: Days = DEFAULT_DAYS[DataKind.GATE_COUNTS]
    dead_letters: Days = DEFAULT_DAYS[DataKind.DEAD_LETTERS]
    rollups: Days = DEFAULT_DAYS[DataKind.ROLLUPS]

    @model_validator(mode="after")
    def _lawful_and_consistent(self) -> RetentionPolicy:
        if self.trace < MIN_TRACE_DAYS:
            raise ValueError(
                f"retention.trace is {self.trace} days; trace records (sales, batches) must be "
                f"kept at least {MIN_TRACE_DAYS} days (Food Safety Law art. 50, 53: two years)"
            )
        for raw in (DataKind.TRACE, DataKind.GATE_COUNTS):
            if self.rollups < self.days(raw):
                raise ValueError(
                    f"retention.rollups ({self.rollups} days) is shorter than retention.{raw} "
                    f"({self.days(raw)} days); the hourly rollups answer for whole hours and "
                    "must be kept at least as long as the raw rows they summarise"
                )
        return self

    def days(self, kind: DataKind) -> int:
        days: int = getattr(self, kind.value)
        return days

    def keep(self, kind: DataKind) -> timedelta:
        return timedelta(days=self.days(kind))

    def cutoff(self, kind: DataKind, now: datetime) -> datetime:
        """Rows of ``kind`` older than this (device time, UTC) may go, as of ``now``.

        Floored to the UTC hour, so that an hour is expired or kept as a whole:
        queries read whole hours from the rollups and only the edge hours raw.
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        moment = now.astimezone(UTC) - self.keep(kind)
        return moment.replace(minute=0, second=0, microsecond=0)

    def shortest(self) -> timedelta:
        """The shortest time any kind is kept."""
        return min(self.keep(kind) for kind in DataKind)
