from pathlib import Path

import pytest
from pydantic import ValidationError

from rules.evaluation import evaluate_rule
from rules.kinds.interaction_drop import InteractionDropCondition
from rules.ruleset import load_rule_set
from tests.unit.state_builder import NOW, check, customer

DEFAULTS = Path(__file__).resolve().parents[2] / "rules" / "defaults"

RULE = InteractionDropCondition(
    kind="interaction_drop",
    recent_days=30,
    baseline_days=90,
    max_ratio=0.5,
    min_baseline_interactions=8,
    min_history_days=30,
)
WEBINARS = InteractionDropCondition(kind="interaction_drop", interaction_kinds=["webinar"], min_baseline_interactions=3)


def every(from_days_ago: int, to_days_ago: int, step: int = 1) -> list[float]:
    return [float(d) for d in range(from_days_ago, to_days_ago - 1, -step)]


@pytest.mark.parametrize(
    ("name", "rule", "interactions", "fires"),
    [
        ("daily logins keep coming", RULE, {"login": every(119, 0)}, False),
        ("daily logins stopped 20 days ago", RULE, {"login": every(119, 20)}, True),
        ("daily logins stopped 10 days ago: 20 of 30 expected", RULE, {"login": every(119, 10)}, False),
        ("daily logins stopped 15 days ago: exactly half", RULE, {"login": every(119, 15)}, True),
        ("logins stopped but sessions go on", RULE, {"login": every(119, 20), "session": every(19, 0)}, False),
        (
            "switched from logins to sessions, both counted",
            RULE,
            {"login": every(119, 60), "session": every(59, 0)},
            False,
        ),
        ("support tickets are not engagement", RULE, {"login": every(119, 40), "support_ticket": every(29, 0)}, True),
        ("too few baseline logins", RULE, {"login": every(119, 40, 14)}, False),
        ("new customer: logins only in the last 20 days", RULE, {"login": every(19, 0)}, False),
        ("no interactions at all", RULE, {}, False),
        ("custom kind: webinars stopped", WEBINARS, {"webinar": every(119, 40, 7)}, True),
        ("custom kind: webinars go on", WEBINARS, {"webinar": every(119, 0, 7)}, False),
        ("custom kind: logins are not webinars", WEBINARS, {"login": every(119, 40)}, False),
    ],
)
def test_table(name: str, rule: InteractionDropCondition, interactions: dict[str, list[float]], fires: bool) -> None:
    assert check(rule, customer(interactions=interactions)).fired is fires, name


def test_evidence_names_the_numbers() -> None:
    verdict = check(RULE, customer(interactions={"login": every(119, 20), "session": every(119, 20, 2)}))
    assert verdict.fired
    assert dict(verdict.evidence) == {
        "interaction_kinds": "login/session",
        "recent_interactions": 10 + 5,
        "recent_days": 30,
        "baseline_interactions": 90 + 45,
        "baseline_days": 90,
        "expected_interactions": pytest.approx(45.0),
        "ratio": pytest.approx(0.333),
    }
    assert set(verdict.evidence) == set(RULE.evidence_names())


def test_history_starts_at_the_earliest_listed_interaction() -> None:
    # Logged in daily from 65 to 35 days ago; a purchase long before does not lengthen the history.
    verdict = check(RULE, customer([110.0], interactions={"login": every(65, 35)}))
    assert verdict.fired
    assert verdict.evidence["baseline_days"] == 36
    assert verdict.evidence["expected_interactions"] == pytest.approx(31 * 30 / 36, abs=0.01)


def test_short_history_says_which_kinds() -> None:
    verdict = check(RULE, customer(interactions={"login": every(45, 0)}))
    assert not verdict.fired and verdict.note == "less than 30 days of login/session history"


def test_default_kinds_are_login_and_session() -> None:
    assert InteractionDropCondition(kind="interaction_drop").interaction_kinds == ("login", "session")


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("no kinds", {"interaction_kinds": []}, "interaction_kinds"),
        ("kind not written as events name it", {"interaction_kinds": ["Login"]}, "interaction_kinds"),
        ("min history longer than baseline", {"baseline_days": 20, "min_history_days": 30}, "min_history_days"),
        ("ratio above 1", {"max_ratio": 2}, "max_ratio"),
        ("zero baseline minimum", {"min_baseline_interactions": 0}, "min_baseline_interactions"),
    ],
)
def test_config_errors(name: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        InteractionDropCondition.model_validate({"kind": "interaction_drop", **params})


def test_shipped_rule_fires_on_a_regular_visitor_who_stopped_and_renders() -> None:
    rule = load_rule_set(DEFAULTS).by_id("interaction-drop")
    assert rule is not None
    assert evaluate_rule(rule, customer(interactions={"login": every(119, 0)}), NOW) is None
    finding = evaluate_rule(rule, customer(interactions={"login": every(119, 25)}), NOW)
    assert finding is not None
    assert finding.message == (
        "5 login/session interactions in the last 30 days against a usual 30.0 (90 in the 90 days before)."
    )
