"""A market's food-safety settings: the market file's ``[food_safety]`` table.

Markets must rapid-test a number of batches every day (some cities set a floor, for
instance at least 10 batches a day) and show the day's results publicly. The quota is
per market; the read core (``marketview.foodsafety``) says whether a day met it.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field

#: The floor some cities set; a market with no ``[food_safety]`` table is held to it.
DEFAULT_DAILY_TEST_QUOTA: Final = 10
#: More batches than any market receives in a day: a larger quota is a typing error.
MAX_DAILY_TEST_QUOTA: Final = 10_000

Quota = Annotated[int, Field(strict=True, ge=0, le=MAX_DAILY_TEST_QUOTA)]


class FoodSafetyPolicy(BaseModel):
    """A market's ``[food_safety]`` table; unknown keys are errors, as in the whole file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    daily_test_quota: Quota = Field(
        default=DEFAULT_DAILY_TEST_QUOTA,
        description="Batches to rapid-test each day; 0: no quota.",
    )
