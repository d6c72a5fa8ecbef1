"""What a condition is evaluated against: one customer's state at one moment, with the named
aggregates computed once and shared by every rule that needs them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from rules.aggregates import AggregateValue, compute
from rules.state import CustomerState


@dataclass
class EvaluationContext:
    state: CustomerState
    now: datetime

    @cached_property
    def aggregates(self) -> dict[str, AggregateValue]:
        return compute(self.state, self.now)
