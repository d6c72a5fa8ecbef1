"""BG/NBD's closed forms against a numerical integration of the model, their monotonicity in T,
and the ``purchase_model`` rule kind: its verdicts, its evidence, its ``next_check`` moment and its
configuration errors."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from pydantic import ValidationError
from scipy.integrate import quad

from rules.context import EvaluationContext
from rules.kinds.purchase_model import PurchaseModelCondition
from rules.purchase_model import (
    BgNbdParameters,
    bgnbd_inputs,
    day_start,
    log_likelihood,
    p_alive,
    p_no_purchase_within,
)
from rules.ruleset import RuleConfigError, load_rule_set
from rules.state import day_number
from tests.unit.state_builder import NOW, check, customer, weekly

TESTED = BgNbdParameters(r=0.25, alpha=4.0, a=0.8, b=2.5)
"""The parameters the tests judge with (days), also those the fit tests recover."""
OTHER = BgNbdParameters(r=2.0, alpha=30.0, a=1.5, b=0.6)
HISTORIES = [  # (x, t_x, T, horizon)
    (0, 0.0, 50.0, 30.0),
    (1, 10.0, 50.5, 30.0),
    (5, 40.0, 200.3, 30.0),
    (20, 140.0, 175.5, 30.0),
    (3, 300.0, 301.0, 90.0),
    (60, 360.0, 500.0, 7.0),
]

# ---------------------------------------------------------------- the model, integrated numerically
# The closed forms come from integrating the model over λ ~ Gamma(r, α) and p ~ Beta(a, b). Here the
# same integrals are done by quadrature, from the model's story alone: alive after x repeat purchases
# has weight (1-p)^x λ^x e^(-λT); dropped out right after the x-th has p (1-p)^(x-1) λ^x e^(-λ t_x);
# alive and silent for h more days multiplies the first by e^(-λh). Quadrature agrees with the closed
# forms to about 1e-12 relative; the tests allow 1e-8.


def _log_rate_integral(p: BgNbdParameters, x: int, at: float) -> float:
    """log ∫ λ^x e^(-λ·at) Gamma(λ; r, α) dλ."""
    n, c = x + p.r, p.alpha + at
    upper = (n + 60 + 12 * math.sqrt(n)) / c  # the mass beyond is below e^-60 of the total
    if n < 2:  # λ^(n-1) is singular or steep at 0: quad's algebraic weight integrates it exactly
        shift = 0.0
        value, _ = quad(
            lambda lam: math.exp(-c * lam), 0, upper, weight="alg", wvar=(n - 1, 0), epsabs=0, epsrel=1e-12, limit=200
        )
    else:  # the integrand divided by its peak, so large x does not underflow
        mode = (n - 1) / c
        shift = (n - 1) * math.log(mode) - c * mode
        value, _ = quad(
            lambda lam: math.exp((n - 1) * math.log(lam) - c * lam - shift) if lam > 0 else 0.0,
            0,
            upper,
            points=[mode],
            epsabs=0,
            epsrel=1e-12,
            limit=200,
        )
    return shift + math.log(value) + p.r * math.log(p.alpha) - math.lgamma(p.r)


def _log_dropout_integral(p: BgNbdParameters, x: int, dropped: bool) -> float:
    """log ∫ (1-q)^x Beta(q; a, b) dq (alive), or log ∫ q (1-q)^(x-1) Beta(q; a, b) dq (dropped)."""
    powers = (p.a, p.b + x - 2) if dropped else (p.a - 1, p.b + x - 1)
    value, _ = quad(lambda q: 1.0, 0, 1, weight="alg", wvar=powers, epsabs=0, epsrel=1e-12, limit=200)
    return math.log(value) - (math.lgamma(p.a) + math.lgamma(p.b) - math.lgamma(p.a + p.b))


def integrated(p: BgNbdParameters, x: int, t_x: float, T: float, horizon: float) -> tuple[float, float, float]:
    """P(alive), P(no purchase within horizon) and the log-likelihood, by quadrature."""
    alive = _log_rate_integral(p, x, T) + _log_dropout_integral(p, x, dropped=False)
    alive_silent = _log_rate_integral(p, x, T + horizon) + _log_dropout_integral(p, x, dropped=False)
    dead = _log_rate_integral(p, x, t_x) + _log_dropout_integral(p, x, dropped=True) if x > 0 else -math.inf
    total = max(alive, dead) + math.log1p(math.exp(min(alive, dead) - max(alive, dead)))
    return math.exp(alive - total), math.exp(alive_silent - total) + math.exp(dead - total), total


@pytest.mark.parametrize("params", [TESTED, OTHER], ids=["r<1,a<1", "r>1,b<1"])
@pytest.mark.parametrize(("x", "t_x", "T", "horizon"), HISTORIES)
def test_closed_forms_match_the_integrated_model(
    params: BgNbdParameters, x: int, t_x: float, T: float, horizon: float
) -> None:
    alive, silent, ll = integrated(params, x, t_x, T, horizon)
    assert p_alive(params, x, t_x, T) == pytest.approx(alive, rel=1e-8, abs=1e-12)
    assert p_no_purchase_within(params, x, t_x, T, horizon) == pytest.approx(silent, rel=1e-8)
    assert log_likelihood(params, x, t_x, T) == pytest.approx(ll, rel=1e-8)


def test_no_overflow_for_long_lives_and_many_purchases() -> None:
    for x, t_x, T in [(100_000, 1e6, 2e6), (100_000, 1e6, 1e6), (1, 0.0, 1e9), (5_000, 3_000.0, 3_650.0)]:
        alive = p_alive(TESTED, x, t_x, T)
        silent = p_no_purchase_within(TESTED, x, t_x, T, 30.0)
        assert 0.0 <= alive <= 1.0 and 0.0 <= silent <= 1.0
        assert math.isfinite(log_likelihood(TESTED, x, t_x, T))
    assert p_alive(TESTED, 100_000, 1e6, 1e6) > 0.99  # bought just now, and often
    assert p_alive(TESTED, 100_000, 1e6, 2e6) == pytest.approx(0.0, abs=1e-300)


def test_one_time_buyers_are_alive_by_construction() -> None:
    assert p_alive(TESTED, 0, 0.0, 3650.0) == 1.0


@pytest.mark.parametrize("params", [TESTED, OTHER])
@pytest.mark.parametrize(("x", "t_x"), [(0, 0.0), (1, 3.0), (4, 30.0), (20, 140.0), (200, 365.0)])
def test_silence_only_ever_raises_p_no_purchase_and_lowers_p_alive(params: BgNbdParameters, x: int, t_x: float) -> None:
    """What next_check's bisection relies on (proved in p_no_purchase_within's docstring), on a grid
    of T from the last purchase to ten years later."""
    grid = [t_x + 0.25 * 1.1**k for k in range(110)]
    silent = [p_no_purchase_within(params, x, t_x, T, 30.0) for T in grid]
    alive = [p_alive(params, x, t_x, T) for T in grid]
    assert all(later >= earlier for earlier, later in pairwise(silent))
    assert all(later <= earlier for earlier, later in pairwise(alive))


def test_inputs_place_purchases_at_the_start_of_their_day() -> None:
    first, last = NOW - timedelta(days=100, hours=3), NOW - timedelta(days=10)
    inputs = bgnbd_inputs(day_number(first), day_number(last), 7, NOW)
    assert inputs.x == 6
    assert inputs.t_x == day_number(last) - day_number(first)
    since_first_day = NOW - day_start(day_number(first))
    assert since_first_day / timedelta(days=1) == inputs.T
    late_then_early = bgnbd_inputs(day_number(NOW) - 1, day_number(NOW), 2, day_start(day_number(NOW)))
    assert late_then_early.t_x <= late_then_early.T  # 23:59 then 00:01 never makes t_x > T


def test_the_rule_module_leaves_numpy_and_scipy_to_the_fit() -> None:
    script = "import sys, rules.kinds.purchase_model; print(sorted({m.split('.')[0] for m in sys.modules}))"
    imported = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    assert "numpy" not in imported and "scipy" not in imported


# ---------------------------------------------------------------- the rule kind

P_ALIVE_RULE = PurchaseModelCondition(kind="purchase_model", parameters=TESTED, max_p_alive=0.5)
SILENCE_RULE = PurchaseModelCondition(kind="purchase_model", parameters=TESTED, min_p_no_purchase=0.7)
WEEKLY_THEN_SILENT = weekly(35 + 7 * 20, 35)
"""Twenty-one weekly purchases, the last five weeks ago."""
YEARLY_THEN_SILENT = [35.0 + 730, 35.0 + 365, 35.0]
"""Once a year for three years, the last five weeks ago."""


@pytest.mark.parametrize(
    ("name", "purchases", "fires"),
    [
        ("weekly buyer silent for five weeks", WEEKLY_THEN_SILENT, True),
        ("weekly buyer, last purchase three days ago", weekly(3 + 7 * 20, 3), False),
        ("yearly buyer silent for five weeks", YEARLY_THEN_SILENT, False),
        ("monthly buyer for a year, silent for five weeks", [float(d) for d in range(35 + 330, 34, -30)], False),
    ],
)
def test_p_alive_judges_silence_against_the_customers_own_rhythm(
    name: str, purchases: list[float], fires: bool
) -> None:
    assert check(P_ALIVE_RULE, customer(purchases)).fired is fires, name


def test_evidence_of_a_lapsed_weekly_buyer() -> None:
    verdict = check(P_ALIVE_RULE, customer(WEEKLY_THEN_SILENT))
    assert verdict.evidence == {
        "p_alive": 0.2367,
        "p_no_purchase": 0.7737,
        "horizon_days": 30.0,
        "repeat_purchases": 20,
        "days_since_last_purchase": 35.0,
        "customer_age_days": 175.5,  # from the start of the first purchase's UTC day (NOW is 12:00)
    }
    assert set(verdict.evidence) == set(P_ALIVE_RULE.evidence_fields)
    assert verdict.episode == f"silent-after-day-{day_number(NOW - timedelta(days=35))}"


def test_p_no_purchase_is_high_for_the_lapsed_weekly_buyer_and_higher_for_a_yearly_one() -> None:
    """The trap of P(no purchase within 30 days) on a mixed population: a yearly buyer rarely buys in
    any month, so their P(no purchase) is high by nature, above the lapsed weekly buyer's. No threshold
    on it flags the weekly buyer and spares the yearly one (the README says so); P(alive) does."""
    weekly_buyer = check(SILENCE_RULE, customer(WEEKLY_THEN_SILENT))
    yearly_buyer = check(SILENCE_RULE, customer(YEARLY_THEN_SILENT))
    assert weekly_buyer.fired and float(weekly_buyer.evidence["p_no_purchase"] or 0) > 0.75  # type: ignore[arg-type]
    assert yearly_buyer.fired
    assert yearly_buyer.evidence["p_no_purchase"] > weekly_buyer.evidence["p_no_purchase"]  # type: ignore[operator]
    assert yearly_buyer.evidence["p_alive"] > 0.75  # type: ignore[operator]
    assert not check(SILENCE_RULE, customer(weekly(3 + 7 * 20, 3))).fired


def test_one_time_buyers_are_not_judged() -> None:
    verdict = check(P_ALIVE_RULE, customer([35.0]))
    assert not verdict.fired and verdict.evidence == {}
    assert verdict.note is not None and "one-time buyers" in verdict.note and "inactivity" in verdict.note
    twice_on_one_day = customer([35.0, 35.1])
    assert twice_on_one_day.lifetime_purchase_days == 1
    assert check(SILENCE_RULE, twice_on_one_day).note == verdict.note
    assert check(P_ALIVE_RULE, customer([])).note == "no purchase yet"
    assert P_ALIVE_RULE.next_check(EvaluationContext(customer([35.0]), NOW)) is None


@pytest.mark.parametrize("rule", [P_ALIVE_RULE, SILENCE_RULE], ids=["max_p_alive", "min_p_no_purchase"])
@pytest.mark.parametrize("last_days_ago", [3.0, 10.6, 20.25])
def test_next_check_is_the_moment_the_silence_crosses_the_threshold(
    rule: PurchaseModelCondition, last_days_ago: float
) -> None:
    whole, part = divmod(last_days_ago, 1)
    state = customer([d + part for d in weekly(int(whole) + 7 * 20, int(whole))])
    assert not check(rule, state).fired
    moment = rule.next_check(EvaluationContext(state, NOW))
    assert moment is not None and moment > NOW
    assert check(rule, state, moment).fired
    assert not check(rule, state, moment - timedelta(seconds=1)).fired
    assert rule.next_check(EvaluationContext(state, moment)) is None  # it fires then; only a purchase changes it


def test_next_check_gives_up_beyond_ten_years() -> None:
    patient = PurchaseModelCondition(kind="purchase_model", parameters=TESTED, max_p_alive=1e-300)
    state = customer(YEARLY_THEN_SILENT)
    assert patient.next_check(EvaluationContext(state, NOW)) is None


def test_a_weekly_buyer_is_flagged_about_three_weeks_into_the_silence() -> None:
    state = customer(weekly(7 * 20, 0))
    moment = P_ALIVE_RULE.next_check(EvaluationContext(state, NOW))
    assert moment is not None
    assert 20 < (moment - NOW) / timedelta(days=1) < 30


def test_one_threshold_exactly() -> None:
    with pytest.raises(ValidationError, match="exactly one threshold"):
        PurchaseModelCondition(kind="purchase_model", parameters=TESTED)
    with pytest.raises(ValidationError, match="exactly one threshold"):
        PurchaseModelCondition(kind="purchase_model", parameters=TESTED, max_p_alive=0.5, min_p_no_purchase=0.7)
    with pytest.raises(ValidationError, match="horizon must be positive"):
        PurchaseModelCondition(kind="purchase_model", parameters=TESTED, max_p_alive=0.5, horizon="0d")
    with pytest.raises(ValidationError):
        PurchaseModelCondition(kind="purchase_model", parameters=TESTED, max_p_alive=0.5, min_purchase_days=1)


RULE_FILE = """
rules:
  - id: lapsed-by-model
    kind: purchase_model
    model: bgnbd
    parameters: {r: 0.25, alpha: 4.0, a: 0.8, b: 2.5, unit: days}
    horizon: 30d
    max_p_alive: 0.5
    message: >-
      P(alive) {{ p_alive }}, P(no purchase in {{ horizon_days }} days) {{ p_no_purchase }}:
      {{ repeat_purchases }} repeat purchases, silent {{ days_since_last_purchase }} of {{ customer_age_days }} days.
"""


def test_a_rule_file_loads_and_its_message_may_use_every_evidence_field(tmp_path: Path) -> None:
    (tmp_path / "model.yaml").write_text(RULE_FILE)
    (rule,) = load_rule_set(tmp_path).rules
    assert isinstance(rule, PurchaseModelCondition) and rule.parameters == TESTED


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ("alpha: 4.0", "parameters.alpha", "greater than 0"),
        ("unit: days", "parameters.unit", "'days'"),
        ("b: 2.5", "parameters.b", "greater than 0"),
    ],
)
def test_a_bad_parameter_names_file_rule_and_field(tmp_path: Path, change: str, field: str, says: str) -> None:
    broken = {"alpha: 4.0": "alpha: -4.0", "unit: days": "unit: weeks", "b: 2.5": "b: 0"}[change]
    path = tmp_path / "model.yaml"
    path.write_text(RULE_FILE.replace(change, broken))
    with pytest.raises(RuleConfigError) as info:
        load_rule_set(tmp_path)
    (problem,) = (str(p) for p in info.value.problems)
    assert str(path) in problem and "rule 'lapsed-by-model'" in problem and f"field '{field}'" in problem
    assert says in problem
