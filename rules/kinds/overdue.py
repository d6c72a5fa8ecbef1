"""Overdue: silent for longer than ``multiple`` times the customer's own typical gap between purchases.

A weekly buyer silent for three weeks is overdue; a yearly buyer silent for three weeks is not.
The typical gap comes from :mod:`rules.cadence` (a quantile of the gaps between purchase days, or
the lifetime mean gap once the horizon holds too few). ``min_purchase_days`` keeps out customers
whose rhythm is not known yet, and ``min_silence`` keeps a daily buyer's quiet weekend from being
called a churn. It fires once per silence (the episode is the last purchase) and is judged on time:
with no further purchase the verdict changes exactly at last purchase + the threshold.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar, Literal

from pydantic import Field

from rules.base import Condition, Duration, EvidenceValue, Verdict
from rules.cadence import Cadence, cadence
from rules.context import EvaluationContext
from rules.state import ONE_DAY


class OverdueCondition(Condition):
    kind: Literal["overdue"]
    multiple: float = Field(default=3.0, gt=1.0, description="Fire when the silence exceeds this many typical gaps")
    gap_quantile: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Which gap is 'typical': 0.5 the median, 0.75 a longer one"
    )
    min_purchase_days: int = Field(
        default=4, ge=3, description="Purchase days (lifetime) before the customer's rhythm is trusted"
    )
    min_silence: Duration = Field(
        default=timedelta(days=14), description="Never fire on a silence shorter than this, however frequent the buyer"
    )

    evidence_fields: ClassVar[tuple[str, ...]] = (
        "days_since_last_purchase",
        "typical_gap_days",
        "threshold_days",
        "purchase_days",
        "last_purchase_at",
    )

    def _threshold_days(self, rhythm: Cadence) -> float | None:
        if rhythm.purchase_days < self.min_purchase_days or rhythm.typical_gap_days is None:
            return None
        return max(self.multiple * rhythm.typical_gap_days, self.min_silence / ONE_DAY)

    def _rhythm(self, ctx: EvaluationContext) -> Cadence:
        quantile = self.gap_quantile
        return ctx.shared(("cadence", quantile), lambda: cadence(ctx.state, quantile))

    def check(self, ctx: EvaluationContext) -> Verdict:
        rhythm = self._rhythm(ctx)
        threshold = self._threshold_days(rhythm)
        silence = rhythm.silence_days(ctx.now)
        if threshold is None or silence is None or rhythm.last_purchase_at is None:
            return Verdict.quiet(note=f"fewer than {self.min_purchase_days} purchase days: rhythm not known yet")
        evidence: dict[str, EvidenceValue] = {
            "days_since_last_purchase": round(silence, 2),
            "typical_gap_days": round(rhythm.typical_gap_days or 0.0, 2),
            "threshold_days": round(threshold, 2),
            "purchase_days": rhythm.purchase_days,
            "last_purchase_at": rhythm.last_purchase_at.isoformat(),
        }
        # Compared as durations, exactly as next_check adds it: judged at that very moment it fires.
        if ctx.now - rhythm.last_purchase_at < timedelta(days=threshold):
            return Verdict.quiet(evidence)
        return Verdict.fire(evidence, episode=f"overdue-since@{rhythm.last_purchase_at.isoformat()}")

    def resolved_by(self, activity: str, interaction_kind: str | None) -> bool:
        return activity == "purchase"

    def next_check(self, ctx: EvaluationContext) -> datetime | None:
        rhythm = self._rhythm(ctx)
        threshold = self._threshold_days(rhythm)
        if threshold is None or rhythm.last_purchase_at is None:
            return None
        return rhythm.last_purchase_at + timedelta(days=threshold)
