"""Detractor: an NPS answer in the detractor range (0-6 by default).

Fires once per answer (the answer's time is the episode), and only for answers recent enough to
act on, so an old answer does not alert again when the cooldown runs out. ``require_drop`` and
``from_promoter`` narrow it to customers whose opinion turned.
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import Field

from rules.base import Condition, Duration, Verdict
from rules.context import EvaluationContext

PROMOTER_MIN = 9


class DetractorCondition(Condition):
    kind: Literal["detractor"]
    max_score: int = Field(default=6, ge=0, le=10, description="Answers at or below this are detractors")
    require_drop: bool = Field(
        default=False, description="Only fire if the score fell compared with the customer's previous answer"
    )
    from_promoter: bool = Field(
        default=False,
        description="Only fire if the previous answer was a promoter's (9-10): a promoter turned detractor",
    )
    max_age: Duration = Field(default=timedelta(days=14), description="Ignore answers older than this (event time)")

    evidence_fields: ClassVar[tuple[str, ...]] = ("score", "previous_score", "answered_at", "drop")

    def check(self, ctx: EvaluationContext) -> Verdict:
        answers = [a for a in ctx.state.answers("nps") if a.answered_at <= ctx.now]
        if not answers:
            return Verdict.quiet(note="no NPS answer")
        latest = answers[-1]
        previous = answers[-2].score if len(answers) > 1 else None
        drop = None if previous is None else previous - latest.score
        evidence = {
            "score": latest.score,
            "previous_score": previous,
            "answered_at": latest.answered_at.isoformat(),
            "drop": drop,
        }
        if ctx.now - latest.answered_at > self.max_age:
            return Verdict.quiet(evidence, "the latest answer is older than max_age")
        fired = (
            latest.score <= self.max_score
            and not (self.require_drop and (drop is None or drop <= 0))
            and not (self.from_promoter and (previous is None or previous < PROMOTER_MIN))
        )
        return Verdict(fired, evidence, episode=f"nps@{latest.answered_at.isoformat()}" if fired else None)
