"""A customer's rolling window state, as the rules see it.

The store (Redis, see ``stream.windows``) keeps day buckets by *event time*; this module is the
read-only snapshot of them plus the window arithmetic every rule kind shares. Days are UTC day
numbers (``epoch_seconds // 86400``) so that a bucket is the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

SECONDS_PER_DAY = 86_400


def day_number(moment: datetime) -> int:
    """UTC day number of a timezone-aware moment: the bucket an event belongs to."""
    return int(moment.timestamp()) // SECONDS_PER_DAY


def from_epoch_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True)
class DayWindow:
    """The inclusive day range ``[first_day, last_day]``: ``days`` days ending ``end_offset`` days before today.

    ``DayWindow.ending(today, 30)`` is the last 30 days including today;
    ``DayWindow.ending(today, 90, end_offset=30)`` is the 90 days before those.
    """

    first_day: int
    last_day: int

    @classmethod
    def ending(cls, today: int, days: int, *, end_offset: int = 0) -> DayWindow:
        last = today - end_offset
        return cls(first_day=last - days + 1, last_day=last)

    @property
    def days(self) -> int:
        return self.last_day - self.first_day + 1

    def clipped_from(self, first_day: int) -> DayWindow | None:
        """The part of this window on or after ``first_day`` (None if nothing is left)."""
        start = max(self.first_day, first_day)
        return None if start > self.last_day else DayWindow(start, self.last_day)

    def total(self, buckets: Mapping[int, float]) -> float:
        return float(sum(v for day, v in buckets.items() if self.first_day <= day <= self.last_day))


@dataclass(frozen=True)
class FeedbackAnswer:
    answered_at: datetime
    score: int


@dataclass(frozen=True)
class CustomerState:
    """Everything kept about one customer, read in one round trip after an update."""

    customer_id: str
    watermark: datetime | None = None
    """Latest event time seen for this customer: the 'now' rules are evaluated at."""
    purchases_by_day: Mapping[int, int] = field(default_factory=dict)
    spend_by_day: Mapping[int, float] = field(default_factory=dict)
    """Spend per day in the configured currency's major unit (e.g. dollars)."""
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    lifetime_purchases: int = 0
    lifetime_purchase_days: int = 0
    """Distinct UTC days with a purchase, over the customer's whole life (not only the horizon):
    BG/NBD's repeat count is this minus one."""
    lifetime_spend: float = 0.0
    interactions_by_kind: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    last_interaction_at: datetime | None = None
    feedback_by_kind: Mapping[str, tuple[FeedbackAnswer, ...]] = field(default_factory=dict)
    """Most recent answers per survey kind (``nps``, ``csat``, ``ces``), oldest first."""
    segment: str | None = None
    """Segment carried by the customer's latest event that had one (for rule scopes)."""

    def purchases_in(self, window: DayWindow) -> int:
        return int(window.total(self.purchases_by_day))

    def spend_in(self, window: DayWindow) -> float:
        return window.total(self.spend_by_day)

    def interactions_in(self, window: DayWindow, kinds: Iterable[str] | None = None) -> int:
        selected = (
            self.interactions_by_kind if kinds is None else {k: self.interactions_by_kind.get(k, {}) for k in kinds}
        )
        return int(sum(window.total(buckets) for buckets in selected.values()))

    def answers(self, kind: str) -> tuple[FeedbackAnswer, ...]:
        return self.feedback_by_kind.get(kind, ())

    @property
    def first_purchase_day(self) -> int | None:
        return None if self.first_purchase_at is None else day_number(self.first_purchase_at)


def days_between(earlier: datetime, later: datetime) -> float:
    return (later - earlier) / timedelta(days=1)
