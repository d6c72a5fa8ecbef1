"""What a condition is evaluated against: one customer's state at one moment, with the named
aggregates computed once (when first read) and shared by every rule that needs them, and whatever else several rules
(or one rule's ``check`` and its ``next_check``) derive alike, through :meth:`EvaluationContext.shared`."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, TypeVar, cast

from rules.aggregates import Aggregates
from rules.state import CustomerState

T = TypeVar("T")


@dataclass
class EvaluationContext:
    state: CustomerState
    now: datetime
    _shared: dict[Hashable, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @cached_property
    def aggregates(self) -> Aggregates:
        """Each computed when first read: a judgement reads few of them."""
        return Aggregates(self.state, self.now)

    def shared(self, key: Hashable, derive: Callable[[], T]) -> T:
        """``derive()``, computed once per context for ``key``: a pure function of the state and
        ``now`` whose key names everything it depends on besides them (e.g. ``("cadence", 0.9)``)."""
        try:
            return cast(T, self._shared[key])
        except KeyError:
            value = self._shared[key] = derive()
            return value
