"""Rapid tests of a market day: batches tested, passed and failed, per category.

The one place that counts them, for every view that shows them (the API, the
dashboard, the public screens). A day's tests are the intake tests of the batches
taken in that day (part of each batch's record) and the tests reported that day
after intake (``RapidTestReport``: spot checks and re-tests). A batch tested more
than once counts once, by its latest test of the day: a batch that passed at
intake and failed a spot check at noon is a failed batch that day. Days are local
calendar days of the market's time zone.

Most batches are not tested at intake (a market tests a sample, to a daily quota):
the day's *untested* batches are those taken in that day that no test of the day
covered, at intake or after; they go on sale untested.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from marketview.analytics import UNKNOWN_CATEGORY, local_day_range
from schemas.registry import Market
from storage.interfaces.traceability import BatchRow, TraceabilityStore


@dataclass(frozen=True, slots=True)
class BatchTest:
    """One rapid test of a batch: its intake's or a later report's."""

    trace_code: str
    vendor: str
    plu: str
    passed: bool
    inhibition_pct: Decimal
    ts: datetime
    at_intake: bool


@dataclass(frozen=True, slots=True)
class BatchesTested:
    """Batches tested, passed and failed (by their latest test), and the tests made."""

    category: str
    batches: int
    passed: int
    failed: int
    tests: int
    #: batches taken in that day that no test covered that day (at intake or after)
    untested: int = 0

    @property
    def pass_rate_pct(self) -> Decimal | None:
        """Passed batches per 100 tested, to one decimal (half up); None without tests."""
        if not self.batches:
            return None
        exact = Decimal(self.passed * 100) / Decimal(self.batches)
        return exact.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class DayOfTests:
    """A market day's rapid tests: per category (by name) and in all."""

    market: str
    day: date
    categories: tuple[BatchesTested, ...]
    total: BatchesTested
    failed: tuple[BatchTest, ...]
    #: batches the market must test that day (``[food_safety]``); 0: no quota
    quota: int

    @property
    def quota_met(self) -> bool:
        """Whether as many batches were tested as the quota asks (re-tests not counted
        again: the quota is of batches)."""
        return self.total.batches >= self.quota


ALL_CATEGORIES = "all"


def tests_of_batch(
    store: TraceabilityStore, market: str, batch: BatchRow | None, trace_code: str
) -> tuple[BatchTest, ...]:
    """Every test of a batch, oldest first: its intake's (if tested then) and every later
    report (one bounded read, ``rapid_tests_of_batch``). Its state follows the last."""
    tests = [
        BatchTest(r.trace_code, r.vendor, r.plu, r.passed, r.inhibition_pct, r.ts, False)
        for r in store.rapid_tests_of_batch(market, trace_code)
    ]
    passed, pct = (None, None) if batch is None else (batch.rapid_test_passed, batch.inhibition_pct)
    if batch is not None and passed is not None and pct is not None:  # tested at intake
        tests.append(
            BatchTest(batch.trace_code, batch.vendor, batch.plu, passed, pct, batch.ts, True)
        )
    return tuple(sorted(tests, key=lambda test: (test.ts, not test.at_intake)))


#: A batch as taken in: (trace code, vendor, PLU).
BatchKey = tuple[str, str, str]


def day_of_tests(store: TraceabilityStore, market: Market, day: date) -> DayOfTests:
    """The rapid tests of ``day``: two reads (the day's batches and its reports)."""
    start, end = local_day_range(day, day, market.tz)
    batches = store.batches(market.id, start, end)
    tests = [
        *(
            BatchTest(
                b.trace_code, b.vendor, b.plu, b.rapid_test_passed, b.inhibition_pct, b.ts, True
            )
            for b in batches
            if b.rapid_test_passed is not None and b.inhibition_pct is not None
        ),
        *(
            BatchTest(r.trace_code, r.vendor, r.plu, r.passed, r.inhibition_pct, r.ts, False)
            for r in store.rapid_tests(market.id, start, end)
        ),
    ]
    taken_in = [(b.trace_code, b.vendor, b.plu) for b in batches]
    return tally_day(market, day, tests, taken_in=taken_in)


def tally_day(
    market: Market, day: date, tests: Iterable[BatchTest], *, taken_in: Iterable[BatchKey] = ()
) -> DayOfTests:
    """:func:`day_of_tests` on given tests and the day's batches (pure: tested on hand-made
    ones). A batch taken in that no test of the day covers counts as untested."""
    latest: dict[BatchKey, BatchTest] = {}
    made: dict[str, int] = {}
    for one in sorted(tests, key=lambda test: (test.ts, not test.at_intake)):
        latest[(one.trace_code, one.vendor, one.plu)] = one
        category = _category(market, one.plu)
        made[category] = made.get(category, 0) + 1
    untested: dict[str, int] = {}
    for key in dict.fromkeys(taken_in):  # each batch once, in order
        if key not in latest:
            category = _category(market, key[2])
            untested[category] = untested.get(category, 0) + 1
    per_category: dict[str, list[BatchTest]] = {}
    for one in latest.values():
        per_category.setdefault(_category(market, one.plu), []).append(one)
    categories = tuple(
        _tally(
            category,
            per_category.get(category, []),
            made.get(category, 0),
            untested.get(category, 0),
        )
        for category in sorted(made.keys() | untested.keys())
    )
    total = _tally(
        ALL_CATEGORIES, list(latest.values()), sum(made.values()), sum(untested.values())
    )
    failed = tuple(
        sorted((one for one in latest.values() if not one.passed), key=lambda test: test.ts)
    )
    return DayOfTests(
        market.id, day, categories, total, failed, market.food_safety.daily_test_quota
    )


def _tally(category: str, batches: list[BatchTest], tests: int, untested: int) -> BatchesTested:
    passed = sum(one.passed for one in batches)
    return BatchesTested(category, len(batches), passed, len(batches) - passed, tests, untested)


def _category(market: Market, plu: str) -> str:
    product = market.products.get(plu)
    return UNKNOWN_CATEGORY if product is None else product.category.value
