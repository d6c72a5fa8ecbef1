"""The printed report of :mod:`bench.replay_completejourney`: the data, the label, and one table per
evaluation mode and population, with the rules' ratios to the naive baselines of the same run."""

from __future__ import annotations

import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from bench.cj_data import CITATION, OUTCOME_START, Households
from bench.cj_metrics import format_ratios, format_scores, scores_for

ANY_RULE = "any shipped rule"
BASELINE_DAYS = (30, 21)
ALWAYS_SHOWN = ("purchase-frequency-drop", "spend-drop")
MODES = {
    "cut-off": "at the cut-off, 2017-09-30 23:59:59 UTC",
    "weekly": "at any Sunday 23:59:59 UTC, 2017-08-06 to 2017-09-24 (8 evaluations)",
    "per basket": "after any Aug-Sep basket, at its own event time (when the worker evaluates)",
}


def baseline_name(days: int) -> str:
    return f"baseline: no purchase in {days}d"


@dataclass(frozen=True)
class Population:
    title: str
    households: frozenset[str]
    churned: frozenset[str]


def populations(data: Households, active_from: datetime) -> list[Population]:
    active = data.active_since(active_from)
    return [
        Population(f"all {len(data.observed):,} households with a basket in Jan-Sep", data.observed, data.churned),
        Population(
            f"the {len(active):,} of them still buying since {active_from:%Y-%m-%d} (those an early warning can save)",
            active,
            data.churned & active,
        ),
    ]


def print_header(data: Households, baskets: int, cutoff: datetime, settings_line: str) -> None:
    observed, churned = data.observed, data.churned
    print(f"churnwatch replay of {CITATION}")
    print("  (the Python package calls the data simulated from real patterns; counts match the CRAN package)")
    print(
        f"  {len(data.baskets):,} households, {sum(len(b) for b in data.baskets.values()):,} baskets; "
        f"judged: {len(observed):,} households with a basket in Jan-Sep 2017 ({baskets:,} baskets replayed)"
    )
    print(
        f"  churned (no basket from {OUTCOME_START:%Y-%m-%d} to the end of the data): {len(churned):,} "
        f"= base rate {100 * len(churned) / len(observed):.2f} %"
        f"  [strictly by UTC date Oct-Dec: {len(data.churned_strict):,}]"
    )
    quiet = sorted((cutoff - data.last_observed_basket(h)).days for h in churned)
    gone = [d for d in quiet if d >= 30]
    print(
        f"  of the churned, {len(gone)} had no basket in the 30 days before the cut-off "
        f"(median {statistics.median(quiet):.0f} days since their last basket, "
        f"{sum(1 for d in quiet if d >= 60)} quiet for 60+ days): gone before the cut-off"
    )
    print(f"  {settings_line}")


def print_results(
    flags: Mapping[str, Mapping[str, Collection[str]]],
    judged: Mapping[str, Collection[str]],
    rule_ids: Sequence[str],
    groups: Sequence[Population],
) -> None:
    fired = {signal for by_signal in flags.values() for signal, households in by_signal.items() if households}
    shown = [r for r in rule_ids if r in fired or r in ALWAYS_SHOWN]
    silent = [r for r in rule_ids if r not in shown]
    print("  judged at the cut-off (in scope, enough history): " + ", ".join(f"{r} {len(judged[r]):,}" for r in shown))
    if silent:
        print(f"  never fired (the data has no interactions or survey answers): {', '.join(silent)}")
    baselines = [baseline_name(d) for d in BASELINE_DAYS]
    for group in groups:
        rate = 100 * len(group.churned) / len(group.households)
        print(f"\n=== population: {group.title}; churned {len(group.churned):,} = base rate {rate:.2f} %")
        for mode, title in MODES.items():
            signals = [*shown, ANY_RULE, *([] if mode == "per basket" else baselines)]
            scores = scores_for(flags[mode], signals, group.households, group.churned)
            print()
            print("\n".join(format_scores(f"flagged {title}", scores)))
        for mode in ("cut-off", "weekly"):
            rule_scores = scores_for(flags[mode], [*shown, ANY_RULE], group.households, group.churned)
            base_scores = scores_for(flags[mode], baselines, group.households, group.churned)
            print()
            title = f"ratios, {mode} (rule / baseline, same states, same moments)"
            print("\n".join(format_ratios(title, rule_scores, base_scores)))
