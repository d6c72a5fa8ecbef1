"""Falling purchase frequency: fewer purchases lately than this customer's own baseline predicts.

A weekly buyer who bought once in the last month is at risk; a yearly buyer who did the same is
not. So the expected count comes from the customer's own rate over an earlier, longer window, and
only customers with enough history in that window are judged at all.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from rules.base import Verdict
from rules.context import EvaluationContext
from rules.kinds.baseline import AgainstOwnBaseline


class PurchaseFrequencyDropCondition(AgainstOwnBaseline):
    kind: Literal["purchase_frequency_drop"]
    max_ratio: float = Field(
        default=0.5, gt=0, le=1, description="Fire when recent purchases are at most this share of the expected count"
    )
    min_baseline_purchases: int = Field(
        default=4, ge=1, description="Customers with fewer purchases in the baseline window are not judged"
    )

    evidence_fields: ClassVar[tuple[str, ...]] = (
        "recent_purchases", "recent_days", "baseline_purchases", "baseline_days", "expected_purchases", "ratio",
    )  # fmt: skip

    def check(self, ctx: EvaluationContext) -> Verdict:
        state = ctx.state
        comparison = self.compare(state.purchase_counts, ctx, state.first_purchase_day)
        if comparison is None:
            return Verdict.quiet(note=f"less than {self.min_history_days} days of purchase history")
        evidence = self.counted_evidence(comparison, "purchases")
        if comparison.baseline < self.min_baseline_purchases:
            return Verdict.quiet(evidence, f"fewer than {self.min_baseline_purchases} baseline purchases")
        return Verdict(comparison.ratio <= self.max_ratio, evidence)
