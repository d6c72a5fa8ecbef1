"""Falling purchase frequency: fewer purchases lately than this customer's own baseline predicts.

A weekly buyer who bought once in the last month is at risk; a yearly buyer who did the same is
not. So the expected count comes from the customer's own rate over an earlier, longer window, and
only customers with enough history in that window are judged at all.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from rules.base import Condition, Verdict
from rules.context import EvaluationContext
from rules.windows import compare_to_baseline


class PurchaseFrequencyDropCondition(Condition):
    kind: Literal["purchase_frequency_drop"]
    recent_days: int = Field(default=30, ge=1, le=365, description="Length of the recent window, in days")
    baseline_days: int = Field(
        default=90, ge=1, le=730, description="Length of the earlier window the baseline rate comes from"
    )
    max_ratio: float = Field(
        default=0.5, gt=0, le=1, description="Fire when recent purchases are at most this share of the expected count"
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
        "recent_purchases", "recent_days", "baseline_purchases", "baseline_days", "expected_purchases", "ratio",
    )  # fmt: skip

    @model_validator(mode="after")
    def _history_fits_baseline(self) -> PurchaseFrequencyDropCondition:
        if self.min_history_days > self.baseline_days:
            raise ValueError("min_history_days cannot be longer than baseline_days")
        return self

    def check(self, ctx: EvaluationContext) -> Verdict:
        state = ctx.state
        comparison = compare_to_baseline(
            state.purchases_by_day,
            now=ctx.now,
            history_start_day=state.first_purchase_day,
            recent_days=self.recent_days,
            baseline_days=self.baseline_days,
            min_history_days=self.min_history_days,
        )
        if comparison is None:
            return Verdict.quiet(note=f"less than {self.min_history_days} days of purchase history")
        evidence = {
            "recent_purchases": int(comparison.recent),
            "recent_days": self.recent_days,
            "baseline_purchases": int(comparison.baseline),
            "baseline_days": comparison.baseline_days,
            "expected_purchases": round(comparison.expected, 2),
            "ratio": round(comparison.ratio, 3),
        }
        if comparison.baseline < self.min_baseline_purchases:
            return Verdict.quiet(evidence, f"fewer than {self.min_baseline_purchases} baseline purchases")
        return Verdict(comparison.ratio <= self.max_ratio, evidence)
