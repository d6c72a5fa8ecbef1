"""The rule kinds churnwatch knows. Adding a kind: write its module, add one line to LEAF_KINDS."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from rules.base import Condition, RuleBase, rule_class
from rules.kinds.combined import AllCondition, AnyCondition
from rules.kinds.detractor import DetractorCondition
from rules.kinds.expression import ExpressionCondition
from rules.kinds.health_score import HealthScoreCondition
from rules.kinds.inactivity import InactivityCondition
from rules.kinds.interaction_drop import InteractionDropCondition
from rules.kinds.low_score import LowScoreCondition
from rules.kinds.overdue import OverdueCondition
from rules.kinds.purchase_frequency_drop import PurchaseFrequencyDropCondition
from rules.kinds.purchase_model import PurchaseModelCondition
from rules.kinds.spend_drop import SpendDropCondition
from rules.kinds.spike import SpikeCondition

LEAF_KINDS: tuple[type[Condition], ...] = (
    PurchaseFrequencyDropCondition,
    DetractorCondition,
    ExpressionCondition,
    HealthScoreCondition,
    SpendDropCondition,
    InteractionDropCondition,
    LowScoreCondition,
    SpikeCondition,
    PurchaseModelCondition,
    InactivityCondition,
    OverdueCondition,
)

LeafCondition = Annotated[Union[LEAF_KINDS], Field(discriminator="kind")]  # type: ignore[valid-type]  # noqa: UP007

for _combined in (AllCondition, AnyCondition):
    _combined.model_rebuild(_types_namespace={"LeafCondition": LeafCondition})

_ALL_KINDS: tuple[type[Condition], ...] = (*LEAF_KINDS, AllCondition, AnyCondition)
RULE_KINDS: tuple[type[RuleBase], ...] = tuple(rule_class(kind) for kind in _ALL_KINDS)

AnyRule = Annotated[Union[RULE_KINDS], Field(discriminator="kind")]  # type: ignore[valid-type]  # noqa: UP007
