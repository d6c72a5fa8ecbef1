"""Falling spend: the customer still buys, but far less money than their own baseline predicts.

Purchase frequency misses the customer who keeps ordering but moves most of the basket to a
competitor. ``measure: total`` compares spend in the recent window with the customer's own spend
rate over an earlier, longer window (as ``purchase_frequency_drop`` does with counts);
``measure: average_order_value`` compares spend per order in the two windows, which catches smaller
baskets even when the orders keep coming. A customer with no recent order has no recent order value:
that absence is ``purchase_frequency_drop``'s to judge, so this kind leaves it alone.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from rules.base import EvidenceValue, Verdict
from rules.context import EvaluationContext
from rules.kinds.baseline import AgainstOwnBaseline


class SpendDropCondition(AgainstOwnBaseline):
    kind: Literal["spend_drop"]
    measure: Literal["total", "average_order_value"] = Field(
        default="total", description="'total' spend in the window, or 'average_order_value' (spend per order)"
    )
    max_ratio: float = Field(
        default=0.5, gt=0, le=1, description="Fire when the recent measure is at most this share of the baseline's"
    )
    min_baseline_spend: float = Field(
        default=0.0, ge=0, description="Customers who spent less than this in the baseline window are not judged"
    )
    min_baseline_orders: int = Field(
        default=3, ge=1, description="Customers with fewer orders in the baseline window are not judged"
    )
    min_recent_orders: int = Field(
        default=0,
        ge=0,
        description="Customers with fewer recent orders are not judged (1 leaves customers who stopped buying "
        "to purchase_frequency_drop); average_order_value always needs at least one",
    )

    evidence_fields: ClassVar[tuple[str, ...]] = (
        "measure", "recent_spend", "expected_spend", "baseline_spend", "recent_days", "baseline_days",
        "recent_orders", "baseline_orders", "recent_aov", "baseline_aov", "ratio",
    )  # fmt: skip

    def check(self, ctx: EvaluationContext) -> Verdict:
        state = ctx.state

        spend = self.compare(state.purchase_spend, ctx, state.first_purchase_day)
        orders = self.compare(state.purchase_counts, ctx, state.first_purchase_day)
        if spend is None or orders is None:
            return Verdict.quiet(note=f"less than {self.min_history_days} days of purchase history")
        recent_aov = spend.recent / orders.recent if orders.recent else None
        baseline_aov = spend.baseline / orders.baseline if orders.baseline else None
        if self.measure == "total":
            ratio = spend.ratio
        else:
            ratio = recent_aov / baseline_aov if recent_aov is not None and baseline_aov else float("inf")
        evidence: dict[str, EvidenceValue] = {
            "measure": self.measure,
            "recent_spend": round(spend.recent, 2),
            "expected_spend": round(spend.expected, 2),
            "baseline_spend": round(spend.baseline, 2),
            "recent_days": self.recent_days,
            "baseline_days": spend.baseline_days,
            "recent_orders": int(orders.recent),
            "baseline_orders": int(orders.baseline),
            "recent_aov": None if recent_aov is None else round(recent_aov, 2),
            "baseline_aov": None if baseline_aov is None else round(baseline_aov, 2),
            "ratio": round(ratio, 3),
        }
        if orders.baseline < self.min_baseline_orders:
            return Verdict.quiet(evidence, f"fewer than {self.min_baseline_orders} baseline orders")
        if spend.baseline < self.min_baseline_spend:
            return Verdict.quiet(evidence, f"less than {self.min_baseline_spend:g} baseline spend")
        if self.measure == "average_order_value" and not orders.recent:
            return Verdict.quiet(
                evidence, f"no order in the last {self.recent_days} days: purchase_frequency_drop judges absence"
            )
        if orders.recent < self.min_recent_orders:
            return Verdict.quiet(evidence, f"fewer than {self.min_recent_orders} recent orders")
        return Verdict(ratio <= self.max_ratio, evidence)
