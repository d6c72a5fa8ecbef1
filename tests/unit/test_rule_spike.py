from pathlib import Path

import pytest
from pydantic import ValidationError

from rules.evaluation import evaluate_rule
from rules.kinds.spike import SpikeCondition
from rules.ruleset import load_rule_set
from tests.unit.state_builder import NOW, check, customer, weekly

DEFAULTS = Path(__file__).resolve().parents[2] / "rules" / "defaults"

RULE = SpikeCondition(kind="spike")
TODAY = SpikeCondition(kind="spike", window_days=1)
RELATIVE = SpikeCondition(kind="spike", baseline_multiplier=3.0, baseline_days=90, min_history_days=30)
REFUNDS = SpikeCondition(kind="spike", interaction_kinds=["refund_request"], min_count=2)

# A heavy user: a ticket every 3 days from 96 to 9 days ago, 30 in the 90 days before the last 7,
# so about 2.3 are expected in any week.
HEAVY = [float(d) for d in range(96, 8, -3)]


@pytest.mark.parametrize(
    ("name", "rule", "purchases", "interactions", "fires"),
    [
        ("three tickets this week", RULE, [], {"support_ticket": [0, 2, 5]}, True),
        ("two tickets this week", RULE, [], {"support_ticket": [0, 2]}, False),
        ("two tickets and a complaint", RULE, [], {"support_ticket": [0, 2], "complaint": [4]}, True),
        ("three tickets, the oldest 7 days ago: outside the window", RULE, [], {"support_ticket": [0, 2, 7]}, False),
        ("logins are not tickets", RULE, [], {"login": [0, 1, 2, 3]}, False),
        ("window 1 is today: three today", TODAY, [], {"support_ticket": [0, 0.1, 0.2]}, True),
        ("window 1 is today: two today, one yesterday", TODAY, [], {"support_ticket": [0, 0.1, 1]}, False),
        ("custom kind", REFUNDS, [], {"refund_request": [1, 3]}, True),
        ("custom kind: tickets do not count", REFUNDS, [], {"support_ticket": [1, 3]}, False),
        ("relative: quiet customer files three", RELATIVE, weekly(119, 0), {"support_ticket": [0, 2, 5]}, True),
        ("relative: quiet customer files two", RELATIVE, weekly(119, 0), {"support_ticket": [0, 2]}, False),
        ("relative: heavy user's usual week", RELATIVE, [], {"support_ticket": [*HEAVY, 0, 3, 6]}, False),
        (
            "relative: heavy user, four is not three times usual",
            RELATIVE,
            [],
            {"support_ticket": [*HEAVY, 0, 1, 3, 5]},
            False,
        ),
        ("relative: heavy user, seven is", RELATIVE, [], {"support_ticket": [*HEAVY, 0, 0, 1, 2, 3, 4, 5]}, True),
        ("absolute: the heavy user's usual week fires", RULE, [], {"support_ticket": [*HEAVY, 0, 3, 6]}, True),
        ("relative: brand-new customer, min_count decides", RELATIVE, [], {"support_ticket": [0, 1, 2]}, True),
    ],
)
def test_table(
    name: str, rule: SpikeCondition, purchases: list[float], interactions: dict[str, list[float]], fires: bool
) -> None:
    assert check(rule, customer(purchases, interactions=interactions)).fired is fires, name


def test_evidence_with_a_baseline() -> None:
    verdict = check(RELATIVE, customer(interactions={"support_ticket": [*HEAVY, 0, 0, 1, 2, 3, 4, 5]}))
    assert verdict.fired
    assert dict(verdict.evidence) == {
        "interaction_kinds": "support_ticket/complaint",
        "count": 7,
        "window_days": 7,
        "expected": pytest.approx(2.33),
        "baseline_days": 90,
        "multiplier": 3.0,
    }
    assert set(verdict.evidence) == set(RELATIVE.evidence_names())


def test_evidence_without_a_multiplier() -> None:
    verdict = check(RULE, customer(interactions={"support_ticket": [0, 2], "complaint": [4]}))
    assert verdict.fired and verdict.note is None
    ev = verdict.evidence
    assert (ev["count"], ev["window_days"], ev["expected"], ev["baseline_days"], ev["multiplier"]) == (
        3, 7, None, None, None,
    )  # fmt: skip


def test_activity_of_any_kind_starts_the_history() -> None:
    # Logged in for months, never a ticket: the expectation is zero, not "no history".
    verdict = check(RELATIVE, customer(interactions={"login": [80, 60, 40], "complaint": [0, 1, 2]}))
    assert verdict.fired and verdict.note is None
    assert verdict.evidence["expected"] == 0.0 and verdict.evidence["baseline_days"] == 74


def test_without_history_the_note_says_min_count_decided() -> None:
    verdict = check(RELATIVE, customer(interactions={"support_ticket": [0, 1, 2]}))
    assert verdict.fired and verdict.evidence["expected"] is None
    assert verdict.note == "too little history for a baseline: min_count alone decided"


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("zero min_count", {"min_count": 0}, "min_count"),
        ("zero window", {"window_days": 0}, "window_days"),
        ("zero multiplier", {"baseline_multiplier": 0}, "baseline_multiplier"),
        ("no kinds", {"interaction_kinds": []}, "interaction_kinds"),
        ("min history longer than baseline", {"baseline_days": 20, "min_history_days": 30}, "min_history_days"),
    ],
)
def test_config_errors(name: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SpikeCondition.model_validate({"kind": "spike", **params})


def test_shipped_rule_fires_and_renders() -> None:
    rule = load_rule_set(DEFAULTS).by_id("support-spike")
    assert rule is not None
    assert evaluate_rule(rule, customer(interactions={"support_ticket": [*HEAVY, 0, 3, 6]}), NOW) is None
    finding = evaluate_rule(
        rule, customer(weekly(119, 0), interactions={"support_ticket": [0, 2], "complaint": [4]}), NOW
    )
    assert finding is not None
    assert finding.message == "3 support_ticket/complaint interactions in the last 7 days against a usual 0.0."
    new = evaluate_rule(rule, customer(interactions={"complaint": [0, 1, 2]}), NOW)
    assert new is not None and new.message == "3 support_ticket/complaint interactions in the last 7 days."
