"""The printed report of :mod:`bench.replay_completejourney`: the population and label, the rules and
their enabled active set beside the recency baselines at the cut-off, the recent-alert views, and the
sweep's tables of candidates and unions."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bench.cj_data import CITATION, Cohort, Households
from bench.cj_metrics import Score, format_markdown, format_scores
from rules.base import Mode, RuleBase

if TYPE_CHECKING:
    from bench.replay_completejourney import Replay

THE_SET = "the set: enabled active rules"
RECENT_DAYS = (30, 60, 90)
"""The "alerted in the last N days before the cut-off" views."""
SWEEP_TOP = 30
MIN_LEAD_DAYS = 14
"""The median lead the shipped set must reach: two weeks to act before the customer is gone."""


def print_header(cohort: Cohort, data: Households, settings_line: str) -> None:
    split, population, churned = cohort.split, cohort.population, cohort.churned
    print(f"churnwatch replay of {CITATION}")
    print("  (the Python package calls the data simulated from real patterns; counts match the CRAN package)")
    print(f"  {split.describe()}")
    replayed = sum(len(b) for b in cohort.observed.values())
    print(
        f"  {len(data.baskets):,} households, {data.basket_count:,} baskets; "
        f"population {len(population):,} ({replayed:,} baskets before C)"
    )
    print(f"  churned: {len(churned):,} = churn rate {100 * len(churned) / len(population):.2f} %")
    quiet = sorted((split.cutoff - cohort.observed[h][-1].at) / timedelta(days=1) for h in churned)
    if quiet:
        print(
            f"  of the churned, {sum(1 for d in quiet if d >= 30)} had no basket in the 30 days before C, "
            f"{sum(1 for d in quiet if d >= 60)} in 60 (median {statistics.median(quiet):.0f} days since their last)"
        )
    print(f"  {settings_line}")


def union(replay: Replay, signals: Sequence[str]) -> tuple[set[str], dict[str, float]]:
    """The households any of ``signals`` flags open at the cut-off, and each one's earliest open alert."""
    flagged: set[str] = set()
    leads: dict[str, float] = {}
    for signal in signals:
        flagged |= replay.open_at_cutoff.get(signal, set())
        for household, lead in replay.leads.get(signal, {}).items():
            leads[household] = max(lead, leads.get(household, lead))
    return flagged, leads


def _score(name: str, replay: Replay, cohort: Cohort, signals: Sequence[str]) -> Score:
    flagged, leads = union(replay, signals)
    return Score.of(name, flagged, cohort.population, cohort.churned, leads)


def print_results(
    replay: Replay,
    cohort: Cohort,
    rules: Sequence[RuleBase],
    active: Sequence[str],
    baselines: Sequence[str],
    *,
    markdown: bool,
) -> None:
    recent_fired = {signal for signal, alerts in replay.last_alert.items() if alerts}
    shown = [r for r in rules if r.id in replay.open_at_cutoff or r.id in recent_fired or "purchase" in r.id]
    silent = [r.id for r in rules if r not in shown]
    if silent:
        print(f"  never fired (the data has no interactions or survey answers): {', '.join(silent)}")
    label = {r.id: f"{r.id}{' (shadow)' if r.mode is Mode.SHADOW else ''}" for r in shown}
    base = [_score(b, replay, cohort, [b]) for b in baselines]
    scores = [
        *base,
        *(_score(label[r.id], replay, cohort, [r.id]) for r in shown),
        _score(THE_SET, replay, cohort, active),
    ]
    print()
    title = f"open at the cut-off {cohort.split.cutoff:%Y-%m-%dT%H:%MZ} (lead: first alert of the open episode to C)"
    print("\n".join(format_scores(title, scores)))
    the_set = scores[-1]
    best = max(base, key=lambda s: s.f1 or 0.0)
    verdicts = ", ".join(
        f"{'beats' if (the_set.f1 or 0) > (b.f1 or 0) else 'does NOT beat'} {b.signal[10:]}" for b in base
    )
    print(f"  the set's F1 {the_set.f1 or 0:.3f}: {verdicts} (best baseline {best.f1 or 0:.3f})")
    lead = the_set.median_lead
    print(f"  median lead {lead if lead is not None else float('nan'):.1f} days (needed: {MIN_LEAD_DAYS})")
    below = [s.signal for s in scores[len(base) : -1] if s.flagged and (s.precision or 0) <= s.base_rate]
    print(
        f"  rules at or below the churn rate's precision ({100 * the_set.base_rate:.2f} %): "
        f"{', '.join(below) or 'none'}"
    )
    if markdown:
        print()
        print("\n".join(format_markdown(scores)))
    for days in RECENT_DAYS:
        since = cohort.split.cutoff - timedelta(days=days)

        def alerted(signals: Sequence[str], since: datetime = since) -> set[str]:
            return {h for s in signals for h, at in replay.last_alert.get(s, {}).items() if at >= since}

        recent = [Score.of(label[r.id], alerted([r.id]), cohort.population, cohort.churned) for r in shown]
        recent.append(Score.of(THE_SET, alerted(active), cohort.population, cohort.churned))
        print()
        note = "absence rules: any silence's first alert; others: fired on a basket"
        print("\n".join(format_scores(f"alerted in the last {days} days before C ({note})", recent, leads=False)))


def print_sweep(replay: Replay, cohort: Cohort, candidates: Sequence[str], baselines: Sequence[str]) -> None:
    """Every candidate alone, then each overdue candidate with each inactivity cap (the best by F1)."""
    base = [_score(b, replay, cohort, [b]) for b in baselines]
    alone = [_score(c, replay, cohort, [c]) for c in candidates]
    print()
    print("\n".join(format_scores("each candidate alone, open at the cut-off", [*base, *alone])))
    caps = [c for c in candidates if c.startswith("inactivity")]
    overdue = [c for c in candidates if c.startswith("overdue")]
    unions = [_score(f"{o} + {c}", replay, cohort, [o, c]) for o in overdue for c in caps]
    ranked = sorted(unions, key=lambda s: s.f1 or 0.0, reverse=True)
    long_enough = [s for s in ranked if (s.median_lead or 0) >= MIN_LEAD_DAYS]
    print()
    title = f"the {SWEEP_TOP} best unions (overdue + inactivity cap) by F1, open at the cut-off"
    print("\n".join(format_scores(title, [*base, *ranked[:SWEEP_TOP]])))
    print()
    title = f"the {SWEEP_TOP} best with a median lead of at least {MIN_LEAD_DAYS} days"
    print("\n".join(format_scores(title, [*base, *long_enough[:SWEEP_TOP]])))
    print()
    per_cap = [max((s for s in unions if s.signal.endswith(f"+ {c}")), key=lambda s: s.f1 or 0.0) for c in caps]
    print("\n".join(format_scores("the best union for each inactivity cap", per_cap)))
