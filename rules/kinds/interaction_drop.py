"""Falling engagement: fewer logins, sessions (or any listed interactions) than the customer's own baseline.

Customers often stop using a product before they stop paying for it, so a drop in interactions
is an earlier signal than a drop in purchases. As with purchases, the expectation is the
customer's own rate over an earlier, longer window. The history starts at the earliest day with
any of the listed interactions *in the state*: the store only keeps day buckets within its
retention horizon (``retention``, 150 days by default), so a baseline reaching further back is
clipped to what is kept, never filled with zeros.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from rules.base import EvidenceValue, Verdict
from rules.context import EvaluationContext
from rules.kinds.baseline import AgainstOwnBaseline
from rules.state import CustomerState, DaySeries

InteractionKindName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
"""A built-in interaction kind (``login``, ``support_ticket``, ...) or a custom one (``webinar``)."""


def interaction_buckets(state: CustomerState, kinds: Iterable[str]) -> DaySeries[int]:
    """Interactions of ``kinds`` per day, summed over the kinds (each kind counted once; days without
    any left out), kept by the state for the next rule asking for the same kinds."""
    return state.interactions_of(kinds)


class InteractionDropCondition(AgainstOwnBaseline):
    kind: Literal["interaction_drop"]
    interaction_kinds: tuple[InteractionKindName, ...] = Field(
        default=("login", "session"),
        min_length=1,
        description="Interaction kinds counted together, built-in or custom, e.g. [login, session, webinar]",
    )
    max_ratio: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Fire when recent interactions are at most this share of the expected count",
    )
    min_baseline_interactions: int = Field(
        default=8, ge=1, description="Customers with fewer interactions in the baseline window are not judged"
    )

    evidence_fields: ClassVar[tuple[str, ...]] = (
        "interaction_kinds", "recent_interactions", "recent_days", "baseline_interactions", "baseline_days",
        "expected_interactions", "ratio",
    )  # fmt: skip

    def check(self, ctx: EvaluationContext) -> Verdict:
        buckets = interaction_buckets(ctx.state, self.interaction_kinds)
        kinds = "/".join(self.interaction_kinds)
        comparison = self.compare(buckets, ctx, buckets.first_day)
        if comparison is None:
            return Verdict.quiet(note=f"less than {self.min_history_days} days of {kinds} history")
        evidence: dict[str, EvidenceValue] = {
            "interaction_kinds": kinds,
            **self.counted_evidence(comparison, "interactions"),
        }
        if comparison.baseline < self.min_baseline_interactions:
            return Verdict.quiet(evidence, f"fewer than {self.min_baseline_interactions} baseline {kinds} interactions")
        return Verdict(comparison.ratio <= self.max_ratio, evidence)
