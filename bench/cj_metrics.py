"""Flagged households against the churn label: precision, recall, F1, lift, alert rate, and the printed tables."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    signal: str
    flagged: int
    hits: int
    """Flagged households that churned."""
    population: int
    churned: int

    @classmethod
    def of(cls, signal: str, flagged: Collection[str], population: Collection[str], churned: Collection[str]) -> Score:
        inside = [h for h in flagged if h in population]
        return cls(signal, len(inside), sum(1 for h in inside if h in churned), len(population), len(churned))

    @property
    def base_rate(self) -> float:
        return self.churned / self.population if self.population else 0.0

    @property
    def precision(self) -> float | None:
        return self.hits / self.flagged if self.flagged else None

    @property
    def recall(self) -> float | None:
        return self.hits / self.churned if self.churned else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        return None if p is None or r is None else (2 * p * r / (p + r) if p + r else 0.0)

    @property
    def lift(self) -> float | None:
        p = self.precision
        return p / self.base_rate if p is not None and self.base_rate else None

    @property
    def alert_rate(self) -> float:
        return self.flagged / self.population if self.population else 0.0

    @property
    def false_alarms(self) -> int:
        return self.flagged - self.hits


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def format_scores(title: str, scores: Sequence[Score]) -> list[str]:
    width = max(len("signal"), *(len(s.signal) for s in scores))
    head = (
        f"  {'signal':<{width}}  {'flagged':>7}  {'alert rate':>10}  {'churned':>7}  {'false':>5}  "
        f"{'precision':>9}  {'recall':>7}  {'F1':>6}  {'lift':>6}"
    )
    out = [title, head, "  " + "-" * (len(head) - 2)]
    for s in scores:
        out.append(
            f"  {s.signal:<{width}}  {s.flagged:>7,}  {_pct(s.alert_rate):>10}  {s.hits:>7,}  {s.false_alarms:>5,}  "
            f"{_pct(s.precision):>9}  {_pct(s.recall):>7}  {_f(s.f1):>6}  {_f(s.lift):>6}"
        )
    return out


def format_ratios(title: str, rules: Sequence[Score], baselines: Sequence[Score]) -> list[str]:
    """Each rule's precision, recall and alert rate divided by each baseline's, in the same run."""
    out = [title]
    width = max(len(r.signal) for r in rules) if rules else 0
    for base in baselines:
        out.append(f"  against baseline '{base.signal}':")
        for rule in rules:
            out.append(
                f"    {rule.signal:<{width}}  precision {_x(_ratio(rule.precision, base.precision)):>6}"
                f"  recall {_x(_ratio(rule.recall, base.recall)):>6}"
                f"  alert rate {_x(_ratio(rule.alert_rate, base.alert_rate)):>6}"
            )
    return out


def scores_for(
    flags: Mapping[str, Collection[str]], signals: Sequence[str], population: Collection[str], churned: Collection[str]
) -> list[Score]:
    return [Score.of(signal, flags.get(signal, ()), population, churned) for signal in signals]


def format_markdown(names: Sequence[str], columns: Mapping[str, Sequence[Score]]) -> list[str]:
    """A Markdown table: one row per name, for each mode flagged (share), precision, recall, F1, lift.
    A score whose signal is not the row's name was borrowed from another mode: its cells say so."""
    modes = list(columns)
    head = "| signal | " + " | ".join(f"{m}: flagged (share) | precision | recall | F1 | lift" for m in modes) + " |"
    out = [head, "| --- |" + " --- |" * (5 * len(modes))]
    for name, row in zip(names, zip(*columns.values(), strict=True), strict=True):
        cells = [
            f"{s.flagged:,} ({_pct(s.alert_rate)}) | {_pct(s.precision)} | {_pct(s.recall)} | {_f(s.f1)} | {_f(s.lift)}"
            if s.signal == name
            else "(at the cut-off) | | | |"
            for s in row
        ]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out
