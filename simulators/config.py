"""Knobs of the market-day model. The defaults describe an ordinary market."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time

_TRACE_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,15}$")


@dataclass(frozen=True, slots=True)
class DayConfig:
    #: visitors per vendor on an ordinary weekday; footfall scales with market size
    visitors_per_vendor: int = 150
    #: multiplies every stall's expected number of sales
    sales_scale: float = 1.0
    #: scale heartbeat period (each heartbeat is jittered by a few seconds)
    heartbeat_interval_s: int = 300
    #: gate counter publishing period
    gate_interval_s: int = 60
    #: probability that a gate counter reboots (and restarts from 0) on a given day
    counter_reset_probability: float = 0.003
    #: share of all batches whose pesticide residues fail the rapid test (inhibition ≥ 50 %)
    #: when tested; they are vegetables and fruit, the products the enzyme-inhibition test is
    #: for, and only those tested at intake (``intake_test_share``) are caught
    rapid_test_fail_rate: float = 0.02
    #: share of the vegetable and fruit batches the intake desk rapid-tests (markets test a
    #: sample, a daily quota, not every batch); batches of other categories are not
    #: rapid-tested at intake. An untested batch is sold.
    intake_test_share: float = 0.3
    #: share of failed batches a vendor replaces later that morning
    replacement_share: float = 0.6
    #: share of the day's vegetable and fruit batches on sale (passed or not tested at
    #: intake) the market spot-checks (a rapid test at the intake desk, around midday)
    spot_check_share: float = 0.03
    #: share of spot checks that fail (residues the intake test missed, or a batch that was
    #: not tested at intake)
    spot_check_fail_rate: float = 0.05
    #: how many of the day's spot checks fail whatever the rate (the first ones sampled;
    #: 0: by the rate alone). The demo sets 2, so a day played live always shows a
    #: failure, its lock and its recall.
    spot_check_failures_at_least: int = 0
    #: intake window (market local time); deliveries arrive before the morning rush
    intake_from: time = time(5, 0)
    intake_until: time = time(7, 30)
    #: price screens start evening clearance (晚市特价) after this time
    clearance_from: time = time(17, 30)
    #: share of stalls of a clearance category that run one on a given day
    clearance_share: float = 0.7
    #: mean number of regular price changes per stall per day
    price_changes_per_stall: float = 1.5
    #: trace-code prefix; default: the market id in capitals (at most 16 characters)
    trace_prefix: str | None = None

    def __post_init__(self) -> None:
        for name in (
            "counter_reset_probability",
            "rapid_test_fail_rate",
            "intake_test_share",
            "replacement_share",
            "spot_check_share",
            "spot_check_fail_rate",
            "clearance_share",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], not {value}")
        if self.spot_check_failures_at_least < 0:
            raise ValueError("spot_check_failures_at_least must be ≥ 0")
        if self.heartbeat_interval_s < 10 or self.gate_interval_s < 5:
            raise ValueError("heartbeat_interval_s must be ≥ 10 and gate_interval_s ≥ 5")
        if self.visitors_per_vendor < 0 or self.sales_scale < 0 or self.price_changes_per_stall < 0:
            raise ValueError(
                "visitors_per_vendor, sales_scale and price_changes_per_stall must be ≥ 0"
            )
        if self.intake_from >= self.intake_until:
            raise ValueError("intake_from must be before intake_until")
        if self.trace_prefix is not None and not _TRACE_PREFIX.match(self.trace_prefix):
            raise ValueError("trace_prefix must be 1–16 letters, digits, '_', '.' or '-'")
