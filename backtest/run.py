"""A backtest run: the history up to the cut-off through the worker's own code, then the figures.

The replay is :mod:`stream.replay` (the worker's processor on in-memory adapters, with a clock that
follows the events), fed only what happened before the cut-off: nothing after it can leak into an
alert, a state or a fitted model. Shadow rules are judged as if active (a backtest is where a rule
is tried before it tells anyone); the set figures count the rules that are active as configured.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from alerts.model import Alert
from backtest import scoring
from backtest.outcome import Outcome, label
from backtest.report import (
    AlertFigures,
    BacktestReport,
    BaselineFigures,
    Figures,
    RuleFigures,
    SetFigures,
    WeekVolume,
)
from rules.base import Mode, RuleBase
from rules.context import EvaluationContext
from rules.evaluation import explain_rule
from rules.ruleset import RuleSet
from rules.state import CustomerState
from rules.windows import count_in_last
from stream.decoding import DecodePolicy
from stream.events import InteractionKind
from stream.replay import Progress, TimedRecord, build_replay
from stream.settings import Topics
from stream.windows.store import WindowPolicy

_DAY = timedelta(days=1)
_ACTIVITIES = (("purchase", None), ("feedback", None), *(("interaction", k.value) for k in InteractionKind))


@dataclass(frozen=True)
class BacktestSpec:
    cutoff: datetime
    outcome_window: timedelta
    min_purchase_days: int = 2


def purchases_of(records: Sequence[TimedRecord], topics: Topics) -> list[tuple[str, datetime]]:
    topic = topics.purchases
    return [(r.record.key.decode(), r.at) for r in records if r.record.topic == topic and r.record.key]


def judged_rules(rule_set: RuleSet) -> tuple[RuleBase, ...]:
    """The enabled rules, shadow ones promoted so that their alerts are published and counted."""
    return tuple(r.model_copy(update={"mode": Mode.ACTIVE}) if r.mode is Mode.SHADOW else r for r in rule_set.enabled)


def traits_of(rule: RuleBase) -> scoring.RuleTraits:
    return scoring.RuleTraits(any(rule.resolved_by(a, k) for a, k in _ACTIVITIES), rule.cooldown)


async def run_backtest(
    records: Sequence[TimedRecord],
    rule_set: RuleSet,
    spec: BacktestSpec,
    *,
    topics: Topics,
    window_policy: WindowPolicy,
    decode_policy: DecodePolicy,
    progress: Progress | None = None,
) -> BacktestReport:
    outcome = label(
        purchases_of(records, topics),
        cutoff=spec.cutoff,
        window=spec.outcome_window,
        min_purchase_days=spec.min_purchase_days,
    )
    before = [r for r in records if r.at < spec.cutoff]
    judged = RuleSet(judged_rules(rule_set), rule_set.version, rule_set.sources)
    replay = build_replay(judged, topics=topics, window_policy=window_policy, decode_policy=decode_policy)
    await replay.run(before, until=spec.cutoff, progress=progress)
    states = {c: await replay.store.read(c) for c in outcome.population}
    replay_start = min((r.at for r in before), default=spec.cutoff)
    return assemble(rule_set, outcome, replay.publisher.alerts, states, replay_start=replay_start, replayed=len(before))


def assemble(
    rule_set: RuleSet,
    outcome: Outcome,
    alerts: Sequence[Alert],
    states: dict[str, CustomerState],
    *,
    replay_start: datetime,
    replayed: int,
) -> BacktestReport:
    """The figures of a finished replay (pure: the hand-computed test calls it directly too)."""
    rules = rule_set.enabled
    traits = {r.id: traits_of(r) for r in rules}
    firing = [a for a in alerts if a.status == "firing" and a.customer_id in outcome.population]
    resolved = {a.resolves for a in alerts if a.status == "resolved" and a.resolves is not None}
    active = [r.id for r in rules if r.mode is Mode.ACTIVE]

    def flagged(rule_ids: Sequence[str], view: str) -> scoring.Flagged:
        chosen = [a for a in firing if a.rule_id in rule_ids]
        return scoring.flagged_in_view(
            chosen, view, traits=traits, cutoff=outcome.cutoff, replay_start=replay_start, resolved=resolved
        )

    rule_rows: list[RuleFigures] = []
    for rule in rules:
        auc, scored = _auc(rule, states, outcome)
        for view in scoring.VIEWS:
            rule_rows.append(
                RuleFigures(
                    rule=rule.id, mode=rule.mode.value, auc=auc, scored=scored,
                    **_alert_figures(flagged([rule.id], view), view, outcome),
                )
            )  # fmt: skip
    set_rows = []
    for view in scoring.VIEWS:
        one = flagged(active, view)
        set_rows.append(
            SetFigures(rules=active, lead_days=scoring.lead_days(one, outcome), **_alert_figures(one, view, outcome))
        )
    warnings = []
    if (missing := outcome.unobserved_days()) >= 1:
        warnings.append(
            f"the history ends {missing:.0f} days before the outcome window does: customers may look churned only "
            "because the data stops"
        )
    return BacktestReport(
        cutoff=outcome.cutoff,
        outcome_window_days=outcome.window / _DAY,
        min_purchase_days=outcome.min_purchase_days,
        population=len(outcome.population),
        churned=len(outcome.churned),
        churn_rate=outcome.churn_rate,
        replayed_events=replayed,
        first_event=replay_start if replayed else None,
        rule_set=rule_set.version,
        warnings=warnings,
        rules=rule_rows,
        all_rules=set_rows,
        baselines=baselines(states, outcome),
        weekly_alerts=weekly_volume(firing, outcome.cutoff),
    )


def _alert_figures(flagged: scoring.Flagged, view: str, outcome: Outcome) -> dict[str, object]:
    figures = AlertFigures(
        view=view,
        lead_days_median=scoring.median(scoring.lead_days(flagged, outcome)),
        lead_to_last_purchase_days_median=scoring.median(scoring.lead_to_last_purchase_days(flagged, outcome)),
        alerts=flagged.alerts,
        alerts_per_1000_per_week=scoring.alerts_per_1000_per_week(flagged, len(outcome.population)),
        **Figures.of(scoring.Confusion.of(flagged.first_alert, outcome)),
    )
    return figures.model_dump()


def baselines(states: dict[str, CustomerState], outcome: Outcome) -> list[BaselineFigures]:
    """ "No purchase in the last N days" at the cut-off, read from the same states as the rules
    (whole UTC days, as the rules count them)."""
    out = []
    for days in scoring.BASELINE_DAYS:
        silent = [c for c, s in states.items() if count_in_last(s.purchases_by_day, outcome.cutoff, days) == 0]
        out.append(
            BaselineFigures(name=f"no_purchase_{days}d", days=days, **Figures.of(scoring.Confusion.of(silent, outcome)))
        )
    return out


def _auc(rule: RuleBase, states: dict[str, CustomerState], outcome: Outcome) -> tuple[float | None, int | None]:
    """The rule's score of every population customer at the cut-off, ranked against the label."""
    if rule.risk_score is None:
        return None, None
    name, higher_is_riskier = rule.risk_score
    scores: dict[str, float] = {}
    for customer, state in states.items():
        verdict = explain_rule(rule, EvaluationContext(state, outcome.cutoff)).verdict
        value = None if verdict is None else verdict.evidence.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            scores[customer] = float(value) if higher_is_riskier else -float(value)
    return scoring.roc_auc(scores, outcome.churned), len(scores)


def weekly_volume(firing: Sequence[Alert], cutoff: datetime) -> list[WeekVolume]:
    """Firing alerts per rule per week, weeks counted back from the cut-off."""
    counts: Counter[tuple[int, str]] = Counter()
    for alert in firing:
        counts[(cutoff - alert.evaluated_at) // timedelta(weeks=1), alert.rule_id] += 1
    return [
        WeekVolume(week_start=cutoff - (back + 1) * timedelta(weeks=1), rule=rule, alerts=n)
        for (back, rule), n in sorted(counts.items(), key=lambda item: (-item[0][0], item[0][1]))
    ]
