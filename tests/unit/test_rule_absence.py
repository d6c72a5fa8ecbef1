"""The absence kinds: inactivity (a fixed silence) and overdue (a silence against the customer's own rhythm)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from rules.cadence import cadence, quantile
from rules.context import EvaluationContext
from rules.kinds.inactivity import InactivityCondition
from rules.kinds.overdue import OverdueCondition
from tests.unit.state_builder import NOW, check, customer, days_ago, weekly

OVERDUE = OverdueCondition(kind="overdue", multiple=3.0, min_purchase_days=4, min_silence=timedelta(days=14))
SIXTY_DAYS = InactivityCondition(kind="inactivity", silent_for=timedelta(days=60))


def yearly(years: int, last_days_ago: float) -> list[float]:
    return [last_days_ago + 365 * n for n in range(years)]


@pytest.mark.parametrize(
    ("name", "purchases", "fires"),
    [
        ("weekly buyer silent for 20 days: under 3 gaps", weekly(118, 20), False),
        ("weekly buyer silent for 21 days: 3 gaps", weekly(119, 21), True),
        ("weekly buyer silent for 5 weeks", weekly(119, 35), True),
        ("weekly buyer who just bought", weekly(119, 0), False),
        ("yearly buyer silent for 5 weeks", yearly(4, 35), False),
        ("yearly buyer silent for 3 years and a day", yearly(4, 3 * 365 + 1), True),
        ("three purchase days are too few to know a rhythm", [60.0, 53.0, 46.0], False),
        ("daily buyer silent for 10 days: under min_silence", [float(d) for d in range(100, 9, -1)], False),
        ("daily buyer silent for 14 days", [float(d) for d in range(100, 13, -1)], True),
    ],
)
def test_overdue_against_own_rhythm(name: str, purchases: list[float], fires: bool) -> None:
    assert check(OVERDUE, customer(purchases)).fired is fires, name


def test_overdue_evidence_and_one_episode_per_silence() -> None:
    verdict = check(OVERDUE, customer(weekly(119, 35)))
    assert verdict.evidence["typical_gap_days"] == 7.0
    assert verdict.evidence["threshold_days"] == 21.0
    assert verdict.evidence["days_since_last_purchase"] == 35.0
    later = check(OVERDUE, customer(weekly(119, 35)), NOW + timedelta(days=10))
    assert later.episode == verdict.episode  # the same silence: alerted once


def test_overdue_next_check_is_the_moment_it_fires() -> None:
    state = customer(weekly(115, 10))
    due = OVERDUE.next_check(EvaluationContext(state, NOW))
    assert due == days_ago(10) + timedelta(days=21)
    assert not check(OVERDUE, state, due - timedelta(minutes=1)).fired
    assert check(OVERDUE, state, due).fired


def test_yearly_buyers_rhythm_comes_from_the_lifetime_when_the_horizon_holds_too_little() -> None:
    rhythm = cadence(customer(yearly(4, 35)))
    assert rhythm.purchase_days == 4
    assert rhythm.typical_gap_days == pytest.approx(365.0)


def test_quantile_interpolates_like_numpy() -> None:
    assert quantile([1, 2, 3, 10], 0.5) == 2.5
    assert quantile([7], 0.75) == 7
    assert quantile([1, 3], 0.75) == 2.5


@pytest.mark.parametrize(
    ("purchases", "fires"),
    [([100.0, 59.0], False), ([100.0, 60.0], True), ([], False)],
    ids=["59 days", "60 days", "never bought"],
)
def test_inactivity_of_purchases(purchases: list[float], fires: bool) -> None:
    assert check(SIXTY_DAYS, customer(purchases)).fired is fires


def test_inactivity_next_check_and_episode() -> None:
    state = customer([100.0, 30.0])
    ctx = EvaluationContext(state, NOW)
    assert SIXTY_DAYS.next_check(ctx) == days_ago(30) + timedelta(days=60)
    fired = check(SIXTY_DAYS, state, NOW + timedelta(days=30))
    assert fired.fired and fired.episode == f"silent-since@{days_ago(30).isoformat()}"


def test_inactivity_for_new_customers_judges_only_up_to_max_purchases() -> None:
    new_customers = InactivityCondition(kind="inactivity", silent_for=timedelta(days=45), max_purchases=3)
    three, four = customer([120.0, 100.0, 50.0]), customer([150.0, 120.0, 100.0, 50.0])
    fired = check(new_customers, three)
    assert fired.fired and fired.evidence["lifetime_purchases"] == 3
    assert new_customers.next_check(EvaluationContext(three, NOW)) == days_ago(50) + timedelta(days=45)
    quiet = check(new_customers, four)
    assert not quiet.fired and quiet.note == "more than 3 lifetime purchases"
    assert new_customers.next_check(EvaluationContext(four, NOW)) is None  # no due moment to wait for
    with pytest.raises(ValidationError, match="max_purchases must be at least min_purchases"):
        InactivityCondition(kind="inactivity", silent_for=timedelta(days=45), min_purchases=4, max_purchases=3)


def test_inactivity_of_chosen_interaction_kinds_ignores_others() -> None:
    rule = InactivityCondition(
        kind="inactivity", activity="interaction", interaction_kinds=("login",), silent_for=timedelta(days=30)
    )
    state = customer([90.0], interactions={"login": [45.0], "email_open": [1.0]})
    verdict = check(rule, state)
    assert verdict.fired
    assert 43.5 <= verdict.evidence["days_silent"] <= 45  # the end of the login's day


def test_inactivity_rejects_kinds_for_purchases() -> None:
    with pytest.raises(ValidationError, match="interaction_kinds applies only"):
        InactivityCondition(kind="inactivity", interaction_kinds=("login",), silent_for=timedelta(days=30))


LONG_GAP = OverdueCondition(
    kind="overdue", multiple=4, gap_quantile=0.9, min_purchase_days=4, min_silence=timedelta(days=30)
)


@pytest.mark.parametrize("rule", [OVERDUE, LONG_GAP, SIXTY_DAYS], ids=["median", "long-gap", "inactivity"])
def test_judged_exactly_at_its_next_check_a_rule_fires(rule: OverdueCondition | InactivityCondition) -> None:
    """The due scan (or a replay) may land exactly on the moment: no float rounding may leave the rule
    quiet there, or the customer would never be judged again. These gaps give a fractional 0.9 quantile
    that, compared as floats, fell just short of the threshold."""
    last = 1.1141906456920099
    gaps = [0, 7, 16, 24, 33, 39, 46, 50, 57, 69]
    state = customer([last + g for g in gaps])
    due = rule.next_check(EvaluationContext(state, NOW))
    assert due is not None
    assert check(rule, state, due).fired


def test_the_absence_kinds_are_resolved_by_the_activity_they_watch() -> None:
    from rules.kinds.purchase_model import PurchaseModelCondition

    logins = InactivityCondition(
        kind="inactivity", activity="interaction", interaction_kinds=("login",), silent_for=timedelta(days=30)
    )
    model = PurchaseModelCondition.model_validate(
        {"kind": "purchase_model", "parameters": {"r": 1.0, "alpha": 5.0, "a": 0.1, "b": 2.0}, "min_p_no_purchase": 0.7}
    )
    assert OVERDUE.resolved_by("purchase", None) and SIXTY_DAYS.resolved_by("purchase", None)
    assert model.resolved_by("purchase", None) and not model.resolved_by("interaction", "login")
    assert not OVERDUE.resolved_by("interaction", "login") and not SIXTY_DAYS.resolved_by("feedback", None)
    assert logins.resolved_by("interaction", "login") and not logins.resolved_by("interaction", "email_open")
    assert not logins.resolved_by("purchase", None)
