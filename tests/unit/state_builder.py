"""Build a CustomerState from simple facts, for table tests of rules (no store involved)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from rules.base import Condition, Verdict
from rules.context import EvaluationContext
from rules.state import CustomerState, FeedbackAnswer, day_number

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


def days_ago(days: float, now: datetime = NOW) -> datetime:
    return now - timedelta(days=days)


def customer(
    purchases_days_ago: Iterable[float] = (),
    *,
    nps: Iterable[tuple[float, int]] = (),
    now: datetime = NOW,
    amount: float = 20.0,
    customer_id: str = "c-1",
) -> CustomerState:
    purchases: defaultdict[int, int] = defaultdict(int)
    spend: defaultdict[int, float] = defaultdict(float)
    times = sorted(days_ago(d, now) for d in purchases_days_ago)
    for moment in times:
        purchases[day_number(moment)] += 1
        spend[day_number(moment)] += amount
    answers = tuple(FeedbackAnswer(days_ago(d, now), score) for d, score in sorted(nps, key=lambda a: -a[0]))
    return CustomerState(
        customer_id=customer_id,
        watermark=now,
        purchases_by_day=dict(purchases),
        spend_by_day=dict(spend),
        first_purchase_at=times[0] if times else None,
        last_purchase_at=times[-1] if times else None,
        lifetime_purchases=len(times),
        lifetime_spend=amount * len(times),
        feedback_by_kind={"nps": answers} if answers else {},
    )


def weekly(from_days_ago: int, to_days_ago: int) -> list[float]:
    """Purchase times every 7 days from ``from_days_ago`` down to ``to_days_ago`` (inclusive)."""
    return [float(d) for d in range(from_days_ago, to_days_ago - 1, -7)]


def check(condition: Condition, state: CustomerState, now: datetime = NOW) -> Verdict:
    return condition.check(EvaluationContext(state, now))
