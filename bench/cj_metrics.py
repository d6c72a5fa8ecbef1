"""Flagged households against the churn label: precision, recall, F1, lift and the median lead time,
as ``churnwatch backtest`` defines them, and the fixed-width table they print in."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from backtest.scoring import Confusion, median


@dataclass(frozen=True)
class Score:
    """A signal's :class:`backtest.scoring.Confusion` (the backtest's own figures), with the lead times."""

    signal: str
    confusion: Confusion
    population: int
    leads: tuple[float, ...] = ()
    """Lead time in days (first alert of the open episode to the cut-off) of each true positive that has one."""

    @classmethod
    def of(
        cls,
        signal: str,
        flagged: Collection[str],
        population: Collection[str],
        churned: Collection[str],
        leads: Mapping[str, float] | None = None,
    ) -> Score:
        inside = [h for h in flagged if h in population]
        hits = [h for h in inside if h in churned]
        known = tuple(leads[h] for h in hits if h in leads) if leads is not None else ()
        return cls(signal, Confusion(len(inside), len(hits), len(churned)), len(population), known)

    @property
    def flagged(self) -> int:
        return self.confusion.flagged

    @property
    def hits(self) -> int:
        """Flagged households that churned (true positives)."""
        return self.confusion.true_positives

    @property
    def precision(self) -> float | None:
        return self.confusion.precision

    @property
    def recall(self) -> float | None:
        return self.confusion.recall

    @property
    def f1(self) -> float:
        return self.confusion.f1

    @property
    def base_rate(self) -> float:
        return self.confusion.churned / self.population if self.population else 0.0

    @property
    def lift(self) -> float | None:
        p = self.precision
        return p / self.base_rate if p is not None and self.base_rate else None

    @property
    def median_lead(self) -> float | None:
        return median(self.leads)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_scores(title: str, scores: Sequence[Score], *, leads: bool = True) -> list[str]:
    width = max(len("signal"), *(len(s.signal) for s in scores))
    head = (
        f"  {'signal':<{width}}  {'flagged':>7}  {'churned':>7}  {'precision':>9}  {'recall':>7}  "
        f"{'F1':>5}  {'lift':>5}" + (f"  {'median lead':>11}" if leads else "")
    )
    out = [title, head, "  " + "-" * (len(head) - 2)]
    for s in scores:
        lead = "" if not leads else f"  {_f(s.median_lead, 1) + ' d' if s.median_lead is not None else 'n/a':>11}"
        out.append(
            f"  {s.signal:<{width}}  {s.flagged:>7,}  {s.hits:>7,}  {_pct(s.precision):>9}  {_pct(s.recall):>7}  "
            f"{_f(s.f1):>5}  {_f(s.lift, 2):>5}{lead}"
        )
    return out


def format_markdown(scores: Sequence[Score]) -> list[str]:
    """The same figures as a Markdown table, for the README and the rule files' comments."""
    out = ["| signal | flagged | churned | precision | recall | F1 | median lead (days) |", "| --- |" + " ---: |" * 6]
    for s in scores:
        lead = "" if s.median_lead is None else f"{s.median_lead:.1f}"
        cells = [s.signal, f"{s.flagged:,}", f"{s.hits:,}", _pct(s.precision), _pct(s.recall), _f(s.f1), lead]
        out.append("| " + " | ".join(cells) + " |")
    return out
