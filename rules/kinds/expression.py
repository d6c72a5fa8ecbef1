"""A custom condition in CEL over the customer's named aggregates (see :mod:`rules.aggregates`).

The expression is compiled and type-checked when the rule file loads. Its evidence is the value of
every aggregate it reads, and message templates may use any aggregate by name.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from rules.aggregates import CATALOG
from rules.base import Condition, Verdict
from rules.cel import compile_condition, evidence_value
from rules.context import EvaluationContext


class ExpressionCondition(Condition):
    kind: Literal["expression"]
    condition: str = Field(
        description="CEL boolean over the aggregates, e.g. 'purchases_30d < 0.5 * purchases_90d / 3.0'",
    )

    @field_validator("condition")
    @classmethod
    def _compiles(cls, source: str) -> str:
        compile_condition(source)  # raises a CelError (a ValueError) with the position and a hint
        return source

    def evidence_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in CATALOG)

    def check(self, ctx: EvaluationContext) -> Verdict:
        compiled = compile_condition(self.condition)
        evidence = {name: evidence_value(ctx.aggregates[name]) for name in compiled.names}
        return Verdict(compiled.evaluate(ctx.aggregates), evidence)
