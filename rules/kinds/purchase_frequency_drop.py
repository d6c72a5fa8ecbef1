"""Falling purchase frequency: fewer purchases lately than this customer's own baseline predicts.

A weekly buyer who bought once in the last month is at risk; a yearly buyer who did the same is
not. So the expected count comes from the customer's own rate over an earlier, longer window, and
only customers with enough history in that window are judged at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from rules.base import RuleBase, Signal
from rules.state import CustomerState, DayWindow, day_number


class PurchaseFrequencyDropRule(RuleBase):
    kind: Literal["purchase_frequency_drop"]
    recent_days: int = Field(default=30, ge=1, le=365, description="Length of the recent window, in days")
    baseline_days: int = Field(
        default=90, ge=1, le=730, description="Length of the earlier window the baseline rate comes from"
    )
    max_ratio: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Fire when recent purchases are at most this share of the expected count",
    )
    min_baseline_purchases: int = Field(
        default=4, ge=1, description="Customers with fewer purchases in the baseline window are not judged"
    )
    min_history_days: int = Field(
        default=30,
        ge=1,
        description="Days of purchase history the baseline window must cover (since the first purchase)",
    )

    evidence_fields: ClassVar[tuple[str, ...]] = (
        "recent_purchases",
        "recent_days",
        "baseline_purchases",
        "baseline_days",
        "expected_purchases",
        "ratio",
    )

    @model_validator(mode="after")
    def _history_fits_baseline(self) -> PurchaseFrequencyDropRule:
        if self.min_history_days > self.baseline_days:
            raise ValueError("min_history_days cannot be longer than baseline_days")
        return self

    def check(self, state: CustomerState, now: datetime) -> Signal | None:
        first_day = state.first_purchase_day
        if first_day is None:
            return None
        today = day_number(now)
        recent = DayWindow.ending(today, self.recent_days)
        # The baseline covers only days the customer existed, so a customer who joined halfway
        # through it is not judged by an underestimated rate.
        baseline = DayWindow.ending(today, self.baseline_days, end_offset=self.recent_days).clipped_from(first_day)
        if baseline is None or baseline.days < self.min_history_days:
            return None
        baseline_purchases = state.purchases_in(baseline)
        if baseline_purchases < self.min_baseline_purchases:
            return None
        expected = baseline_purchases * self.recent_days / baseline.days
        recent_purchases = state.purchases_in(recent)
        ratio = recent_purchases / expected
        if ratio > self.max_ratio:
            return None
        return Signal(
            evidence={
                "recent_purchases": recent_purchases,
                "recent_days": self.recent_days,
                "baseline_purchases": baseline_purchases,
                "baseline_days": baseline.days,
                "expected_purchases": round(expected, 2),
                "ratio": round(ratio, 3),
            }
        )
