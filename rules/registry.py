"""The rule kinds churnwatch knows. Adding a kind: write its module, add one line here."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from rules.base import RuleBase
from rules.kinds.detractor import DetractorRule
from rules.kinds.purchase_frequency_drop import PurchaseFrequencyDropRule

RULE_KINDS: tuple[type[RuleBase], ...] = (
    PurchaseFrequencyDropRule,
    DetractorRule,
)

AnyRule = Annotated[Union[RULE_KINDS], Field(discriminator="kind")]  # type: ignore[valid-type]  # noqa: UP007
