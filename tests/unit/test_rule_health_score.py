from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from rules.evaluation import evaluate_rule
from rules.health import DEFAULT_WEIGHTS, assess, contributions, movers, signals
from rules.kinds.health_score import HealthScoreCondition
from rules.ruleset import load_rule_set
from rules.state import CustomerState
from tests.unit.state_builder import NOW, check, customer, weekly

DEFAULTS = Path(__file__).resolve().parents[2] / "rules" / "defaults"
BANDS = HealthScoreCondition(kind="health_score", alert_on_bands=["at_risk", "critical"])
DROP = HealthScoreCondition(kind="health_score", max_drop=10)
REGULAR = weekly(140, 0)
LOGINS = {"login": [float(d) for d in range(140, -1, -3)]}


def signal(state: CustomerState, name: str, days_ago: float = 0) -> float | None:
    return signals(state, NOW - timedelta(days=days_ago), complaints_cap=3)[name]


@pytest.mark.parametrize(
    ("name", "rule", "state", "fires"),
    [
        ("regular weekly buyer, promoter", BANDS, customer(REGULAR, nps=[(60, 9)]), False),
        ("regular buyer, no surveys at all", BANDS, customer(REGULAR), False),
        (
            "stopped buying 21 days ago and just answered NPS 2: healthy -> critical",
            BANDS,
            customer(weekly(140, 21), nps=[(60, 9), (2, 2)]),
            True,
        ),
        (
            "stopped buying 14 days ago and just answered NPS 2: healthy -> at_risk",
            BANDS,
            customer(weekly(140, 14), nps=[(60, 9), (2, 2)]),
            True,
        ),
        ("stopped 60 days ago: critical, but already critical a week ago", BANDS, customer(weekly(140, 60)), False),
        ("came back: better than a week ago", BANDS, customer([*weekly(140, 60), 3.0, 1.0]), False),
        ("new customer with two purchases: not judged", BANDS, customer([5.0, 3.0], nps=[(1, 0)]), False),
        ("only an NPS answer: not judged", BANDS, customer(nps=[(1, 0)]), False),
        ("promoter turned detractor within a week: drop of 14", DROP, customer(REGULAR, nps=[(60, 10), (2, 3)]), True),
        ("a passive answer: drop of 4", DROP, customer(REGULAR, nps=[(60, 9), (2, 7)]), False),
    ],
)
def test_table(name: str, rule: HealthScoreCondition, state: CustomerState, fires: bool) -> None:
    assert check(rule, state).fired is fires, name


def test_a_customer_who_stops_and_says_so_is_told_with_the_movers() -> None:
    verdict = check(BANDS, customer(weekly(140, 21), nps=[(60, 9), (2, 2)]))
    assert verdict.fired
    ev = verdict.evidence
    assert (ev["band"], ev["previous_band"]) == ("critical", "healthy")
    assert ev["score"] == 32.2 and ev["previous_score"] == 70.3 and ev["drop"] == 38.1
    assert ev["movers"] == "nps -14.0, recency -13.3, frequency_trend -6.2, spend_trend -4.6"
    assert ev["signal_recency"] == 0.0 and ev["signal_nps"] == 0.2 and ev["signal_complaints"] == 1.0
    assert ev["missing"] == "interaction_trend, csat, ces"
    assert ev["signal_csat"] is None
    assert verdict.episode is None


def test_healthy_regular_customer_scores_high() -> None:
    state = customer(REGULAR, nps=[(60, 9)], csat=[(20, 5)], ces=[(20, 2)], interactions=LOGINS)
    verdict = check(BANDS, state)
    assert not verdict.fired
    assert verdict.evidence["score"] == pytest.approx(100 * (1 - 0.15 * 0.1 - 0.05 / 6), abs=0.05)
    assert verdict.evidence["band"] == "healthy" and verdict.evidence["missing"] == ""
    assert verdict.evidence["weight_present"] == 1.0


def test_missing_surveys_share_out_their_weight_and_the_evidence_says_so() -> None:
    # Present: recency, frequency, spend (1.0 each), NPS 5 (0.5), complaints (1.0): weight 0.75.
    verdict = check(BANDS, customer(REGULAR, nps=[(30, 5)]))
    ev = verdict.evidence
    assert ev["score"] == pytest.approx(100 * (0.2 + 0.2 + 0.15 + 0.15 * 0.5 + 0.05) / 0.75, abs=0.05)
    assert ev["missing"] == "interaction_trend, csat, ces"
    assert ev["weight_present"] == 0.75


def test_a_zero_weight_switches_a_signal_off_rather_than_missing_it() -> None:
    rule = HealthScoreCondition(kind="health_score", max_drop=10, weights={"csat": 0, "ces": 0})
    assert check(rule, customer(REGULAR, nps=[(30, 9)])).evidence["missing"] == "interaction_trend"


def test_too_little_weight_present_is_quiet_with_a_note() -> None:
    verdict = check(BANDS, customer([5.0, 3.0]))
    assert not verdict.fired
    assert verdict.note is not None and verdict.note.startswith("too little data now: 25% of the weight")
    assert verdict.evidence["missing"] == "frequency_trend, spend_trend, interaction_trend, nps, csat, ces"
    assert "score" not in verdict.evidence


def test_no_score_a_lookback_ago_is_quiet() -> None:
    # 64 days of history: enough baseline for the trends now (35 days), not a week ago (28 days).
    verdict = check(BANDS, customer(weekly(64, 0)))
    assert not verdict.fired
    assert verdict.note is not None and verdict.note.startswith("too little data 1w ago")
    assert verdict.evidence["score"] == 100.0


def test_max_drop_fires_within_the_healthy_band() -> None:
    verdict = check(DROP, customer(REGULAR, nps=[(60, 10), (2, 3)]))
    assert verdict.fired
    assert verdict.evidence["band"] == verdict.evidence["previous_band"] == "healthy"
    assert verdict.evidence["drop"] == 14.0 and verdict.evidence["movers"] == "nps -14.0"


# --- the signals -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last_days_ago", "expected"),
    [(0, 1.0), (5, 1.0), (10, 1.0), (15, 0.75), (20, 0.5), (25, 0.25), (30, 0.0), (45, 0.0)],
)
def test_recency_is_full_within_the_usual_gap_and_zero_at_three_gaps(last_days_ago: int, expected: float) -> None:
    every_ten_days = [float(d) for d in range(last_days_ago + 100, last_days_ago - 1, -10)]
    assert signal(customer(every_ten_days), "recency") == pytest.approx(expected)


def test_recency_then_ignores_purchases_after_then() -> None:
    # Bought every 10 days until 40 days ago, then once yesterday: full now, over 3 gaps a week ago.
    state = customer([*[float(d) for d in range(130, 39, -10)], 1.0])
    assert signal(state, "recency") == 1.0
    assert signal(state, "recency", days_ago=7) == pytest.approx(0.0)
    assert signal(customer([3.0]), "recency") is None


@pytest.mark.parametrize(
    ("kind", "score", "expected"),
    [("nps", 10, 1.0), ("nps", 2, 0.2), ("csat", 5, 1.0), ("csat", 4, 0.75), ("csat", 1, 0.0),
     ("ces", 1, 1.0), ("ces", 7, 0.0), ("ces", 4, 0.5)],
)  # fmt: skip
def test_survey_normalisation(kind: str, score: int, expected: float) -> None:
    assert signal(customer(**{kind: [(90, 0 if kind == "nps" else 3), (1, score)]}), kind) == pytest.approx(expected)


def test_answers_after_the_moment_are_not_seen() -> None:
    state = customer(nps=[(30, 9), (3, 1)])
    assert signal(state, "nps") == pytest.approx(0.1)
    assert signal(state, "nps", days_ago=7) == pytest.approx(0.9)
    assert signal(customer(nps=[(-1, 9)]), "nps") is None


def test_trends_clamp_to_one_and_need_a_baseline() -> None:
    assert signal(customer([*REGULAR, 1.0, 2.0, 3.0]), "frequency_trend") == 1.0
    assert signal(customer(weekly(140, 40)), "frequency_trend") == 0.0
    assert signal(customer([100.0, 70.0, 10.0]), "frequency_trend") is None  # two baseline purchases
    spend = customer(REGULAR, amounts=[40.0 if d > 29 else 10.0 for d in REGULAR])
    assert signal(spend, "frequency_trend") == pytest.approx(1.0, abs=0.05)
    # 5 purchases of 10 in the last 30 days against 13 of 40 in the 90 before: 50 / (520 / 3).
    assert signal(spend, "spend_trend") == pytest.approx(50 / (520 / 3))


def test_interaction_trend_leaves_support_out() -> None:
    tickets = {"support_ticket": [float(d) for d in range(140, -1, -2)]}
    assert signal(customer(interactions=LOGINS), "interaction_trend") == pytest.approx(1.0, abs=0.05)
    assert signal(customer(interactions=tickets), "interaction_trend") is None
    stopped = {"login": [float(d) for d in range(140, 35, -3)], "email_open": [2.0]}
    assert signal(customer(interactions=stopped), "interaction_trend") == pytest.approx(0.1, abs=0.05)


@pytest.mark.parametrize(("recent", "expected"), [(0, 1.0), (1, 2 / 3), (3, 0.0), (5, 0.0)])
def test_complaints_in_the_last_30_days(recent: int, expected: float) -> None:
    interactions = {"support_ticket": [1.0] * (recent - recent // 2) + [40.0, 60.0], "complaint": [5.0] * (recent // 2)}
    assert signal(customer(interactions=interactions), "complaints") == pytest.approx(expected)


def test_contributions_add_up_to_the_change_even_when_signals_come_and_go() -> None:
    cases = [
        customer(weekly(140, 21), nps=[(60, 9), (2, 2)]),  # same signals both times
        customer(weekly(140, 14), nps=[(2, 2)], csat=[(3, 2)]),  # NPS and CSAT appeared
        customer([*weekly(140, 21), 100.5], interactions={"login": [124.0, 122.0, 45.0]}),  # trend lost
    ]
    for state in cases:
        now = assess(state, NOW, DEFAULT_WEIGHTS, 3)
        then = assess(state, NOW - timedelta(days=7), DEFAULT_WEIGHTS, 3)
        assert now.present.keys() != then.present.keys() or state is cases[0]
        assert sum(contributions(now, then).values()) == pytest.approx(now.score - then.score)


def test_movers_are_sorted_by_impact_and_skip_zero() -> None:
    moved = {"recency": -18.0, "nps": -9.04, "csat": 2.5, "ces": 0.01, "spend_trend": -1.0, "complaints": 0.5}
    assert movers(moved) == "recency -18.0, nps -9.0, csat +2.5, spend_trend -1.0"
    assert movers({}) == ""


# --- configuration ---------------------------------------------------------------------------------------


def test_partial_weights_keep_the_other_defaults() -> None:
    rule = HealthScoreCondition(kind="health_score", max_drop=10, weights={"nps": 0.3})
    assert rule.weights == {**DEFAULT_WEIGHTS, "nps": 0.3}
    assert list(rule.weights) == list(DEFAULT_WEIGHTS)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"weights": {"recencey": 0.2}}, "unknown signal(s) recencey; valid signals: recency, frequency_trend"),
        ({"weights": {"nps": -1}}, "greater than or equal to 0"),
        ({"weights": dict.fromkeys(DEFAULT_WEIGHTS, 0)}, "at least one weight must be above 0"),
        ({"bands": {"healthy": 40, "at_risk": 70}}, "at_risk (70) must be below healthy (40)"),
        ({"bands": {"healthy": 70, "at_risk": 70}}, "must be below healthy"),
        ({"bands": {"healthy": 70, "at_rsk": 40}}, "Extra inputs are not permitted"),
        ({"alert_on_bands": ["healthy"]}, "'at_risk' or 'critical'"),
        ({"alert_on_bands": [], "max_drop": None}, "configure a trigger: alert_on_bands"),
        ({"max_drop": 10, "lookback": "45d"}, "lookback must be between 1d and 30d"),
        ({"max_drop": 10, "min_weight_present": 0}, "greater than 0"),
    ],
)
def test_config_errors(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        HealthScoreCondition(kind="health_score", **{"alert_on_bands": ["critical"], **config})  # type: ignore[arg-type]
    assert message in str(info.value)


def test_shipped_default_loads_and_renders_its_message() -> None:
    rule = load_rule_set(DEFAULTS).by_id("health-score")
    assert rule is not None
    finding = evaluate_rule(rule, customer(weekly(140, 21), nps=[(60, 9), (2, 2)]), NOW)
    assert finding is not None
    assert finding.message == (
        "Health score 32.2 (critical, was 70.3 healthy 1w ago); moved by nps -14.0, recency -13.3, "
        "frequency_trend -6.2, spend_trend -4.6; no data for interaction_trend, csat, ces, its weight shared out."
    )


def test_a_silent_customer_is_judged_again_a_day_later_as_the_score_decays() -> None:
    from rules.context import EvaluationContext

    rule = load_rule_set(DEFAULTS).by_id("health-score")
    assert rule is not None
    buyer = customer([40.0, 33.0, 26.0])
    assert rule.next_check(EvaluationContext(buyer, NOW)) == NOW + timedelta(days=1)
    assert rule.next_check(EvaluationContext(customer([]), NOW)) is None  # no purchase history: nothing decays
