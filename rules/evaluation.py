"""Run a rule set over one customer's state: pure, so it is table-tested and replayable offline."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from rules.base import Finding, RuleBase
from rules.state import CustomerState
from rules.templates import render


def evaluate_rule(rule: RuleBase, state: CustomerState, now: datetime) -> Finding | None:
    signal = rule.check(state, now)
    if signal is None:
        return None
    message = render(
        rule.message,
        {**signal.evidence, "customer_id": state.customer_id, "rule_id": rule.id, "severity": str(rule.severity)},
    )
    return Finding(
        rule_id=rule.id,
        severity=rule.severity,
        customer_id=state.customer_id,
        evaluated_at=now,
        message=message,
        evidence=signal.evidence,
        cooldown=rule.cooldown,
        episode=signal.episode,
    )


def evaluate(rules: Iterable[RuleBase], state: CustomerState, now: datetime) -> list[Finding]:
    """Findings of every enabled rule that fires for this customer at ``now``."""
    return [f for r in rules if r.enabled and (f := evaluate_rule(r, state, now)) is not None]
