"""The backtest report: one schema (what ``--json`` writes and ``--html`` draws) and its table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from backtest.scoring import Confusion


class Figures(BaseModel):
    """Flagged against churned, for a rule, the set of enabled rules, or a baseline."""

    model_config = ConfigDict(frozen=True)

    flagged: int
    true_positives: int
    precision: float | None = Field(description="None when nothing is flagged")
    recall: float | None
    f1: float

    @staticmethod
    def of(confusion: Confusion) -> dict[str, float | int | None]:
        return {
            "flagged": confusion.flagged,
            "true_positives": confusion.true_positives,
            "precision": confusion.precision,
            "recall": confusion.recall,
            "f1": confusion.f1,
        }


class AlertFigures(Figures):
    view: str = Field(description="open_at_cutoff, last_30d, last_60d or last_90d")
    lead_days_median: float | None = Field(description="True positives: days from the first alert to the cut-off")
    lead_to_last_purchase_days_median: float | None = Field(
        description="True positives: days from the first alert to their last purchase (negative: after it)"
    )
    alerts: int = Field(description="Firing alerts for population customers in the view's span")
    alerts_per_1000_per_week: float


class RuleFigures(AlertFigures):
    rule: str
    mode: str = Field(description="The rule's mode as configured (shadow rules are judged as if active)")
    auc: float | None = Field(
        default=None, description="ROC AUC of the rule's score at the cut-off (rules that carry a score)"
    )
    scored: int | None = Field(default=None, description="Population customers the score was computed for")


class SetFigures(AlertFigures):
    rules: list[str]
    lead_days: list[float] = Field(description="Every true positive's lead time, sorted (the distribution)")


class BaselineFigures(Figures):
    name: str
    days: int


class WeekVolume(BaseModel):
    week_start: datetime
    rule: str
    alerts: int


class BacktestReport(BaseModel):
    cutoff: datetime
    outcome_window_days: float
    min_purchase_days: int
    population: int
    churned: int
    churn_rate: float
    replayed_events: int
    first_event: datetime | None
    rule_set: str
    warnings: list[str] = Field(default_factory=list)
    rules: list[RuleFigures]
    all_rules: list[SetFigures] = Field(description="The enabled active rules together (shadow rules tell nobody)")
    baselines: list[BaselineFigures]
    weekly_alerts: list[WeekVolume] = Field(default_factory=list)

    def best_baseline(self) -> BaselineFigures | None:
        return max(self.baselines, key=lambda b: b.f1, default=None)


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table_lines(report: BacktestReport) -> list[str]:
    """The terminal table: the label, then every rule, the set and the baselines, view by view."""
    lines = [
        f"cut-off {report.cutoff.isoformat()}, outcome window {report.outcome_window_days:g} days, "
        f"rules {report.rule_set}",
        f"population {report.population:,} (>= {report.min_purchase_days} purchase days before the cut-off), "
        f"churned {report.churned:,} ({percent(report.churn_rate)}), {report.replayed_events:,} events replayed",
        *(f"warning: {w}" for w in report.warnings),
    ]
    rows: list[tuple[str, ...]] = [
        ("signal", "view", "flagged", "precision", "recall", "F1", "lead d", "/1000/wk", "AUC")
    ]
    silent = sorted({r.rule for r in report.rules} - {r.rule for r in report.rules if r.alerts})
    if silent:  # rules whose inputs the history lacks (no surveys, no interactions): one line, not 4 rows each
        lines.append(f"no alerts at all from: {', '.join(silent)}")
    shown = [r for r in report.rules if r.rule not in silent]
    for figures in (*shown, *report.all_rules):
        name = figures.rule if isinstance(figures, RuleFigures) else "ALL ENABLED"
        if isinstance(figures, RuleFigures) and figures.mode != "active":
            name += f" ({figures.mode})"
        auc = figures.auc if isinstance(figures, RuleFigures) else None
        rows.append((
            name, figures.view, f"{figures.flagged:,}", percent(figures.precision), percent(figures.recall),
            f"{figures.f1:.3f}", number(figures.lead_days_median), number(figures.alerts_per_1000_per_week, 2),
            number(auc, 3),
        ))  # fmt: skip
    for base in report.baselines:
        rows.append((
            base.name, "at cut-off", f"{base.flagged:,}", percent(base.precision), percent(base.recall),
            f"{base.f1:.3f}", "", "", "",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines.append("")
    for n, row in enumerate(rows):
        cells = [cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def verdict_lines(report: BacktestReport, views: Sequence[str] = ("open_at_cutoff",)) -> list[str]:
    """Whether the enabled set beats the best recency baseline on F1, per view."""
    best = report.best_baseline()
    if best is None:
        return []
    out = []
    for figures in report.all_rules:
        if figures.view in views:
            word = "beats" if figures.f1 > best.f1 else "does NOT beat"
            out.append(
                f"enabled rules ({figures.view}) F1 {figures.f1:.3f} {word} the best baseline, "
                f"{best.name} F1 {best.f1:.3f}"
            )
    return out
