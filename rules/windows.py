"""Window arithmetic the rule kinds share: a measure in a recent window against the customer's own
baseline rate over an earlier, longer window."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from rules.state import DayWindow, day_number


@dataclass(frozen=True)
class BaselineComparison:
    recent: float
    recent_days: int
    baseline: float
    baseline_days: int
    """Baseline days actually covered (clipped to the customer's history)."""

    @property
    def expected(self) -> float:
        """What the baseline rate predicts for a window as long as the recent one."""
        return self.baseline * self.recent_days / self.baseline_days

    @property
    def ratio(self) -> float:
        return self.recent / self.expected if self.expected > 0 else float("inf")


def compare_to_baseline(
    buckets: Mapping[int, float],
    *,
    now: datetime,
    history_start_day: int | None,
    recent_days: int,
    baseline_days: int,
    min_history_days: int,
) -> BaselineComparison | None:
    """None when the customer's history covers less than ``min_history_days`` of the baseline window,
    so a customer who joined halfway through it is not judged by an underestimated rate."""
    if history_start_day is None:
        return None
    today = day_number(now)
    recent = DayWindow.ending(today, recent_days)
    baseline = DayWindow.ending(today, baseline_days, end_offset=recent_days).clipped_from(history_start_day)
    if baseline is None or baseline.days < min_history_days:
        return None
    return BaselineComparison(
        recent=recent.total(buckets),
        recent_days=recent_days,
        baseline=baseline.total(buckets),
        baseline_days=baseline.days,
    )


def count_in_last(buckets: Mapping[int, float], now: datetime, days: int) -> float:
    return DayWindow.ending(day_number(now), days).total(buckets)
