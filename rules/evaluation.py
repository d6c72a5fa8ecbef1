"""Run a rule set over one customer's state: pure, so it is table-tested and replayable offline."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from rules.aggregates import CATALOG_BY_NAME
from rules.base import EvidenceValue, Finding, RuleBase, Verdict
from rules.cel import compile_condition, evidence_value
from rules.context import EvaluationContext
from rules.state import CustomerState
from rules.templates import render, variables_of

CUSTOMER_CONTEXT = ("lifetime_spend", "lifetime_purchases", "segment", "days_since_last_purchase")
"""Aggregates every alert carries about its customer, so people can rank and route it."""


@dataclass(frozen=True)
class Explanation:
    """Everything a rule saw for one customer: for ``rules explain`` and rule tests."""

    rule_id: str
    in_scope: bool
    verdict: Verdict | None
    """None when the customer is out of the rule's scope."""
    finding: Finding | None


def in_scope(rule: RuleBase, ctx: EvaluationContext) -> bool:
    return rule.scope is None or compile_condition(rule.scope).evaluate(ctx.aggregates)


def explain_rule(rule: RuleBase, ctx: EvaluationContext) -> Explanation:
    if not in_scope(rule, ctx):
        return Explanation(rule.id, False, None, None)
    verdict = _with_scope(rule, ctx, rule.check(ctx))
    return Explanation(rule.id, True, verdict, _finding(rule, ctx, verdict) if verdict.fired else None)


def _with_scope(rule: RuleBase, ctx: EvaluationContext, verdict: Verdict) -> Verdict:
    """What put the customer in scope is part of the evidence too."""
    if rule.scope is None:
        return verdict
    scoped = {n: evidence_value(ctx.aggregates[n]) for n in compile_condition(rule.scope).names}
    return replace(verdict, evidence={**scoped, **verdict.evidence})


def _finding(rule: RuleBase, ctx: EvaluationContext, verdict: Verdict) -> Finding:
    aggregates = ctx.aggregates
    variables = {
        name: evidence_value(aggregates[name]) for name in variables_of(rule.message) if name in CATALOG_BY_NAME
    }
    variables.update(verdict.evidence)
    variables.update(customer_id=ctx.state.customer_id, rule_id=rule.id, severity=str(rule.severity))
    return Finding(
        rule_id=rule.id,
        severity=rule.severity,
        mode=rule.mode,
        customer_id=ctx.state.customer_id,
        evaluated_at=ctx.now,
        message=render(rule.message, variables),
        evidence=verdict.evidence,
        cooldown=rule.cooldown,
        episode=verdict.episode,
        customer=customer_context(ctx),
        owner=rule.owner,
        next_step=rule.next_step,
    )


def customer_context(ctx: EvaluationContext) -> dict[str, EvidenceValue]:
    """The :data:`CUSTOMER_CONTEXT` figures of ``ctx``: what an alert (and its resolution) carries."""
    return {name: evidence_value(ctx.aggregates[name]) for name in CUSTOMER_CONTEXT}


def evaluate_rule(rule: RuleBase, state: CustomerState, now: datetime) -> Finding | None:
    return explain_rule(rule, EvaluationContext(state, now)).finding


RuleErrorHandler = Callable[[RuleBase, Exception], None]
T = TypeVar("T")


def _each_enabled(
    rules: Iterable[RuleBase], ask: Callable[[RuleBase], T | None], on_rule_error: RuleErrorHandler | None
) -> list[T]:
    """``ask`` every enabled rule, keeping the answers that are not None. With ``on_rule_error``, a
    rule that raises is reported there and the others still answer (the worker: one broken rule must
    not silence the rest); without it, the error propagates (tests, tools)."""
    answers = []
    for rule in rules:
        if not rule.enabled:
            continue
        try:
            answer = ask(rule)
        except Exception as exc:
            if on_rule_error is None:
                raise
            on_rule_error(rule, exc)
            continue
        if answer is not None:
            answers.append(answer)
    return answers


def evaluate(
    rules: Iterable[RuleBase], state: CustomerState, now: datetime, *, on_rule_error: RuleErrorHandler | None = None
) -> list[Finding]:
    """Findings of every enabled rule that fires for this customer at ``now`` (shadow rules included:
    the caller decides what a shadow finding means)."""
    return findings_in(rules, EvaluationContext(state, now), on_rule_error=on_rule_error)


def findings_in(
    rules: Iterable[RuleBase], ctx: EvaluationContext, *, on_rule_error: RuleErrorHandler | None = None
) -> list[Finding]:
    """:func:`evaluate` in a context the caller keeps, so that :func:`next_due_in` (one judgement's
    other half) shares what the rules derived from the state."""
    return _each_enabled(rules, lambda rule: _finding_of(rule, ctx), on_rule_error)


def _finding_of(rule: RuleBase, ctx: EvaluationContext) -> Finding | None:
    """``explain_rule(rule, ctx).finding`` without the explanation: most judgements fire nothing, and
    a quiet verdict needs no scope evidence (the scope's aggregates are computed already)."""
    if rule.scope is not None and not compile_condition(rule.scope).evaluate(ctx.aggregates):
        return None
    verdict = rule.check(ctx)
    return _finding(rule, ctx, _with_scope(rule, ctx, verdict)) if verdict.fired else None


def next_due(
    rules: Iterable[RuleBase], state: CustomerState, now: datetime, *, on_rule_error: RuleErrorHandler | None = None
) -> datetime | None:
    """The one answer to "when is this customer judged next, if they send nothing": the earliest
    moment after ``now`` at which an enabled rule in whose scope they are may change its verdict."""
    return next_due_in(rules, EvaluationContext(state, now), on_rule_error=on_rule_error)


def next_due_in(
    rules: Iterable[RuleBase], ctx: EvaluationContext, *, on_rule_error: RuleErrorHandler | None = None
) -> datetime | None:
    """:func:`next_due` in a context the caller keeps (see :func:`findings_in`)."""
    now = ctx.now

    def moment(rule: RuleBase) -> datetime | None:
        at = rule.next_check(ctx) if in_scope(rule, ctx) else None
        return at if at is not None and at > now else None

    return min(_each_enabled(rules, moment, on_rule_error), default=None)
