"""``all`` / ``any``: several conditions at once, e.g. a detractor who is also buying less.

The children are conditions of the other kinds (without ids or messages of their own); their
evidence is merged, a name two children share being prefixed with the child's kind.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from rules.base import Condition, EvidenceValue, Verdict
from rules.context import EvaluationContext

if TYPE_CHECKING:
    LeafCondition = Condition  # at run time: the discriminated union from rules.registry (model_rebuild)


class _Combined(Condition):
    conditions: list[LeafCondition] = Field(min_length=2, description="Two or more conditions of other kinds")

    def evidence_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for child in self.conditions:
            for name in child.evidence_names():
                names.append(name)
                names.append(f"{getattr(child, 'kind', '')}_{name}")
        return tuple(dict.fromkeys(names))

    def _verdicts(self, ctx: EvaluationContext) -> list[tuple[Condition, Verdict]]:
        return [(child, child.check(ctx)) for child in self.conditions]

    def next_check(self, ctx: EvaluationContext) -> datetime | None:
        """The earliest moment any child may change."""
        moments = [m for child in self.conditions if (m := child.next_check(ctx)) is not None]
        return min(moments, default=None)

    @staticmethod
    def _merge(verdicts: list[tuple[Condition, Verdict]]) -> dict[str, EvidenceValue]:
        merged: dict[str, EvidenceValue] = {}
        for child, verdict in verdicts:
            for name, value in verdict.evidence.items():
                merged[f"{getattr(child, 'kind', '')}_{name}" if name in merged else name] = value
        return merged

    @staticmethod
    def _episode(verdicts: list[tuple[Condition, Verdict]]) -> str | None:
        episodes = [v.episode for _, v in verdicts if v.fired and v.episode]
        return "+".join(episodes) if episodes else None


class AllCondition(_Combined):
    kind: Literal["all"]

    def check(self, ctx: EvaluationContext) -> Verdict:
        verdicts = self._verdicts(ctx)
        return Verdict(all(v.fired for _, v in verdicts), self._merge(verdicts), self._episode(verdicts))


class AnyCondition(_Combined):
    kind: Literal["any"]

    def check(self, ctx: EvaluationContext) -> Verdict:
        verdicts = self._verdicts(ctx)
        fired = [(c, v) for c, v in verdicts if v.fired]
        return Verdict(bool(fired), self._merge(fired or verdicts), self._episode(verdicts))
