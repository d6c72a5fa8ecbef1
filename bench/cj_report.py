"""The printed report of :mod:`bench.replay_completejourney`: the data, the label, one table per
evaluation mode and population with the naive baselines beside the rules, and the sweep's table."""

from __future__ import annotations

import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from bench.cj_data import CITATION, Cohort, Households
from bench.cj_metrics import Score, format_markdown, format_ratios, format_scores, scores_for

ANY_RULE = "any active rule"
"""The union of the rules that alert (shadow rules are shown, but tell nobody)."""
ANY_ABSENCE = "any active absence rule"
"""The union of the active rules judged on time (a ``next_check`` of their own: inactivity, overdue)."""
UNIONS = (ANY_RULE, ANY_ABSENCE)
BASELINE_DAYS = (21, 30, 60)
ALWAYS_SHOWN = ("purchase-frequency-drop", "spend-drop")
MODES = {
    "worker": "by the worker (events + due scan): alerted at any judgement from {start} to the cut-off",
    "per basket": "on a basket only (the worker before the due scan): fired at any basket from {start}",
    "cut-off": "at the cut-off, {cutoff} UTC",
    "weekly": "at any Sunday 23:59:59 UTC from {start} to the cut-off",
}
POINT_MODES = ("cut-off", "weekly")
"""Modes that judge at fixed moments, where the baselines are read too."""


def baseline_name(days: int) -> str:
    return f"baseline: no purchase in {days}d"


BASELINES = tuple(baseline_name(d) for d in BASELINE_DAYS)


@dataclass(frozen=True)
class Population:
    title: str
    households: frozenset[str]
    churned: frozenset[str]


def populations(cohort: Cohort, active_from: datetime) -> list[Population]:
    active = cohort.active_since(active_from)
    return [
        Population(
            f"all {len(cohort.observed):,} households with a basket in the observed months",
            cohort.observed,
            cohort.churned,
        ),
        Population(
            f"the {len(active):,} of them still buying since {active_from:%Y-%m-%d} (those an early warning can save)",
            active,
            cohort.churned & active,
        ),
    ]


def print_header(cohort: Cohort, data: Households, baskets: int, settings_line: str) -> None:
    split, observed, churned = cohort.split, cohort.observed, cohort.churned
    print(f"churnwatch replay of {CITATION}")
    print("  (the Python package calls the data simulated from real patterns; counts match the CRAN package)")
    print(f"  {split.describe()}")
    print(
        f"  {len(data.baskets):,} households, {data.basket_count:,} baskets; "
        f"judged: {len(observed):,} households with a basket in the observed months ({baskets:,} baskets replayed)"
    )
    print(
        f"  churned (no basket from {split.outcome_start:%Y-%m-%d} to the end of the data): {len(churned):,} "
        f"= base rate {100 * len(churned) / len(observed):.2f} %"
        f"  [strictly by UTC date to 2017-12-31: {len(cohort.churned_strict):,}]"
    )
    quiet = sorted((split.cutoff - cohort.last_observed_basket(h)).days for h in churned)
    print(
        f"  of the churned, {sum(1 for d in quiet if d >= 30)} had no basket in the 30 days before the cut-off "
        f"(median {statistics.median(quiet):.0f} days since their last basket, "
        f"{sum(1 for d in quiet if d >= 60)} quiet for 60+ days)"
    )
    print(f"  {settings_line}")


def _title(mode: str, cohort_start: datetime, cutoff: datetime) -> str:
    return MODES[mode].format(start=f"{cohort_start:%Y-%m-%d}", cutoff=f"{cutoff:%Y-%m-%d %H:%M:%S}")


def _signals(mode: str, rules: Sequence[str], union: bool) -> list[str]:
    """The rows of one mode's table: the rules, their union, and the baselines (at the cut-off for
    the modes that judge at other moments, for comparison)."""
    return [*rules, *(UNIONS if union else ()), *BASELINES]


def _baseline_mode(mode: str, signal: str) -> str:
    return "cut-off" if signal in BASELINES and mode not in POINT_MODES else mode


def mode_scores(
    flags: Mapping[str, Mapping[str, Collection[str]]],
    mode: str,
    signals: Sequence[str],
    group: Population,
) -> list[Score]:
    """Each signal's score in ``mode``; a baseline borrowed from the cut-off says so in its name."""
    scores = []
    for signal in signals:
        source = _baseline_mode(mode, signal)
        name = signal if source == mode else f"{signal} (at the cut-off)"
        scores.append(Score.of(name, flags[source].get(signal, ()), group.households, group.churned))
    return scores


def print_results(
    flags: Mapping[str, Mapping[str, Collection[str]]],
    judged: Mapping[str, Collection[str]],
    rule_ids: Sequence[str],
    shadow: Collection[str],
    groups: Sequence[Population],
    start: datetime,
    cutoff: datetime,
) -> None:
    fired = {signal for by_signal in flags.values() for signal, households in by_signal.items() if households}
    shown = [r for r in rule_ids if r in fired or r in ALWAYS_SHOWN]
    silent = [r for r in rule_ids if r not in shown]
    print("  judged at the cut-off (in scope, enough history): " + ", ".join(f"{r} {len(judged[r]):,}" for r in shown))
    if silent:
        print(f"  never fired (the data has no interactions or survey answers): {', '.join(silent)}")
    if shadow:
        print(f"  shadow (judged and shown, tells nobody, not in '{ANY_RULE}'): {', '.join(shadow)}")
    for group in groups:
        rate = 100 * len(group.churned) / len(group.households)
        print(f"\n=== population: {group.title}; churned {len(group.churned):,} = base rate {rate:.2f} %")
        for mode in MODES:
            print()
            scores = mode_scores(flags, mode, _signals(mode, shown, union=True), group)
            print("\n".join(format_scores(f"flagged {_title(mode, start, cutoff)}", scores)))
            if mode == "worker":
                print_still_open(flags["still open"], [*shown, *UNIONS], group)
                print_beyond_absence(flags["worker"], shown, group)
        rule_scores = scores_for(flags["cut-off"], [*shown, *UNIONS], group.households, group.churned)
        base_scores = scores_for(flags["cut-off"], BASELINES, group.households, group.churned)
        print()
        title = "ratios at the cut-off (rule / baseline, same states, same moment)"
        print("\n".join(format_ratios(title, rule_scores, base_scores)))


def print_still_open(still_open: Mapping[str, Collection[str]], signals: Sequence[str], group: Population) -> None:
    """The households a rule alerted before the period whose silence had not ended when it began:
    not alerted again in the period (one alert per silence), but not forgotten either."""
    found = [(s, set(still_open[s])) for s in signals if still_open.get(s)]
    if found:
        counts = ", ".join(f"{s} {len(h & group.households):,} ({len(h & group.churned):,} churned)" for s, h in found)
        print(f"  alerted before the period and still silent at its start (not counted above): {counts}")


def print_beyond_absence(worker: Mapping[str, Collection[str]], rules: Sequence[str], group: Population) -> None:
    """What each other rule alerted that no absence rule did: does it add anything to them?"""
    absence = set(worker.get(ANY_ABSENCE, ())) & group.households
    parts = []
    for rule in rules:
        own = set(worker.get(rule, ())) & group.households
        if own and not own <= absence:
            beyond = own - absence
            hits, all_hits = len(beyond & group.churned), len(own & group.churned)
            parts.append(f"{rule} {len(beyond):,} ({hits:,} of its {all_hits:,} churned)")
    if absence and parts:
        print(f"  alerted, but by no active absence rule in the period: {', '.join(parts)}")


def print_sweep(
    flags: Mapping[str, Mapping[str, Collection[str]]],
    rule_ids: Sequence[str],
    groups: Sequence[Population],
    start: datetime,
    cutoff: datetime,
) -> None:
    """One table per mode and population: every candidate, judged alone, beside the baselines."""
    for group in groups:
        rate = 100 * len(group.churned) / len(group.households)
        print(f"\n=== population: {group.title}; churned {len(group.churned):,} = base rate {rate:.2f} %")
        for mode in ("worker", "cut-off"):
            print()
            scores = mode_scores(flags, mode, _signals(mode, rule_ids, union=False), group)
            print("\n".join(format_scores(f"flagged {_title(mode, start, cutoff)}", scores)))
        silences = [r for r in rule_ids if r.startswith("inactivity")]
        if silences:
            best = max(silences, key=lambda r: Score.of(r, flags["worker"][r], group.households, group.churned).f1 or 0)
            for mode in ("worker", "cut-off"):
                print()
                title = f"each candidate together with {best} (the best inactivity by the worker's F1 here), {mode}"
                print("\n".join(format_beyond(title, flags[mode], [r for r in rule_ids if r != best], best, group)))


def format_beyond(
    title: str, flags: Mapping[str, Collection[str]], candidates: Sequence[str], base: str, group: Population
) -> list[str]:
    """What a candidate adds to ``base``: households only it flags (and how many churned), and the union's score."""
    width = max(len("signal"), *(len(c) for c in candidates))
    head = (
        f"  {'signal':<{width}}  {'adds':>5}  {'churned':>7}  {'union':>6}  {'precision':>9}  {'recall':>7}  {'F1':>5}"
    )
    out = [title, head, "  " + "-" * (len(head) - 2)]
    base_set = set(flags.get(base, ())) & group.households
    for candidate in candidates:
        own = set(flags.get(candidate, ())) & group.households
        union = Score.of(candidate, own | base_set, group.households, group.churned)
        adds = own - base_set
        p, r, f1 = union.precision, union.recall, union.f1
        out.append(
            f"  {candidate:<{width}}  {len(adds):>5,}  {len(adds & group.churned):>7,}  {union.flagged:>6,}  "
            f"{100 * (p or 0):>7.1f} %  {100 * (r or 0):>5.1f} %  {f1 or 0:>5.2f}"
        )
    return out


def print_markdown(
    flags: Mapping[str, Mapping[str, Collection[str]]],
    rule_ids: Sequence[str],
    groups: Sequence[Population],
    *,
    sweep: bool,
) -> None:
    """The summary for the README: per population, one row per signal, worker / cut-off / weekly."""
    fired = {signal for by_signal in flags.values() for signal, households in by_signal.items() if households}
    shown = list(rule_ids) if sweep else [r for r in rule_ids if r in fired or r in ALWAYS_SHOWN]
    modes = ("worker", "cut-off") if sweep else ("worker", "cut-off", "weekly")
    for group in groups:
        print(f"\n{group.title}: {len(group.churned):,} churned of {len(group.households):,}")
        signals = _signals("cut-off", shown, union=not sweep)
        columns = {mode: mode_scores(flags, mode, signals, group) for mode in modes}
        print("\n".join(format_markdown(signals, columns)))
