"""The label a backtest is judged against, read from the history alone (never from the rules).

A customer is in the **population** with at least ``min_purchase_days`` distinct purchase days (UTC
dates) before the cut-off: one-time buyers would swamp every figure. A population customer has
**churned** when they make no purchase in ``[cutoff, cutoff + window)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta


@dataclass(frozen=True)
class Outcome:
    cutoff: datetime
    window: timedelta
    min_purchase_days: int
    population: frozenset[str]
    churned: frozenset[str]
    last_purchase: Mapping[str, datetime]
    """Each population customer's last purchase before the cut-off."""
    history_end: datetime | None
    """The latest purchase in the input, to tell whether the window is fully observed."""

    @property
    def churn_rate(self) -> float:
        return len(self.churned) / len(self.population) if self.population else 0.0

    def unobserved_days(self) -> float:
        """Days of the outcome window after the input's last purchase: customers may look churned
        only because the data ends (0 when the history covers the window)."""
        if self.history_end is None:
            return self.window / timedelta(days=1)
        missing = self.cutoff + self.window - self.history_end
        return max(missing / timedelta(days=1), 0.0)


def label(
    purchases: Iterable[tuple[str, datetime]], *, cutoff: datetime, window: timedelta, min_purchase_days: int
) -> Outcome:
    """``purchases``: (customer, time) of every purchase in the input, in any order, duplicates allowed."""
    days: dict[str, set[date]] = {}
    last: dict[str, datetime] = {}
    returned: set[str] = set()
    end: datetime | None = None
    for customer, at in purchases:
        end = at if end is None or at > end else end
        if at < cutoff:
            days.setdefault(customer, set()).add(at.astimezone(UTC).date())
            if customer not in last or at > last[customer]:
                last[customer] = at
        elif at < cutoff + window:
            returned.add(customer)
    population = frozenset(c for c, d in days.items() if len(d) >= min_purchase_days)
    return Outcome(
        cutoff=cutoff,
        window=window,
        min_purchase_days=min_purchase_days,
        population=population,
        churned=frozenset(population - returned),
        last_purchase={c: last[c] for c in population},
        history_end=end,
    )
