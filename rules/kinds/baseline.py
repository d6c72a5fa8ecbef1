"""Parameters and arithmetic shared by the kinds that judge a customer against their own baseline
(``purchase_frequency_drop``, ``spend_drop``, ``interaction_drop``)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field, model_validator

from rules.base import Condition, EvidenceValue
from rules.context import EvaluationContext
from rules.windows import BaselineComparison, compare_to_baseline


class AgainstOwnBaseline(Condition):
    recent_days: int = Field(default=30, ge=1, le=365, description="Length of the recent window, in days")
    baseline_days: int = Field(
        default=90, ge=1, le=730, description="Length of the earlier window the baseline rate comes from"
    )
    min_history_days: int = Field(
        default=30,
        ge=1,
        description="Days of history the baseline window must cover (from the customer's first relevant event)",
    )

    @model_validator(mode="after")
    def _history_fits_baseline(self) -> AgainstOwnBaseline:
        if self.min_history_days > self.baseline_days:
            raise ValueError("min_history_days cannot be longer than baseline_days")
        return self

    def compare(
        self, buckets: Mapping[int, float], ctx: EvaluationContext, history_start_day: int | None
    ) -> BaselineComparison | None:
        """Recent window against the baseline; None if the history is too short to judge. Shared with
        every rule comparing the same series over the same windows in this context: the series is
        named by its identity, and kept with the answer, so no other mapping can take its id."""
        recent, baseline, history = self.recent_days, self.baseline_days, self.min_history_days

        def derive() -> tuple[Mapping[int, float], BaselineComparison | None]:
            return buckets, compare_to_baseline(
                buckets,
                now=ctx.now,
                history_start_day=history_start_day,
                recent_days=recent,
                baseline_days=baseline,
                min_history_days=history,
            )

        return ctx.shared(("baseline", id(buckets), history_start_day, recent, baseline, history), derive)[1]

    def counted_evidence(self, comparison: BaselineComparison, noun: str) -> dict[str, EvidenceValue]:
        """The numbers behind a count-against-baseline verdict, named for what is counted
        (``recent_purchases``, ``expected_interactions``, ...)."""
        return {
            f"recent_{noun}": int(comparison.recent),
            "recent_days": self.recent_days,
            f"baseline_{noun}": int(comparison.baseline),
            "baseline_days": comparison.baseline_days,
            f"expected_{noun}": round(comparison.expected, 2),
            "ratio": round(comparison.ratio, 3),
        }
