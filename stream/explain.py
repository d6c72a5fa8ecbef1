"""``churnwatch rules explain``: what one rule sees for one customer in the live Redis state, and
whether it would fire now. Read-only: it claims nothing and sends nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis

from alerts.model import ledger_id
from rules.base import Mode, RuleBase
from rules.cel import compile_condition, evidence_value
from rules.context import EvaluationContext
from rules.evaluation import Explanation, explain_rule
from rules.state import CustomerState
from stream.windows import keys
from stream.windows.codec import as_text, state_from_hash


@dataclass(frozen=True)
class CustomerExplanation:
    rule: RuleBase
    state: CustomerState
    at: datetime | None
    explanation: Explanation | None
    last_alert: str | None
    """The rule's alert ledger entry for this customer (when it last fired), if any."""


async def explain_customer(redis: Redis, rule: RuleBase, customer_id: str, at: datetime | None) -> CustomerExplanation:
    fields = await redis.hgetall(keys.customer_state(customer_id))
    state = state_from_hash(customer_id, fields)
    claim = fields.get(f"a:{ledger_id(rule.id, rule.mode)}".encode())
    when = at or state.watermark
    explanation = None if when is None else explain_rule(rule, EvaluationContext(state, when))
    return CustomerExplanation(rule, state, when, explanation, as_text(claim) if claim else None)


def render_text(result: CustomerExplanation) -> str:
    rule, state = result.rule, result.state
    lines = [
        f"rule {rule.id} ({getattr(rule, 'kind', '?')}, {rule.severity}, {rule.mode}) for customer {state.customer_id}"
    ]
    if not rule.enabled:
        lines.append("disabled (enabled: false): the worker does not judge it; shown as it would judge once enabled")
    if result.at is None or result.explanation is None:
        return "\n".join([*lines, "no state in Redis for this customer (never seen, or expired)"])
    lines.append(f"evaluated at {result.at.isoformat()} (latest event time: {state.watermark})")
    explanation = result.explanation
    if rule.scope is not None:
        ctx = EvaluationContext(state, result.at)
        values = {n: evidence_value(ctx.aggregates[n]) for n in compile_condition(rule.scope).names}
        lines.append(f"scope {rule.scope!r}: {'in' if explanation.in_scope else 'OUT of'} scope {json.dumps(values)}")
    verdict = explanation.verdict
    if verdict is not None:
        lines.append(
            "would fire: " + ("YES" if verdict.fired else "no") + (f" ({verdict.note})" if verdict.note else "")
        )
        for name, value in verdict.evidence.items():
            lines.append(f"  {name} = {value}")
    if explanation.finding is not None:
        lines.append(f"message: {explanation.finding.message}")
    if result.last_alert:
        fired_ms, _, _ = result.last_alert.partition("|")
        fired = datetime.fromtimestamp(int(fired_ms) / 1000).astimezone()
        told = " (shadow: nobody was told)" if rule.mode is Mode.SHADOW else ""
        lines.append(f"last alerted at {fired.isoformat()} (event time){told}; cooldown {rule.cooldown}")
    return "\n".join(lines)
