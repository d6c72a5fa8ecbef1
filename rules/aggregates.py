"""The named aggregates of a customer that ``expression`` rules and ``scope`` filters can use.

Every value is a CEL ``double`` (counts too), so ``purchases_30d < 0.5 * purchases_90d / 3.0``
type-checks; write number literals with a decimal point (``3.0``), since CEL does not mix int and
double. A value that does not exist yet (no NPS answer, no purchase) is NaN, and every comparison
with NaN is false; test for it with the ``has_*`` booleans. Windows end at the evaluation time
and count whole UTC days, as the built-in kinds do (``purchases_30d`` is what
``purchase_frequency_drop`` calls the recent count with ``recent_days: 30``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from rules.state import CustomerState, FeedbackAnswer, days_between
from rules.windows import count_in_last

WINDOW_DAYS = (7, 14, 30, 60, 90, 120)
KIND_WINDOW_DAYS = (7, 30, 90)
INTERACTION_KINDS = (
    "login", "session", "page_view", "support_ticket", "complaint", "email_open", "email_click", "push_open",
)  # fmt: skip
SURVEYS = ("nps", "csat", "ces")
MEAN_OF_LAST = 3
NAN = math.nan

AggregateValue = float | bool | str


@dataclass(frozen=True)
class Aggregate:
    name: str
    cel_type: str
    """``double``, ``bool`` or ``string``."""
    description: str


def _catalog() -> tuple[Aggregate, ...]:
    items: list[Aggregate] = []
    for d in WINDOW_DAYS:
        items += [
            Aggregate(f"purchases_{d}d", "double", f"Purchases in the last {d} days"),
            Aggregate(f"spend_{d}d", "double", f"Spend in the last {d} days (configured currency)"),
            Aggregate(f"interactions_{d}d", "double", f"Interactions of any kind in the last {d} days"),
        ]
    for kind in INTERACTION_KINDS:
        for d in KIND_WINDOW_DAYS:
            items.append(Aggregate(f"{kind}_{d}d", "double", f"'{kind}' interactions in the last {d} days"))
    items += [
        Aggregate("avg_order_value_30d", "double", "Spend / purchases over 30 days (NaN without purchases)"),
        Aggregate("avg_order_value_90d", "double", "Spend / purchases over 90 days (NaN without purchases)"),
        Aggregate("lifetime_purchases", "double", "Purchases since churnwatch first saw the customer"),
        Aggregate("lifetime_spend", "double", "Spend since churnwatch first saw the customer"),
        Aggregate("days_since_last_purchase", "double", "Days since the last purchase (NaN if none)"),
        Aggregate("days_since_first_purchase", "double", "Days since the first purchase (NaN if none)"),
        Aggregate("days_since_last_interaction", "double", "Days since the last interaction (NaN if none)"),
        Aggregate(
            "avg_days_between_purchases", "double", "Mean gap between purchases over the customer's life (NaN if < 2)"
        ),
        Aggregate("has_purchases", "bool", "At least one purchase is known"),
        Aggregate("segment", "string", "Segment from the customer's latest event that carried one ('' if none)"),
    ]
    for survey in SURVEYS:
        items += [
            Aggregate(f"{survey}_last", "double", f"Latest {survey.upper()} answer (NaN if none)"),
            Aggregate(f"{survey}_previous", "double", f"The {survey.upper()} answer before the latest (NaN if none)"),
            Aggregate(
                f"{survey}_mean_{MEAN_OF_LAST}", "double", f"Mean of the last {MEAN_OF_LAST} {survey.upper()} answers"
            ),
            Aggregate(f"{survey}_days_since", "double", f"Days since the latest {survey.upper()} answer (NaN if none)"),
            Aggregate(f"has_{survey}", "bool", f"The customer answered {survey.upper()} at least once"),
        ]
    return tuple(items)


CATALOG: tuple[Aggregate, ...] = _catalog()
CATALOG_BY_NAME: Mapping[str, Aggregate] = {a.name: a for a in CATALOG}


def _days_since(moment: datetime | None, now: datetime) -> float:
    return NAN if moment is None else days_between(moment, now)


def _answer_values(answers: tuple[FeedbackAnswer, ...], now: datetime) -> tuple[float, float, float, float]:
    considered = [a for a in answers if a.answered_at <= now]
    if not considered:
        return NAN, NAN, NAN, NAN
    last = considered[-1]
    previous = float(considered[-2].score) if len(considered) > 1 else NAN
    recent = considered[-MEAN_OF_LAST:]
    return float(last.score), previous, sum(a.score for a in recent) / len(recent), days_between(last.answered_at, now)


def compute(state: CustomerState, now: datetime) -> dict[str, AggregateValue]:
    """Every aggregate in :data:`CATALOG`, for ``state`` as of ``now``."""
    values: dict[str, AggregateValue] = {}
    all_interactions = state.interactions_of(state.interactions_by_kind)
    for d in WINDOW_DAYS:
        values[f"purchases_{d}d"] = count_in_last(state.purchase_counts, now, d)
        values[f"spend_{d}d"] = round(count_in_last(state.purchase_spend, now, d), 2)
        values[f"interactions_{d}d"] = count_in_last(all_interactions, now, d)
    for kind in INTERACTION_KINDS:
        buckets = state.interaction_counts(kind)
        for d in KIND_WINDOW_DAYS:
            values[f"{kind}_{d}d"] = count_in_last(buckets, now, d)
    for d in (30, 90):
        purchases = float(values[f"purchases_{d}d"])
        values[f"avg_order_value_{d}d"] = round(float(values[f"spend_{d}d"]) / purchases, 2) if purchases else NAN
    values["lifetime_purchases"] = float(state.lifetime_purchases)
    values["lifetime_spend"] = float(state.lifetime_spend)
    values["days_since_last_purchase"] = _days_since(state.last_purchase_at, now)
    values["days_since_first_purchase"] = _days_since(state.first_purchase_at, now)
    values["days_since_last_interaction"] = _days_since(state.last_interaction_at, now)
    first, last, count = state.first_purchase_at, state.last_purchase_at, state.lifetime_purchases
    values["avg_days_between_purchases"] = (
        days_between(first, last) / (count - 1) if first and last and count > 1 else NAN
    )
    values["has_purchases"] = state.lifetime_purchases > 0
    values["segment"] = state.segment or ""
    for survey in SURVEYS:
        last_score, previous, mean, since = _answer_values(state.answers(survey), now)
        values[f"{survey}_last"] = last_score
        values[f"{survey}_previous"] = previous
        values[f"{survey}_mean_{MEAN_OF_LAST}"] = mean
        values[f"{survey}_days_since"] = since
        values[f"has_{survey}"] = not math.isnan(last_score)
    return values
