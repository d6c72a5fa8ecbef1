"""A bad survey score: CSAT or NPS at or below a threshold, or CES (effort) at or above one.

Which end is bad belongs to the survey, not to the rule: CSAT (1-5) and NPS (0-10) are bad when
low, CES (1-7, "how hard was it") is bad when high. So a rule names the survey and a threshold,
and the threshold is checked against that survey's scale when the rule file loads.
``aggregate: mean`` judges the mean of the last ``of_last`` answers (a pattern rather than one bad
interaction); the store keeps the latest ``feedback_history`` answers per survey (10 by default).
Like ``detractor``, it fires once per answer (the latest answer's time is the episode) and only
while the latest answer is recent enough to act on.
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from rules.base import Condition, Duration, EvidenceValue, Verdict
from rules.context import EvaluationContext

SCALES: dict[str, tuple[int, int]] = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
"""Each survey's score range (as the feedback events are validated)."""
HIGH_IS_BAD = frozenset({"ces"})


class LowScoreCondition(Condition):
    kind: Literal["low_score"]
    survey: Literal["csat", "ces", "nps"] = Field(description="Which survey's answers are judged")
    threshold: int | float = Field(
        description="CSAT/NPS: fire at or below this; CES: fire at or above this (within the survey's scale)"
    )
    aggregate: Literal["last", "mean"] = Field(
        default="last", description="Judge the latest answer, or the mean of the last 'of_last' answers"
    )
    of_last: int = Field(default=3, ge=1, le=100, description="With aggregate 'mean': how many latest answers")
    min_answers: int = Field(
        default=1, ge=1, description="With aggregate 'mean': customers with fewer answers are not judged"
    )
    max_age: Duration = Field(
        default=timedelta(days=14), description="Ignore the customer when the latest answer is older than this"
    )

    evidence_fields: ClassVar[tuple[str, ...]] = (
        "survey", "value", "answers_considered", "latest_score", "answered_at", "threshold",
    )  # fmt: skip

    @model_validator(mode="after")
    def _threshold_on_the_scale(self) -> LowScoreCondition:
        low, high = SCALES[self.survey]
        name = self.survey.upper()
        if not low <= self.threshold <= high:
            raise ValueError(f"threshold {self.threshold} is outside the {name} scale ({low}-{high})")
        if self.threshold == (low if self.survey in HIGH_IS_BAD else high):
            bad = "high" if self.survey in HIGH_IS_BAD else "low"
            raise ValueError(f"threshold {self.threshold} would fire on every {name} answer ({name} is bad when {bad})")
        if self.aggregate == "mean" and self.min_answers > self.of_last:
            raise ValueError("min_answers cannot be more than of_last")
        return self

    def check(self, ctx: EvaluationContext) -> Verdict:
        name = self.survey.upper()
        answers = [a for a in ctx.state.answers(self.survey) if a.answered_at <= ctx.now]
        if not answers:
            return Verdict.quiet(note=f"no {name} answer")
        considered = answers[-self.of_last :] if self.aggregate == "mean" else answers[-1:]
        latest = considered[-1]
        mean = sum(a.score for a in considered) / len(considered)
        evidence: dict[str, EvidenceValue] = {
            "survey": self.survey,
            "value": round(mean, 2) if self.aggregate == "mean" else latest.score,
            "answers_considered": len(considered),
            "latest_score": latest.score,
            "answered_at": latest.answered_at.isoformat(),
            "threshold": self.threshold,
        }
        if ctx.now - latest.answered_at > self.max_age:
            return Verdict.quiet(evidence, f"the latest {name} answer is older than max_age")
        if self.aggregate == "mean" and len(considered) < self.min_answers:
            return Verdict.quiet(evidence, f"fewer than {self.min_answers} {name} answers")
        fired = mean >= self.threshold if self.survey in HIGH_IS_BAD else mean <= self.threshold
        return Verdict(fired, evidence, episode=f"{self.survey}@{latest.answered_at.isoformat()}" if fired else None)
