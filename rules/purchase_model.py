"""BG/NBD, the purchase model of Fader, Hardie & Lee (2005), "Counting your customers the easy way":
its parameters, the closed forms a rule judges a customer with, and the per-customer likelihood.

While alive a customer buys as a Poisson process of rate λ ~ Gamma(r, α); after each repeat purchase
they drop out for good with probability p ~ Beta(a, b). A customer is summarised by x (repeat
purchases), t_x (first to last purchase) and T (first purchase to now). Everything here is plain
``math`` on floats, in logs where powers of large x or T would overflow: the worker imports this,
and numpy/scipy are for the offline fit only (``stream.model_fit``, which vectorises the same
likelihood).

The time convention, shared by the rules and the fit through :func:`bgnbd_inputs`: purchases are
known by their UTC day (the state counts distinct purchase days), so each purchase is placed at the
start of its day; x is the number of purchase days after the first one, t_x the whole days from the
first purchase day to the last, and T the exact time in days from the start of the first purchase
day to now. So ``0 <= t_x <= T`` always holds, and T grows continuously as the customer stays
silent, which lets a rule name the very moment its verdict changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rules.state import ONE_DAY, SECONDS_PER_DAY


class BgNbdParameters(BaseModel):
    """Population parameters fitted offline by ``churnwatch model fit``. r and α depend on the time
    unit (α is a time: the fit's in days), a and b do not."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    r: float = Field(gt=0, allow_inf_nan=False, description="Shape of the purchase-rate Gamma distribution")
    alpha: float = Field(
        gt=0, allow_inf_nan=False, description="Scale (in days) of the purchase-rate Gamma distribution"
    )
    a: float = Field(gt=0, allow_inf_nan=False, description="Beta distribution of the drop-out probability: a")
    b: float = Field(gt=0, allow_inf_nan=False, description="Beta distribution of the drop-out probability: b")
    unit: Literal["days"] = Field(default="days", description="Time unit of alpha (and of x, t_x, T)")


@dataclass(frozen=True)
class BgNbdInputs:
    x: int
    """Repeat purchases: purchase days after the first."""
    t_x: float
    """Days from the first purchase day to the last."""
    T: float
    """Days from the start of the first purchase day to now."""


def day_start(day: int) -> datetime:
    return datetime.fromtimestamp(day * SECONDS_PER_DAY, tz=UTC)


def bgnbd_inputs(first_day: int, last_day: int, purchase_days: int, now: datetime) -> BgNbdInputs:
    """x, t_x and T of a customer who bought on ``purchase_days`` distinct UTC days from ``first_day``
    to ``last_day``, seen at ``now`` (see the module docstring for why these definitions)."""
    t_x = float(last_day - first_day)
    age = (now - day_start(first_day)) / ONE_DAY
    return BgNbdInputs(x=max(purchase_days - 1, 0), t_x=t_x, T=max(age, t_x))


def _log_death_odds(params: BgNbdParameters, x: int, t_x: float, T: float) -> float:
    """log of P(dropped out) / P(alive) given the history (only defined for x > 0)."""
    n = params.r + x
    return (
        math.log(params.a)
        - math.log(params.b + x - 1)
        + n * (math.log(params.alpha + T) - math.log(params.alpha + t_x))
    )


def p_alive(params: BgNbdParameters, x: int, t_x: float, T: float) -> float:
    """P(still alive at T | x, t_x, T). 1 for x = 0: BG/NBD lets a customer drop out only right
    after a repeat purchase, so it cannot tell a lost one-time buyer from a slow one."""
    if x <= 0:
        return 1.0
    z = _log_death_odds(params, x, t_x, T)
    if z > 0:  # 1 / (1 + e^z) without overflowing e^z
        e = math.exp(-z)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(z))


def p_no_purchase_within(params: BgNbdParameters, x: int, t_x: float, T: float, horizon_days: float) -> float:
    """P(no purchase in (T, T + horizon] | x, t_x, T): dead, or alive and silent.

    Alive customers stay alive while they do not buy, and given alive the rate's posterior is
    Gamma(r + x, α + T), so the silent part is ((α + T) / (α + T + horizon))^(r + x).

    It increases with T for a fixed history (what ``next_check`` relies on): it equals
    1 - P(alive) · (1 - ((α + T) / (α + T + h))^(r + x)), a product of two positive factors that
    both decrease in T."""
    alive = p_alive(params, x, t_x, T)
    silent_if_alive = math.exp(-(params.r + x) * math.log1p(horizon_days / (params.alpha + T)))
    return 1.0 - alive * (1.0 - silent_if_alive)


def silence_odds(
    params: BgNbdParameters, x: int, t_x: float, horizon_days: float
) -> tuple[Callable[[float], float], Callable[[float], float]]:
    """:func:`p_alive` and :func:`p_no_purchase_within` of one history as functions of T alone, for a
    search over T (``next_check``): what does not depend on T is computed once, and the rest is the
    very same operations in the same order, so each gives the same float as the function it stands in
    for."""
    log_a, log_b, n = math.log(params.a), math.log(params.b + x - 1) if x > 0 else 0.0, params.r + x
    alpha, log_t_x = params.alpha, math.log(params.alpha + t_x)

    def alive(T: float) -> float:
        if x <= 0:
            return 1.0
        z = log_a - log_b + n * (math.log(alpha + T) - log_t_x)
        if z > 0:
            e = math.exp(-z)
            return e / (1.0 + e)
        return 1.0 / (1.0 + math.exp(z))

    def no_purchase(T: float) -> float:
        silent_if_alive = math.exp(-n * math.log1p(horizon_days / (alpha + T)))
        return 1.0 - alive(T) * (1.0 - silent_if_alive)

    return alive, no_purchase


def log_likelihood(params: BgNbdParameters, x: int, t_x: float, T: float) -> float:
    """log L(r, α, a, b | x, t_x, T), the paper's equation (6), for one customer.

    L = B(a, b+x)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+T)^(r+x))
        + [x > 0] · B(a+1, b+x-1)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+t_x)^(r+x)),
    computed as the common factor times a log-sum-exp of the two branches (alive at T, or dropped
    out right after the last purchase)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    common = (
        math.lgamma(r + x)
        - math.lgamma(r)
        + r * math.log(alpha)
        + math.lgamma(a + b)
        + math.lgamma(b + x)
        - math.lgamma(b)
        - math.lgamma(a + b + x)
    )
    alive = -(r + x) * math.log(alpha + T)
    if x <= 0:
        return common + alive
    dropped = math.log(a) - math.log(b + x - 1) - (r + x) * math.log(alpha + t_x)
    high, low = max(alive, dropped), min(alive, dropped)
    return common + high + math.log1p(math.exp(low - high))
