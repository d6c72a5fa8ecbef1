import pytest

from rules.kinds.purchase_frequency_drop import PurchaseFrequencyDropCondition
from tests.unit.state_builder import check, customer, weekly

RULE = PurchaseFrequencyDropCondition(
    kind="purchase_frequency_drop",
    recent_days=30,
    baseline_days=90,
    max_ratio=0.5,
    min_baseline_purchases=4,
    min_history_days=30,
)


@pytest.mark.parametrize(
    ("name", "purchases", "fires"),
    [
        ("weekly buyer keeps buying", weekly(119, 0), False),
        ("weekly buyer stopped 40 days ago", weekly(119, 40), True),
        ("weekly buyer, one purchase in the last 30 days", [*weekly(119, 40), 10.0], True),
        (
            "weekly buyer, two in the last 30 days: 2 of 4 expected is exactly half",
            [*weekly(119, 40), 10.0, 20.0],
            True,
        ),
        ("weekly buyer, three in the last 30 days", [*weekly(119, 40), 5.0, 12.0, 20.0], False),
        ("monthly buyer with a steady rhythm", [115.0, 85.0, 55.0, 25.0], False),
        ("new customer: no baseline history", [5.0, 3.0], False),
        ("too few baseline purchases", [100.0, 70.0, 45.0], False),
        ("no purchases at all", [], False),
    ],
)
def test_table(name: str, purchases: list[float], fires: bool) -> None:
    assert check(RULE, customer(purchases)).fired is fires, name


def test_evidence_names_the_numbers() -> None:
    verdict = check(RULE, customer([*weekly(119, 40), 10.0]))
    assert verdict.fired
    ev = verdict.evidence
    assert ev["recent_purchases"] == 1
    assert ev["recent_days"] == 30
    assert ev["baseline_days"] == 90
    assert ev["baseline_purchases"] == 12
    assert ev["expected_purchases"] == pytest.approx(4.0)
    assert ev["ratio"] == pytest.approx(0.25)


def test_baseline_is_clipped_to_the_customers_history() -> None:
    # Joined 65 days ago, bought weekly until 35 days ago: the 35 covered baseline days hold 5
    # purchases, so the expectation is 5 * 30/35 (~4.3), not 5 * 30/90.
    verdict = check(RULE, customer(weekly(65, 35)))
    assert verdict.fired
    assert verdict.evidence["baseline_days"] == 36
    assert verdict.evidence["expected_purchases"] == pytest.approx(5 * 30 / 36, abs=0.01)


def test_short_history_is_not_judged() -> None:
    # Only 20 days of baseline history: below min_history_days.
    verdict = check(RULE, customer([50.0, 45.0, 40.0, 35.0, 32.0]))
    assert not verdict.fired and verdict.note == "less than 30 days of purchase history"


def test_min_history_longer_than_baseline_is_rejected() -> None:
    with pytest.raises(ValueError, match="min_history_days"):
        PurchaseFrequencyDropCondition(kind="purchase_frequency_drop", baseline_days=20, min_history_days=30)
