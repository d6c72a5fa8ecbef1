from datetime import timedelta

import pytest

from rules.kinds.detractor import DetractorRule
from tests.unit.state_builder import NOW, customer

RULE = DetractorRule(id="d", kind="detractor", message="m")
DROP_ONLY = DetractorRule(id="d2", kind="detractor", message="m", require_drop=True)


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
    ],
)
def test_table(name: str, rule: DetractorRule, answers: list[tuple[float, int]], fires: bool) -> None:
    assert (rule.check(customer(nps=answers), NOW) is not None) is fires, name


def test_evidence_and_episode() -> None:
    signal = RULE.check(customer(nps=[(30, 9), (1, 3)]), NOW)
    assert signal is not None
    assert signal.evidence["score"] == 3
    assert signal.evidence["previous_score"] == 9
    assert signal.evidence["drop"] == 6
    # The same answer is the same episode however often it is evaluated.
    later = RULE.check(customer(nps=[(30 + 2, 9), (1 + 2, 3)], now=NOW + timedelta(days=2)), NOW + timedelta(days=2))
    assert later is not None and later.episode == signal.episode


def test_threshold_is_configurable() -> None:
    strict = DetractorRule(id="d", kind="detractor", message="m", max_score=3)
    assert strict.check(customer(nps=[(1, 4)]), NOW) is None
    assert strict.check(customer(nps=[(1, 3)]), NOW) is not None
