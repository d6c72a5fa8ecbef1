"""Detractor: an NPS answer in the detractor range (0-6 by default).

Fires once per answer (the answer's time is the episode), and only for answers recent enough to
act on, so an old answer does not alert again when the cooldown runs out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar, Literal

from pydantic import Field

from rules.base import Duration, RuleBase, Signal
from rules.state import CustomerState


class DetractorRule(RuleBase):
    kind: Literal["detractor"]
    max_score: int = Field(default=6, ge=0, le=10, description="Answers at or below this are detractors")
    require_drop: bool = Field(
        default=False, description="Only fire if the score fell compared with the customer's previous answer"
    )
    max_age: Duration = Field(default=timedelta(days=14), description="Ignore answers older than this (event time)")

    evidence_fields: ClassVar[tuple[str, ...]] = ("score", "previous_score", "answered_at", "drop")

    def check(self, state: CustomerState, now: datetime) -> Signal | None:
        answers = state.answers("nps")
        if not answers:
            return None
        latest = answers[-1]
        if latest.score > self.max_score or now - latest.answered_at > self.max_age:
            return None
        previous = answers[-2].score if len(answers) > 1 else None
        drop = None if previous is None else previous - latest.score
        if self.require_drop and (drop is None or drop <= 0):
            return None
        return Signal(
            evidence={
                "score": latest.score,
                "previous_score": previous,
                "answered_at": latest.answered_at.isoformat(),
                "drop": drop,
            },
            episode=f"nps@{latest.answered_at.isoformat()}",
        )
