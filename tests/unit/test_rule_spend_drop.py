from pathlib import Path

import pytest
from pydantic import ValidationError

from rules.evaluation import evaluate_rule
from rules.kinds.spend_drop import SpendDropCondition
from rules.ruleset import load_rule_set
from tests.unit.state_builder import NOW, check, customer, weekly

DEFAULTS = Path(__file__).resolve().parents[2] / "rules" / "defaults"

COMMON = {"recent_days": 30, "baseline_days": 90, "max_ratio": 0.5, "min_baseline_orders": 3, "min_history_days": 30}
TOTAL = SpendDropCondition(kind="spend_drop", measure="total", min_baseline_spend=100.0, **COMMON)
AOV = SpendDropCondition(kind="spend_drop", measure="average_order_value", **COMMON)
STILL_BUYING = SpendDropCondition(kind="spend_drop", min_recent_orders=1, **COMMON)

WEEKLY = weekly(119, 0)  # 13 orders in the baseline window (30-119 days ago), 5 in the last 30 days


def baskets(days: list[float], before: float, lately: float) -> list[float]:
    """Order amounts: ``before`` for orders 30 or more days ago, ``lately`` for the last 30 days."""
    return [before if d >= 30 else lately for d in days]


@pytest.mark.parametrize(
    ("name", "rule", "purchases", "amounts", "fires"),
    [
        ("total: steady weekly baskets", TOTAL, WEEKLY, baskets(WEEKLY, 50, 50), False),
        ("total: same orders, baskets a fifth of the usual", TOTAL, WEEKLY, baskets(WEEKLY, 50, 10), True),
        ("total: baskets down by a third is not half", TOTAL, WEEKLY, baskets(WEEKLY, 50, 35), False),
        ("total: stopped buying altogether", TOTAL, weekly(119, 35), [50.0] * 13, True),
        ("total, min_recent_orders 1: stopping is frequency's job", STILL_BUYING, weekly(119, 35), [50.0] * 13, False),
        ("total, min_recent_orders 1: still buying, less", STILL_BUYING, WEEKLY, baskets(WEEKLY, 50, 10), True),
        ("total: small spender below min_baseline_spend", TOTAL, WEEKLY, baskets(WEEKLY, 5, 1), False),
        ("total: new customer has no baseline history", TOTAL, [5.0, 3.0], [500.0, 500.0], False),
        ("total: too few baseline orders", TOTAL, [100.0, 70.0], [500.0, 500.0], False),
        ("total: no purchases at all", TOTAL, [], [], False),
        ("aov: same orders, smaller baskets", AOV, WEEKLY, baskets(WEEKLY, 50, 10), True),
        ("aov: fewer orders, same basket", AOV, [*weekly(119, 35), 10.0], [50.0] * 14, False),
        ("aov: fewer but bigger baskets", AOV, [*weekly(119, 35), 10.0], [*[50.0] * 13, 200.0], False),
        ("aov: exactly half the usual basket", AOV, WEEKLY, baskets(WEEKLY, 50, 25), True),
        ("aov: no recent order is not an order-value question", AOV, weekly(119, 35), [50.0] * 13, False),
    ],
)
def test_table(name: str, rule: SpendDropCondition, purchases: list[float], amounts: list[float], fires: bool) -> None:
    assert check(rule, customer(purchases, amounts=amounts)).fired is fires, name


def test_total_evidence_names_the_numbers() -> None:
    verdict = check(TOTAL, customer(WEEKLY, amounts=baskets(WEEKLY, 50, 10)))
    assert verdict.fired
    assert dict(verdict.evidence) == {
        "measure": "total",
        "recent_spend": 50.0,
        "expected_spend": pytest.approx(216.67),
        "baseline_spend": 650.0,
        "recent_days": 30,
        "baseline_days": 90,
        "recent_orders": 5,
        "baseline_orders": 13,
        "recent_aov": 10.0,
        "baseline_aov": 50.0,
        "ratio": pytest.approx(0.231),
    }
    assert set(verdict.evidence) == set(TOTAL.evidence_names())


def test_aov_ratio_compares_spend_per_order() -> None:
    # Two orders lately (one a fortnight), each 20 against a usual 50: 0.4 of the usual basket.
    purchases = [*weekly(119, 35), 20.0, 6.0]
    verdict = check(AOV, customer(purchases, amounts=[*[50.0] * 13, 20.0, 20.0]))
    assert verdict.fired
    ev = verdict.evidence
    assert (ev["recent_aov"], ev["baseline_aov"], ev["recent_orders"], ev["baseline_orders"]) == (20.0, 50.0, 2, 13)
    assert ev["ratio"] == pytest.approx(0.4)


def test_aov_without_recent_orders_says_why() -> None:
    verdict = check(AOV, customer(weekly(119, 35), amounts=[50.0] * 13))
    assert not verdict.fired
    assert verdict.note == "no order in the last 30 days: purchase_frequency_drop judges absence"
    assert verdict.evidence["recent_aov"] is None


def test_short_history_is_not_judged() -> None:
    verdict = check(TOTAL, customer([50.0, 45.0, 40.0, 35.0, 32.0], amounts=[100.0] * 5))
    assert not verdict.fired and verdict.note == "less than 30 days of purchase history"


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("min history longer than baseline", {"baseline_days": 20, "min_history_days": 30}, "min_history_days"),
        ("unknown measure", {"measure": "median"}, "measure"),
        ("ratio above 1", {"max_ratio": 1.5}, "max_ratio"),
        ("negative min spend", {"min_baseline_spend": -1}, "min_baseline_spend"),
        ("typo in a parameter", {"max_ration": 0.5}, "max_ration"),
    ],
)
def test_config_errors(name: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SpendDropCondition.model_validate({"kind": "spend_drop", **params})


def test_shipped_rule_fires_on_smaller_baskets_and_renders() -> None:
    rule = load_rule_set(DEFAULTS).by_id("spend-drop")
    assert rule is not None
    assert evaluate_rule(rule, customer(WEEKLY, amounts=baskets(WEEKLY, 50, 50)), NOW) is None
    finding = evaluate_rule(rule, customer(WEEKLY, amounts=baskets(WEEKLY, 50, 10)), NOW)
    assert finding is not None
    assert finding.message == (
        "Average order 10.0 over 5 orders in the last 30 days, against a usual 50.0 (13 orders in the 90 days before)."
    )
