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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

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


class Aggregates(Mapping[str, AggregateValue]):
    """The named aggregates of ``state`` as of ``now``, each computed the first time it is read.

    A judgement reads few of them (a scope's names, a message's variables, the customer context of
    an alert), and computing all sixty for every judgement was most of an alert's cost; iterating
    computes them all (``rules explain``, the docs)."""

    def __init__(self, state: CustomerState, now: datetime) -> None:
        self.state = state
        self.now = now
        self._values: dict[str, AggregateValue] = {}
        self._answers: dict[str, tuple[float, float, float, float]] = {}

    def __getitem__(self, name: str) -> AggregateValue:
        try:
            return self._values[name]
        except KeyError:
            value = self._values[name] = _COMPUTE[name](self)  # KeyError for a name not in the catalog
            return value

    def __iter__(self) -> Iterator[str]:
        return iter(CATALOG_BY_NAME)

    def __len__(self) -> int:
        return len(CATALOG_BY_NAME)

    @cached_property
    def all_interactions(self) -> Mapping[int, int]:
        return self.state.interactions_of(self.state.interactions_by_kind)

    def answers(self, survey: str) -> tuple[float, float, float, float]:
        """Last, previous, mean of the last few, days since the last: computed once per survey."""
        got = self._answers.get(survey)
        if got is None:
            got = self._answers[survey] = _answer_values(self.state.answers(survey), self.now)
        return got


Compute = Callable[[Aggregates], AggregateValue]


def _in_last(series: Callable[[Aggregates], Mapping[int, float]], days: int, digits: int | None = None) -> Compute:
    def value(a: Aggregates) -> float:
        total = count_in_last(series(a), a.now, days)
        return total if digits is None else round(total, digits)

    return value


def _window_aggregates() -> dict[str, Compute]:
    table: dict[str, Compute] = {}
    for d in WINDOW_DAYS:
        table[f"purchases_{d}d"] = _in_last(lambda a: a.state.purchase_counts, d)
        table[f"spend_{d}d"] = _in_last(lambda a: a.state.purchase_spend, d, digits=2)
        table[f"interactions_{d}d"] = _in_last(lambda a: a.all_interactions, d)
    for kind in INTERACTION_KINDS:
        counts = _kind_counts(kind)
        for d in KIND_WINDOW_DAYS:
            table[f"{kind}_{d}d"] = _in_last(counts, d)
    for d in (30, 90):
        table[f"avg_order_value_{d}d"] = _average_order(d)
    return table


def _kind_counts(kind: str) -> Callable[[Aggregates], Mapping[int, float]]:
    return lambda a: a.state.interaction_counts(kind)


def _average_order(days: int) -> Compute:
    def value(a: Aggregates) -> float:
        purchases = float(a[f"purchases_{days}d"])
        return round(float(a[f"spend_{days}d"]) / purchases, 2) if purchases else NAN

    return value


def _avg_days_between(state: CustomerState) -> float:
    first, last, count = state.first_purchase_at, state.last_purchase_at, state.lifetime_purchases
    return days_between(first, last) / (count - 1) if first and last and count > 1 else NAN


def _answer(survey: str, n: int) -> Compute:
    return lambda a: a.answers(survey)[n]


def _answered(survey: str) -> Compute:
    return lambda a: not math.isnan(a.answers(survey)[0])


def _survey_aggregates() -> dict[str, Compute]:
    table: dict[str, Compute] = {}
    for survey in SURVEYS:
        table[f"{survey}_last"] = _answer(survey, 0)
        table[f"{survey}_previous"] = _answer(survey, 1)
        table[f"{survey}_mean_{MEAN_OF_LAST}"] = _answer(survey, 2)
        table[f"{survey}_days_since"] = _answer(survey, 3)
        table[f"has_{survey}"] = _answered(survey)
    return table


_COMPUTE: dict[str, Compute] = {
    **_window_aggregates(),
    "lifetime_purchases": lambda a: float(a.state.lifetime_purchases),
    "lifetime_spend": lambda a: float(a.state.lifetime_spend),
    "days_since_last_purchase": lambda a: _days_since(a.state.last_purchase_at, a.now),
    "days_since_first_purchase": lambda a: _days_since(a.state.first_purchase_at, a.now),
    "days_since_last_interaction": lambda a: _days_since(a.state.last_interaction_at, a.now),
    "avg_days_between_purchases": lambda a: _avg_days_between(a.state),
    "has_purchases": lambda a: a.state.lifetime_purchases > 0,
    "segment": lambda a: a.state.segment or "",
    **_survey_aggregates(),
}
if set(_COMPUTE) != set(CATALOG_BY_NAME):  # pragma: no cover - caught by any import in the tests
    raise RuntimeError(f"aggregates without a definition or a catalog entry: {set(_COMPUTE) ^ set(CATALOG_BY_NAME)}")


def compute(state: CustomerState, now: datetime) -> dict[str, AggregateValue]:
    """Every aggregate in :data:`CATALOG`, for ``state`` as of ``now``."""
    return dict(Aggregates(state, now))
