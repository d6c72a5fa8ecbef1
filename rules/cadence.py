"""How often a customer buys: the one place that answers it, for every rule that compares a
silence with the customer's own rhythm.

A customer's rhythm is the gaps between their purchase *days* (several purchases on one day are
one visit). Within the store's horizon the gaps are known one by one; beyond it only the lifetime
count of purchase days and the first and last purchase remain, which give the mean gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise

from rules.state import CustomerState, day_number, days_between


@dataclass(frozen=True)
class Cadence:
    purchase_days: int
    """Distinct days with a purchase, over the customer's life."""
    typical_gap_days: float | None
    """The chosen quantile of the gaps between purchase days (None with fewer than two purchase days)."""
    last_purchase_at: datetime | None

    def silence_days(self, now: datetime) -> float | None:
        return None if self.last_purchase_at is None else days_between(self.last_purchase_at, now)


def purchase_day_gaps(state: CustomerState) -> list[int]:
    """Gaps, in days, between consecutive purchase days kept in the state's day buckets."""
    days = sorted(day for day, count in state.purchases_by_day.items() if count)
    return [later - earlier for earlier, later in pairwise(days)]


def quantile(values: list[int], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), for a short list."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _gap_quantile(state: CustomerState, gap_quantile: float) -> float | None:
    """The quantile of the gaps in the day buckets, None with fewer than two gaps: of the purchase
    series alone, so kept with it (it changes only with a purchase or a pruned day)."""
    gaps = purchase_day_gaps(state)
    return quantile(gaps, gap_quantile) if len(gaps) >= 2 else None


def cadence(state: CustomerState, gap_quantile: float = 0.5) -> Cadence:
    """The customer's rhythm: the ``gap_quantile`` of their gaps in the horizon when it holds at
    least two gaps, otherwise their lifetime mean gap (first to last purchase day over the gaps)."""
    typical = state.purchase_counts.derived(("gap quantile", gap_quantile), lambda: _gap_quantile(state, gap_quantile))
    if typical is None and state.lifetime_purchase_days >= 2 and state.first_purchase_at and state.last_purchase_at:
        span = day_number(state.last_purchase_at) - day_number(state.first_purchase_at)
        typical = span / (state.lifetime_purchase_days - 1) if span > 0 else None
    return Cadence(state.lifetime_purchase_days, typical, state.last_purchase_at)
