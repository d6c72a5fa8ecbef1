"""A spike: many support tickets, complaints (or any listed interactions) in a few days.

A customer who is stuck contacts support again and again; three tickets in a week is worth a
person's attention whatever the customer's history. Some customers (integrators, heavy users)
always file many, so with ``baseline_multiplier`` the count must also be that many times the
customer's own expected count for a window as long, taken from the ``baseline_days`` before it.
The baseline history starts at the earliest day bucket of any purchase or interaction in the
state (the store keeps day buckets only within its retention horizon, so a baseline reaching
further back is clipped, never filled with zeros): a customer who bought and logged in for months
but never filed a ticket has an expectation of zero, not "no history". Without enough history
for a baseline, ``min_count`` alone decides.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from rules.base import Condition, EvidenceValue, Verdict
from rules.context import EvaluationContext
from rules.kinds.interaction_drop import InteractionKindName, interaction_buckets
from rules.state import CustomerState
from rules.windows import compare_to_baseline, count_in_last


def _first_activity_day(state: CustomerState) -> int | None:
    """The earliest day bucket of any purchase or interaction: never before the retention horizon.
    (The earliest of each series' first day, which the series keeps.)"""
    series = (state.purchase_counts, *(state.interaction_counts(kind) for kind in state.interactions_by_kind))
    return min((first for s in series if (first := s.first_day) is not None), default=None)


class SpikeCondition(Condition):
    kind: Literal["spike"]
    interaction_kinds: tuple[InteractionKindName, ...] = Field(
        default=("support_ticket", "complaint"),
        min_length=1,
        description="Interaction kinds counted together, built-in or custom",
    )
    window_days: int = Field(
        default=7, ge=1, le=90, description="Days counted, in whole UTC days including today (1 = today only)"
    )
    min_count: int = Field(default=3, ge=1, description="Fire when the window holds at least this many")
    baseline_multiplier: float | None = Field(
        default=None,
        gt=0,
        description="If set, the count must also be at least this many times the customer's own expected count",
    )
    baseline_days: int = Field(
        default=90, ge=1, le=730, description="Length of the earlier window the expected count comes from"
    )
    min_history_days: int = Field(
        default=30, ge=1, description="Days of history the baseline window must cover for the multiplier to apply"
    )

    evidence_fields: ClassVar[tuple[str, ...]] = (
        "interaction_kinds", "count", "window_days", "expected", "baseline_days", "multiplier",
    )  # fmt: skip

    @model_validator(mode="after")
    def _history_fits_baseline(self) -> SpikeCondition:
        if self.min_history_days > self.baseline_days:
            raise ValueError("min_history_days cannot be longer than baseline_days")
        return self

    def check(self, ctx: EvaluationContext) -> Verdict:
        buckets = interaction_buckets(ctx.state, self.interaction_kinds)
        count = int(count_in_last(buckets, ctx.now, self.window_days))
        multiplier = self.baseline_multiplier
        comparison = None
        if multiplier is not None:
            comparison = compare_to_baseline(
                buckets,
                now=ctx.now,
                history_start_day=ctx.shared(("first_activity_day",), lambda: _first_activity_day(ctx.state)),
                recent_days=self.window_days,
                baseline_days=self.baseline_days,
                min_history_days=self.min_history_days,
            )
        evidence: dict[str, EvidenceValue] = {
            "interaction_kinds": "/".join(self.interaction_kinds),
            "count": count,
            "window_days": self.window_days,
            "expected": None if comparison is None else round(comparison.expected, 2),
            "baseline_days": None if comparison is None else comparison.baseline_days,
            "multiplier": multiplier,
        }
        if count < self.min_count:
            return Verdict.quiet(evidence)
        if multiplier is None:
            return Verdict(True, evidence)
        if comparison is None:
            return Verdict(True, evidence, note="too little history for a baseline: min_count alone decided")
        # Rounded so that 3 x (7/3 expected) is 7, not 7.000000000000001.
        return Verdict(count >= round(multiplier * comparison.expected, 6), evidence)
