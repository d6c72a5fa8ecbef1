from datetime import timedelta

import pytest

from rules.kinds.detractor import DetractorCondition
from tests.unit.state_builder import NOW, check, customer

RULE = DetractorCondition(kind="detractor")
DROP_ONLY = DetractorCondition(kind="detractor", require_drop=True)
FROM_PROMOTER = DetractorCondition(kind="detractor", from_promoter=True)


@pytest.mark.parametrize(
    ("name", "rule", "answers", "fires"),
    [
        ("a 3 yesterday", RULE, [(1, 3)], True),
        ("a 6 is a detractor", RULE, [(1, 6)], True),
        ("a 7 is a passive", RULE, [(1, 7)], False),
        ("a promoter", RULE, [(1, 10)], False),
        ("no answers", RULE, [], False),
        ("a 0 twenty days ago is too old", RULE, [(20, 0)], False),
        ("only the latest answer counts", RULE, [(5, 2), (1, 9)], False),
        ("drop required: 9 then 4", DROP_ONLY, [(30, 9), (1, 4)], True),
        ("drop required: 2 then 4 is a rise", DROP_ONLY, [(30, 2), (1, 4)], False),
        ("drop required: first answer", DROP_ONLY, [(1, 4)], False),
        ("promoter turned detractor", FROM_PROMOTER, [(30, 9), (1, 5)], True),
        ("passive turned detractor is not a promoter", FROM_PROMOTER, [(30, 8), (1, 5)], False),
        ("an answer after the evaluation time is not seen yet", RULE, [(-1, 2)], False),
    ],
)
def test_table(name: str, rule: DetractorCondition, answers: list[tuple[float, int]], fires: bool) -> None:
    assert check(rule, customer(nps=answers)).fired is fires, name


def test_evidence_and_episode() -> None:
    signal = check(RULE, customer(nps=[(30, 9), (1, 3)]))
    assert signal.fired
    assert signal.evidence["score"] == 3
    assert signal.evidence["previous_score"] == 9
    assert signal.evidence["drop"] == 6
    # The same answer is the same episode however often it is evaluated.
    later_now = NOW + timedelta(days=2)
    later = check(RULE, customer(nps=[(30 + 2, 9), (1 + 2, 3)], now=later_now), later_now)
    assert later.fired and later.episode == signal.episode


def test_threshold_is_configurable() -> None:
    strict = DetractorCondition(kind="detractor", max_score=3)
    assert not check(strict, customer(nps=[(1, 4)])).fired
    assert check(strict, customer(nps=[(1, 3)])).fired
