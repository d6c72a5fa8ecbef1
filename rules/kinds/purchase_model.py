"""Silence is the signal: a purchase model says how unlikely this customer's silence is for them.

``kind: purchase_model`` with ``model: bgnbd`` judges a customer with BG/NBD (see
:mod:`rules.purchase_model`), whose population parameters are fitted offline from the purchase
history (``churnwatch model fit``) and written into the rule. A weekly buyer silent for five weeks
has probably stopped; a yearly buyer silent for five weeks has not: the model reads each customer's
rhythm from their own x, t_x and T, shrunk towards the population's.

Two signals, one of which a rule sets:

- ``min_p_no_purchase``: fire when P(no purchase within ``horizon``) rises above it, the usual
  choice. "Does not buy in the next period" is what churn means in most backtests, and it predicts
  that better than P(alive): on the Complete Journey households judged as of 2017-10-01 it ranked
  those who did not come back in Q4 about twice as well (README). But it is high for slow buyers by
  nature: a yearly buyer's chance of a silent month is above 0.9 even while surely alive (0.93 for
  one silent five weeks, with the tests' parameters, against 0.77 for a weekly buyer silent as
  long), so on a population of mixed rhythms give the rule a ``scope`` to customers whose rhythm is
  shorter than the horizon, or a horizon about a slow customer's cycle.
- ``max_p_alive``: fire when P(alive) falls below it: the silence alone, against the customer's own
  rhythm (0.24 for that weekly buyer, 0.80 for the yearly one). It is the part of P(no purchase)
  that the silence explains: (P(none) - P(none | alive)) / (1 - P(none | alive)) = 1 - P(alive).

One-time buyers are not judged (``min_purchase_days``, at least 2): BG/NBD lets a customer drop out
only after a repeat purchase, so P(alive) = 1 at x = 0 whatever the silence. Leave them to a rule on
inactivity. With no new purchase only T grows, and both probabilities move one way in T, so
:meth:`PurchaseModelCondition.next_check` names the moment the verdict flips.

Each silence alerts once (its episode is the last purchase day); a new purchase starts a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from rules.base import Condition, Duration, EvidenceValue, Verdict
from rules.context import EvaluationContext
from rules.purchase_model import (
    BgNbdInputs,
    BgNbdParameters,
    bgnbd_inputs,
    day_start,
    p_alive,
    p_no_purchase_within,
    silence_odds,
)
from rules.state import ONE_DAY, CustomerState, day_number, days_between

_MICROSECOND = timedelta(microseconds=1)
_MICROSECONDS_A_DAY = 86_400_000_000
SEARCH_LIMIT = timedelta(days=3650)
"""``next_check`` looks this far ahead for the moment the verdict flips (then: only an event will)."""


@dataclass(frozen=True)
class _Judgement:
    inputs: BgNbdInputs
    p_alive: float
    p_no_purchase: float
    fired: bool


class PurchaseModelCondition(Condition):
    kind: Literal["purchase_model"]
    model: Literal["bgnbd"] = Field(default="bgnbd", description="The purchase model (BG/NBD)")
    parameters: BgNbdParameters = Field(
        description="Population parameters in days, as `churnwatch model fit` writes them under `parameters:`"
    )
    horizon: Duration = Field(
        default=timedelta(days=30), description="The window ahead that P(no purchase within horizon) is about"
    )
    min_p_no_purchase: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Fire when P(no purchase within horizon) is above this, the usual choice (set this or "
        "max_p_alive); high for slow buyers by nature: see the README",
    )
    max_p_alive: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Fire when P(alive) is below this: the silence alone, against the customer's own rhythm",
    )
    min_purchase_days: int = Field(
        default=2,
        ge=2,
        description="Customers with fewer distinct purchase days are not judged: BG/NBD cannot judge "
        "one-time buyers (P(alive) = 1 at no repeat purchase)",
    )

    evidence_fields: ClassVar[tuple[str, ...]] = (
        "p_alive", "p_no_purchase", "horizon_days", "repeat_purchases", "days_since_last_purchase",
        "customer_age_days",
    )  # fmt: skip
    risk_score: ClassVar[tuple[str, bool] | None] = ("p_no_purchase", True)

    @model_validator(mode="after")
    def _one_threshold(self) -> PurchaseModelCondition:
        if (self.min_p_no_purchase is None) == (self.max_p_alive is None):
            raise ValueError("set exactly one threshold: min_p_no_purchase or max_p_alive")
        if self.horizon <= timedelta(0):
            raise ValueError("horizon must be positive")
        return self

    @property
    def horizon_days(self) -> float:
        return self.horizon / ONE_DAY

    def _judge(self, state: CustomerState, now: datetime) -> _Judgement | None:
        first, last = state.first_purchase_at, state.last_purchase_at
        if first is None or last is None or state.lifetime_purchase_days < self.min_purchase_days:
            return None
        inputs = bgnbd_inputs(day_number(first), day_number(last), state.lifetime_purchase_days, now)
        alive = p_alive(self.parameters, inputs.x, inputs.t_x, inputs.T)
        silent = p_no_purchase_within(self.parameters, inputs.x, inputs.t_x, inputs.T, self.horizon_days)
        if self.max_p_alive is not None:
            fired = alive < self.max_p_alive
        else:
            fired = self.min_p_no_purchase is not None and silent > self.min_p_no_purchase
        return _Judgement(inputs, alive, silent, fired)

    def check(self, ctx: EvaluationContext) -> Verdict:
        state = ctx.state
        judged = self._judge(state, ctx.now)
        if judged is None or state.last_purchase_at is None:
            return Verdict.quiet(note=self._not_judged(state))
        evidence: dict[str, EvidenceValue] = {
            "p_alive": round(judged.p_alive, 4),
            "p_no_purchase": round(judged.p_no_purchase, 4),
            "horizon_days": round(self.horizon_days, 2),
            "repeat_purchases": judged.inputs.x,
            "days_since_last_purchase": round(days_between(state.last_purchase_at, ctx.now), 1),
            "customer_age_days": round(judged.inputs.T, 1),
        }
        if not judged.fired:
            return Verdict.quiet(evidence)
        return Verdict.fire(evidence, episode=f"silent-after-day-{day_number(state.last_purchase_at)}")

    def _not_judged(self, state: CustomerState) -> str:
        if state.first_purchase_at is None:
            return "no purchase yet"
        return (
            f"fewer than {self.min_purchase_days} purchase days: BG/NBD cannot judge one-time buyers "
            "(P(alive) = 1 without a repeat purchase); leave them to an inactivity rule"
        )

    def resolved_by(self, activity: str, interaction_kind: str | None) -> bool:
        return activity == "purchase"  # the silence the model judged is over

    def next_check(self, ctx: EvaluationContext) -> datetime | None:
        """The first whole second after ``now`` at which the rule fires if nothing is bought (None if it
        fires already, the customer is not judged, or not within :data:`SEARCH_LIMIT`).

        Only T moves without a purchase, and the verdict is monotone in T (P(no purchase within h)
        rises, P(alive) falls; see :func:`rules.purchase_model.p_no_purchase_within`), so a bisection
        over whole seconds finds the crossing in 29 evaluations of the closed form."""
        now_judged = self._judge(ctx.state, ctx.now)
        if now_judged is None or now_judged.fired:
            return None
        quiet, fires = 0, int(SEARCH_LIMIT.total_seconds())  # seconds after now
        fires_after = self._fires_after(ctx.state, ctx.now, now_judged.inputs)
        if not fires_after(fires):
            return None
        while fires - quiet > 1:
            middle = (quiet + fires) // 2
            if fires_after(middle):
                fires = middle
            else:
                quiet = middle
        return ctx.now + timedelta(seconds=fires)

    def _fires_after(self, state: CustomerState, now: datetime, inputs: BgNbdInputs) -> Callable[[int], bool]:
        """Whether the rule fires ``seconds`` after ``now`` with nothing bought: what :meth:`_judge` says
        at ``now + seconds``, on floats. Only T moves, and ``(now + s - day start) / 1 day`` is an
        integer division of microseconds, so ``(µs to now + s x 10^6) / µs a day`` is the very same
        float. With a zone whose offset moves (DST), adding seconds is wall-clock arithmetic: then
        each moment is judged as :meth:`_judge` judges it."""
        if not isinstance(now.tzinfo, timezone) or state.first_purchase_at is None:

            def judged_fires(seconds: int) -> bool:
                judged = self._judge(state, now + timedelta(seconds=seconds))
                return judged is not None and judged.fired

            return judged_fires
        to_now = (now - day_start(day_number(state.first_purchase_at))) // _MICROSECOND
        alive, no_purchase = silence_odds(self.parameters, inputs.x, inputs.t_x, self.horizon_days)
        t_x, max_p_alive, min_p_no_purchase = inputs.t_x, self.max_p_alive, self.min_p_no_purchase

        def fires(seconds: int) -> bool:
            T = max((to_now + seconds * 1_000_000) / _MICROSECONDS_A_DAY, t_x)
            if max_p_alive is not None:
                return alive(T) < max_p_alive
            return min_p_no_purchase is not None and no_purchase(T) > min_p_no_purchase

        return fires
