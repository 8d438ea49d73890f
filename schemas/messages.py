"""Device message contracts, version 1.

These models are the single source of truth for what devices publish. The JSON
Schema files in ``schemas/jsonschema/`` and ``schemas/asyncapi.yaml`` are
exported from them (``stallwatch schemas export``) and a test keeps them in sync.

Units are fixed by the contract so that nothing downstream guesses:

* money is integer fen (分, 0.01 CNY); unit prices are fen per kilogram,
  because a 斤 price in fen is always a whole number of fen per kg;
* weights and quantities are integer grams;
* timestamps are RFC 3339 with an explicit UTC offset.

Every message carries ``msg_id``: a per-device sequence number that only
increases. Together with the device timestamp it identifies the reading, so a
redelivered or replayed message maps onto the very same stored point.
"""

from __future__ import annotations

import unicodedata
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

SCHEMA_VERSION = 1

#: Upper bounds that separate a real reading from a broken or hostile device.
MAX_WEIGHT_G = 150_000  # a market scale's capacity is 30–150 kg
MAX_UNIT_PRICE_FEN_PER_KG = 2_000_000  # ¥20,000/kg: above any fresh produce, even bird's nest
MAX_TOTAL_FEN = 10_000_000  # ¥100,000 for one weighing
MAX_BATCH_G = 50_000_000  # 50 t: a full lorry
MAX_GATE_COUNT = 2**53  # counters are cumulative; only their growth matters
#: Scales may round the total down to whole jiao or yuan (抹零); never up by more than a fen.
MAX_ROUNDING_DOWN_FEN = 100

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
TraceCode = Annotated[
    str, StringConstraints(min_length=4, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
Plu = Annotated[str, StringConstraints(min_length=1, max_length=16, pattern=r"^[0-9A-Za-z-]+$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Grams = Annotated[int, Field(gt=0, le=MAX_WEIGHT_G, strict=True)]
FenPerKg = Annotated[int, Field(gt=0, le=MAX_UNIT_PRICE_FEN_PER_KG, strict=True)]
MsgId = Annotated[int, Field(ge=0, lt=2**63, strict=True)]


#: Floats up to here are exact integers; above, a JSON number like 9007199254740993.0 has
#: already been rounded by the JSON parser and cannot be taken for the integer written.
_EXACT_FLOAT_INTS = 2**53


def _integral_number(value: object) -> object:
    """A JSON number with no fraction, such as ``250000.0``, is an integer in JSON Schema."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_FLOAT_INTS:
        return int(value)
    return value


JsonInt = BeforeValidator(_integral_number)


#: Line/paragraph separators and bidi overrides: invisible, and able to disguise screen text.
_FORBIDDEN_FORMAT_CHARS = frozenset(
    "\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def _no_control_chars(value: str) -> str:
    if any(unicodedata.category(ch) == "Cc" or ch in _FORBIDDEN_FORMAT_CHARS for ch in value):
        raise ValueError(
            "control characters are not allowed (nor line separators or bidi overrides)"
        )
    return value


#: What ``_no_control_chars`` and the stripping of ShortText allow, as JSON Schema states it:
#: no control (Cc) or forbidden format character, and one that is not white space.
_ALLOWED = r"[^\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
_VISIBLE = r"[^\s\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
TEXT_PATTERN = f"^{_ALLOWED}*{_VISIBLE}{_ALLOWED}*$"
Text = Annotated[
    ShortText,
    AfterValidator(_no_control_chars),
    Field(json_schema_extra={"pattern": TEXT_PATTERN}),
]


class _Message(BaseModel):
    """Fields every device message shares."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    v: Literal[1] = Field(default=1, description="Contract version of this payload.")
    msg_id: MsgId = Field(description="Per-device sequence number; only ever increases.")
    ts: AwareDatetime = Field(description="Device time of the reading, RFC 3339 with offset.")


class Sale(_Message):
    """One weighing sold at a stall's scale (topic ``.../scales/{scale}/sale``)."""

    vendor: Identifier = Field(description="Vendor id from the market file; must own the scale.")
    plu: Plu = Field(description="Product look-up code from the market file.")
    weight_g: Grams = Field(description="Net weight sold, grams.")
    tare_g: Annotated[int, Field(ge=0, le=MAX_WEIGHT_G, strict=True)] | None = Field(
        default=None, description="Tare subtracted by the scale, grams."
    )
    unit_price_fen_per_kg: FenPerKg = Field(description="Unit price, fen per kilogram.")
    total_fen: Annotated[int, Field(ge=0, le=MAX_TOTAL_FEN, strict=True)] = Field(
        description="Amount charged, fen. May be rounded down (抹零) by up to ¥1."
    )
    trace_code: TraceCode = Field(description="Trace code of the batch this was sold from.")

    @model_validator(mode="after")
    def _total_matches_weight_and_price(self) -> Sale:
        computed = expected_total_fen(self.weight_g, self.unit_price_fen_per_kg)
        if not computed - MAX_ROUNDING_DOWN_FEN <= self.total_fen <= computed + 1:
            raise ValueError(
                f"total_fen {self.total_fen} does not match weight × price "
                f"({self.weight_g} g × {self.unit_price_fen_per_kg} fen/kg = {computed} fen)"
            )
        return self


def expected_total_fen(weight_g: int, unit_price_fen_per_kg: int) -> int:
    """Total in fen for a weighing, rounded half up as scales do (integer arithmetic)."""
    return (weight_g * unit_price_fen_per_kg + 500) // 1000


class ScaleStatus(_Message):
    """Heartbeat of a scale (topic ``.../scales/{scale}/status``).

    The device registers a Last Will on the same topic with ``online: false`` and
    ``will: true``; the broker publishes it when the scale drops off. Because the
    will was composed at connect time, its ``ts`` is old: ingest stamps a will
    with the time it was received instead.
    """

    online: StrictBool = Field(description="False in the Last Will and on an orderly shutdown.")
    will: StrictBool = Field(default=False, description="True only in the Last Will message.")
    zero_ok: StrictBool | None = Field(default=None, description="Scale reads zero when empty.")
    calibration_due: date | None = Field(
        default=None, description="Date the metrology seal's calibration expires."
    )
    seal_intact: StrictBool | None = Field(default=None, description="Tamper seal unbroken.")

    @model_validator(mode="after")
    def _will_means_offline(self) -> ScaleStatus:
        # A will skips the clock checks in ingest, so it must not be usable as a heartbeat.
        if self.will and self.online:
            raise ValueError("a Last Will (will: true) must say online: false")
        return self


class GateCount(_Message):
    """Foot-traffic counters of a gate (topic ``.../gates/{gate}/count``).

    Counters are cumulative since the counter last started. A counter that goes
    down was reset (power cycle); consumers count the new value as growth. Lost
    or repeated messages therefore never skew the totals.
    """

    in_total: Annotated[int, Field(ge=0, lt=MAX_GATE_COUNT, strict=True)] = Field(
        description="People counted entering since the counter started."
    )
    out_total: Annotated[int, Field(ge=0, lt=MAX_GATE_COUNT, strict=True)] = Field(
        description="People counted leaving since the counter started."
    )


class Promotion(BaseModel):
    """A time-limited offer shown on the price screen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    price_fen_per_kg: FenPerKg = Field(description="Promotional unit price, fen per kg.")
    text: Text = Field(description="Short text for the screen, e.g. 限时特价.")
    until: AwareDatetime = Field(description="When the promotion ends.")


class PriceSet(_Message):
    """A vendor sets a product's price on the stall screen (``.../screens/{screen}/price``)."""

    vendor: Identifier = Field(description="Vendor id; must own the screen.")
    plu: Plu = Field(description="Product look-up code.")
    price_fen_per_kg: FenPerKg = Field(description="Regular unit price, fen per kg.")
    promo: Promotion | None = Field(default=None, description="Active promotion, if any.")

    @model_validator(mode="after")
    def _promo_is_a_discount(self) -> PriceSet:
        if self.promo is not None and self.promo.price_fen_per_kg >= self.price_fen_per_kg:
            raise ValueError("promo.price_fen_per_kg must be below price_fen_per_kg")
        if self.promo is not None and self.promo.until <= self.ts:
            raise ValueError("promo.until must be after ts")
        return self


#: GB/T 5009.199: an enzyme inhibition rate of 50 % or more is a positive (failed) test.
FAIL_INHIBITION_PCT = Decimal(50)


class RapidTestResult(StrEnum):
    PASS = "pass"  # noqa: S105 - a test outcome, not a password
    FAIL = "fail"


class RapidTest(BaseModel):
    """Pesticide-residue rapid test (enzyme inhibition, GB/T 5009.199)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    result: RapidTestResult
    inhibition_pct: Annotated[Decimal, Field(ge=0, le=100, max_digits=4, decimal_places=1)] = Field(
        description="Enzyme inhibition rate, percent with one decimal; ≥50 fails."
    )

    @model_validator(mode="after")
    def _result_matches_rate(self) -> RapidTest:
        failed = self.inhibition_pct >= FAIL_INHIBITION_PCT
        if failed != (self.result is RapidTestResult.FAIL):
            raise ValueError(
                f"result {self.result.value!r} contradicts inhibition {self.inhibition_pct}% "
                f"(GB/T 5009.199: {FAIL_INHIBITION_PCT}% or more fails)"
            )
        return self


class BatchIntake(_Message):
    """A batch of produce enters the market (topic ``.../intake/{station}/batch``)."""

    trace_code: TraceCode = Field(description="Trace code printed on the batch; unique.")
    vendor: Identifier = Field(description="Vendor receiving the batch.")
    plu: Plu = Field(description="Product look-up code.")
    origin: Text = Field(description="Place of origin (产地), e.g. 山东寿光.")
    supplier: Text = Field(description="Supplier or wholesaler.")
    quantity_g: Annotated[int, Field(gt=0, le=MAX_BATCH_G, strict=True)] = Field(
        description="Quantity received, grams."
    )
    certificate_no: Text = Field(description="Origin/quarantine certificate number (合格证).")
    #: Markets rapid-test a sample of their batches (a daily quota), not every one, so most
    #: batches come in without a test: absent (or null) means not tested at intake.
    rapid_test: RapidTest | None = Field(
        default=None,
        description="Pesticide-residue rapid test at intake; absent if the batch was not tested.",
    )


class RapidTestReport(_Message):
    """A batch tested again: a spot check or a re-test at the intake desk (topic
    ``.../intake/{station}/test``).

    Kept beside the batch's intake test and every earlier report, never in their
    place; the batch's state follows the latest test by ``ts``, the time of the test.
    """

    trace_code: TraceCode = Field(description="Trace code of the batch tested.")
    vendor: Identifier = Field(description="Vendor holding the batch.")
    plu: Plu = Field(description="Product look-up code of the batch.")
    rapid_test: RapidTest


class DeviceKind(StrEnum):
    SCALE = "scales"
    GATE = "gates"
    SCREEN = "screens"
    INTAKE = "intake"


DeviceMessage = Sale | ScaleStatus | GateCount | PriceSet | BatchIntake | RapidTestReport
