"""Inactivity: no purchase, or no interaction of the given kinds, for a fixed time.

The plain recency rule ("no purchase in 60 days"), which on real retail histories is a strong
churn signal on its own. It fires once per silence: the episode is the last activity, so a
customer who comes back and goes quiet again is alerted again, and one who stays silent is not
alerted every cooldown. Customers who never had the activity are not judged (an inactivity of a
thing never done is no change); a rule over interactions ``kinds`` needs at least one of them.
Judged on time: with no further event the verdict changes exactly at last activity + ``silent_for``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from rules.base import Condition, Duration, EvidenceValue, Verdict
from rules.context import EvaluationContext
from rules.kinds.interaction_drop import InteractionKindName
from rules.state import ONE_DAY, SECONDS_PER_DAY, CustomerState, days_between


def last_interaction(state: CustomerState, kinds: tuple[str, ...]) -> datetime | None:
    """The last interaction of ``kinds`` (any kind: the exact time kept in the state). Per kind only
    day buckets are kept, so it is the end of the latest day holding one: a silence is never
    overstated, at worst judged up to a day late."""
    if not kinds:
        return state.last_interaction_at
    days = [day for kind in kinds for day, count in state.interactions_by_kind.get(kind, {}).items() if count]
    return datetime.fromtimestamp((max(days) + 1) * SECONDS_PER_DAY, tz=UTC) if days else None


class InactivityCondition(Condition):
    kind: Literal["inactivity"]
    activity: Literal["purchase", "interaction"] = Field(
        default="purchase", description="What the customer stopped doing"
    )
    interaction_kinds: tuple[InteractionKindName, ...] = Field(
        default=(), description="For activity 'interaction': the kinds that count (empty: any interaction)"
    )
    silent_for: Duration = Field(description="Fire once the last activity is at least this long ago")
    min_purchases: int = Field(
        default=1, ge=1, description="Only customers with at least this many lifetime purchases are judged"
    )
    max_purchases: int | None = Field(
        default=None,
        ge=1,
        description="Only customers with at most this many lifetime purchases are judged (a rule for new "
        "customers); cheaper than a scope, which computes every aggregate at each judgement",
    )

    evidence_fields: ClassVar[tuple[str, ...]] = (
        "last_activity_at", "days_silent", "silent_for_days", "lifetime_purchases",
    )  # fmt: skip

    @model_validator(mode="after")
    def _kinds_only_for_interactions(self) -> InactivityCondition:
        if self.interaction_kinds and self.activity != "interaction":
            raise ValueError("interaction_kinds applies only to activity: interaction")
        if self.silent_for <= timedelta(0):
            raise ValueError("silent_for must be positive")
        if self.max_purchases is not None and self.max_purchases < self.min_purchases:
            raise ValueError("max_purchases must be at least min_purchases")
        return self

    def _judged(self, state: CustomerState) -> str | None:
        """Why a customer is not judged (too few or too many lifetime purchases), or None."""
        if state.lifetime_purchases < self.min_purchases:
            return f"fewer than {self.min_purchases} lifetime purchases"
        if self.max_purchases is not None and state.lifetime_purchases > self.max_purchases:
            return f"more than {self.max_purchases} lifetime purchases"
        return None

    def _last_activity(self, state: CustomerState) -> datetime | None:
        if self.activity == "purchase":
            return state.last_purchase_at
        return last_interaction(state, tuple(self.interaction_kinds))

    def check(self, ctx: EvaluationContext) -> Verdict:
        if (not_judged := self._judged(ctx.state)) is not None:
            return Verdict.quiet(note=not_judged)
        last = self._last_activity(ctx.state)
        if last is None:
            return Verdict.quiet(note=f"no {self.activity} yet")
        silent = days_between(last, ctx.now)
        evidence: dict[str, EvidenceValue] = {
            "last_activity_at": last.isoformat(),
            "days_silent": round(silent, 2),
            "silent_for_days": round(self.silent_for / ONE_DAY, 2),
            "lifetime_purchases": ctx.state.lifetime_purchases,
        }
        if ctx.now - last < self.silent_for:
            return Verdict.quiet(evidence)
        return Verdict.fire(evidence, episode=f"silent-since@{last.isoformat()}")

    def resolved_by(self, activity: str, interaction_kind: str | None) -> bool:
        if activity != self.activity:
            return False
        return activity == "purchase" or not self.interaction_kinds or interaction_kind in self.interaction_kinds

    def next_check(self, ctx: EvaluationContext) -> datetime | None:
        if self._judged(ctx.state) is not None:
            return None
        last = self._last_activity(ctx.state)
        return None if last is None else last + self.silent_for
