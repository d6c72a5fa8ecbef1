"""Build a CustomerState from simple facts, for table tests of rules (no store involved)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
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
    amounts: Iterable[float] | None = None,
    interactions: Mapping[str, Iterable[float]] | None = None,
    csat: Iterable[tuple[float, int]] = (),
    ces: Iterable[tuple[float, int]] = (),
) -> CustomerState:
    """``amounts`` (one per purchase, in the order of ``purchases_days_ago``) overrides ``amount``;
    ``interactions`` maps a kind to the days ago of each interaction; ``nps``/``csat``/``ces`` are
    ``(days_ago, score)`` answers."""
    days = list(purchases_days_ago)
    prices = [amount] * len(days) if amounts is None else list(amounts)
    if len(prices) != len(days):
        raise ValueError("amounts needs one value per purchase")
    purchases: defaultdict[int, int] = defaultdict(int)
    spend: defaultdict[int, float] = defaultdict(float)
    bought = sorted((days_ago(d, now), price) for d, price in zip(days, prices, strict=True))
    times = [moment for moment, _ in bought]
    for moment, price in bought:
        purchases[day_number(moment)] += 1
        spend[day_number(moment)] += price
    by_kind: dict[str, dict[int, int]] = {}
    touched: list[datetime] = []
    for kind, ago in (interactions or {}).items():
        buckets = by_kind.setdefault(kind, {})
        for moment in (days_ago(d, now) for d in ago):
            touched.append(moment)
            buckets[day_number(moment)] = buckets.get(day_number(moment), 0) + 1
    surveys = {"nps": nps, "csat": csat, "ces": ces}
    feedback = {
        kind: tuple(FeedbackAnswer(days_ago(d, now), score) for d, score in sorted(given, key=lambda a: -a[0]))
        for kind, given in surveys.items()
    }
    return CustomerState(
        customer_id=customer_id,
        watermark=now,
        purchases_by_day=dict(purchases),
        spend_by_day=dict(spend),
        first_purchase_at=times[0] if times else None,
        last_purchase_at=times[-1] if times else None,
        lifetime_purchases=len(times),
        lifetime_purchase_days=len(purchases),
        lifetime_spend=amount * len(times) if amounts is None else sum(price for _, price in bought),
        interactions_by_kind=by_kind,
        last_interaction_at=max(touched) if touched else None,
        feedback_by_kind={kind: answers for kind, answers in feedback.items() if answers},
    )


def weekly(from_days_ago: int, to_days_ago: int) -> list[float]:
    """Purchase times every 7 days from ``from_days_ago`` down to ``to_days_ago`` (inclusive)."""
    return [float(d) for d in range(from_days_ago, to_days_ago - 1, -7)]


def check(condition: Condition, state: CustomerState, now: datetime = NOW) -> Verdict:
    return condition.check(EvaluationContext(state, now))
