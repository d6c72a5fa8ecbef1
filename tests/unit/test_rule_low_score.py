from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from rules.evaluation import evaluate_rule
from rules.kinds.low_score import LowScoreCondition
from rules.ruleset import RuleConfigError, load_rule_set
from rules.state import CustomerState
from tests.unit.state_builder import NOW, check, customer

DEFAULTS = Path(__file__).resolve().parents[2] / "rules" / "defaults"

CSAT_LAST = LowScoreCondition(kind="low_score", survey="csat", threshold=2)
CSAT_MEAN = LowScoreCondition(kind="low_score", survey="csat", threshold=2, aggregate="mean", of_last=3)
CSAT_MEAN_TWO = LowScoreCondition(
    kind="low_score", survey="csat", threshold=2, aggregate="mean", of_last=3, min_answers=2
)
CES_HIGH = LowScoreCondition(kind="low_score", survey="ces", threshold=6)
NPS_LOW = LowScoreCondition(kind="low_score", survey="nps", threshold=6)

Answers = list[tuple[float, int]]


@pytest.mark.parametrize(
    ("name", "rule", "surveys", "fires"),
    [
        ("csat 2 yesterday", CSAT_LAST, {"csat": [(1, 2)]}, True),
        ("csat 3 is not low", CSAT_LAST, {"csat": [(1, 3)]}, False),
        ("csat: only the latest answer counts", CSAT_LAST, {"csat": [(5, 1), (1, 4)]}, False),
        ("csat mean of 1, 2, 3 is exactly 2", CSAT_MEAN, {"csat": [(9, 1), (5, 2), (1, 3)]}, True),
        ("csat mean of 5, 1, 1 is 2.33", CSAT_MEAN, {"csat": [(9, 5), (5, 1), (1, 1)]}, False),
        ("csat mean: only the last 3 answers", CSAT_MEAN, {"csat": [(40, 5), (30, 5), (9, 1), (5, 1), (1, 2)]}, True),
        (
            "csat mean: older low answers drop out",
            CSAT_MEAN,
            {"csat": [(40, 1), (30, 1), (9, 1), (5, 5), (1, 5)]},
            False,
        ),
        ("csat mean of one answer is that answer", CSAT_MEAN, {"csat": [(1, 1)]}, True),
        ("csat mean, min 2 answers: one is not enough", CSAT_MEAN_TWO, {"csat": [(1, 1)]}, False),
        ("csat mean, min 2 answers: two low answers", CSAT_MEAN_TWO, {"csat": [(3, 1), (1, 2)]}, True),
        ("ces 6 is high effort", CES_HIGH, {"ces": [(1, 6)]}, True),
        ("ces 7 is high effort", CES_HIGH, {"ces": [(1, 7)]}, True),
        ("ces 5 is below the threshold", CES_HIGH, {"ces": [(1, 5)]}, False),
        ("ces 1 is low effort: good, not bad", CES_HIGH, {"ces": [(1, 1)]}, False),
        ("nps 6 is low", NPS_LOW, {"nps": [(1, 6)]}, True),
        ("nps 7 is not", NPS_LOW, {"nps": [(1, 7)]}, False),
        ("another survey's answers do not count", CES_HIGH, {"csat": [(1, 1)], "nps": [(1, 0)]}, False),
        ("no answers", CSAT_LAST, {}, False),
        ("a csat 1 twenty days ago is too old", CSAT_LAST, {"csat": [(20, 1)]}, False),
        ("an answer after the evaluation time is not seen yet", CSAT_LAST, {"csat": [(-1, 1)]}, False),
    ],
)
def test_table(name: str, rule: LowScoreCondition, surveys: dict[str, Answers], fires: bool) -> None:
    state = customer(nps=surveys.get("nps", []), csat=surveys.get("csat", []), ces=surveys.get("ces", []))
    assert check(rule, state).fired is fires, name


def test_evidence_for_a_mean() -> None:
    verdict = check(CSAT_MEAN, customer(csat=[(30, 5), (9, 1), (5, 2), (1, 2)]))
    assert verdict.fired
    assert dict(verdict.evidence) == {
        "survey": "csat",
        "value": pytest.approx(1.67),
        "answers_considered": 3,
        "latest_score": 2,
        "answered_at": (NOW - timedelta(days=1)).isoformat(),
        "threshold": 2,
    }
    assert set(verdict.evidence) == set(CSAT_MEAN.evidence_names())


def test_evidence_for_the_last_answer() -> None:
    verdict = check(CES_HIGH, customer(ces=[(3, 2), (1, 7)]))
    assert verdict.fired
    ev = verdict.evidence
    assert (ev["survey"], ev["value"], ev["answers_considered"], ev["latest_score"], ev["threshold"]) == (
        "ces", 7, 1, 7, 6,
    )  # fmt: skip


def test_one_answer_is_one_episode() -> None:
    first = check(CSAT_LAST, customer(csat=[(1, 1)]))
    later_now = NOW + timedelta(days=2)
    again = check(CSAT_LAST, customer(csat=[(3, 1)], now=later_now), later_now)
    assert first.fired and again.fired and first.episode == again.episode
    newer = check(CSAT_LAST, customer(csat=[(3, 1), (1, 2)], now=later_now), later_now)
    assert newer.fired and newer.episode != first.episode
    assert first.episode is not None and first.episode.startswith("csat@")


def test_notes_say_why_not_judged() -> None:
    assert check(CES_HIGH, customer()).note == "no CES answer"
    assert check(CSAT_LAST, customer(csat=[(20, 1)])).note == "the latest CSAT answer is older than max_age"
    assert check(CSAT_MEAN_TWO, customer(csat=[(1, 1)])).note == "fewer than 2 CSAT answers"


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("csat above its scale", {"survey": "csat", "threshold": 6}, r"outside the CSAT scale \(1-5\)"),
        ("ces below its scale", {"survey": "ces", "threshold": 0}, r"outside the CES scale \(1-7\)"),
        ("nps above its scale", {"survey": "nps", "threshold": 11}, r"outside the NPS scale \(0-10\)"),
        ("csat 5 fires on every answer", {"survey": "csat", "threshold": 5}, "would fire on every CSAT answer"),
        ("ces 1 fires on every answer", {"survey": "ces", "threshold": 1}, "CES is bad when high"),
        ("unknown survey", {"survey": "nss", "threshold": 3}, "survey"),
        ("threshold is required", {"survey": "csat"}, "threshold"),
        ("unknown aggregate", {"survey": "csat", "threshold": 2, "aggregate": "median"}, "aggregate"),
        (
            "min_answers above of_last",
            {"survey": "csat", "threshold": 2, "aggregate": "mean", "of_last": 2, "min_answers": 3},
            "min_answers",
        ),
    ],
)
def test_config_errors(name: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LowScoreCondition.model_validate({"kind": "low_score", **params})


def test_rule_file_error_names_the_rule_and_the_scale(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "rules:\n"
        "  - id: csat-low\n"
        "    kind: low_score\n"
        "    survey: csat\n"
        "    threshold: 7\n"
        "    message: 'CSAT {{ value }}'\n"
    )
    with pytest.raises(RuleConfigError) as info:
        load_rule_set(tmp_path)
    (problem,) = [str(p) for p in info.value.problems]
    assert "rule 'csat-low'" in problem and "outside the CSAT scale (1-5)" in problem


@pytest.mark.parametrize(
    ("rule_id", "quiet", "firing", "message"),
    [
        (
            "csat-low",
            customer(csat=[(1, 1)]),
            customer(csat=[(20, 3), (3, 1), (1, 2)]),
            "CSAT averaging 2.0/5 over the last 3 answers (latest 2).",
        ),
        (
            "ces-high-effort",
            customer(ces=[(1, 5)]),
            customer(ces=[(1, 7)]),
            "CES answer 7/7: the customer found it hard to get things done.",
        ),
    ],
)
def test_shipped_rules_fire_and_render(rule_id: str, quiet: CustomerState, firing: CustomerState, message: str) -> None:
    rule = load_rule_set(DEFAULTS).by_id(rule_id)
    assert rule is not None
    assert evaluate_rule(rule, quiet, NOW) is None
    finding = evaluate_rule(rule, firing, NOW)
    assert finding is not None and finding.message == message
