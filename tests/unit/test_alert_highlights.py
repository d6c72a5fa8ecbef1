"""The 'what changed' lines and 'since when' read from each rule kind's evidence, by name."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alerts.highlights import number, since, what_changed
from rules.base import Condition, EvidenceValue
from rules.kinds.detractor import DetractorCondition
from rules.kinds.health_score import HealthScoreCondition
from rules.kinds.inactivity import InactivityCondition
from rules.kinds.interaction_drop import InteractionDropCondition
from rules.kinds.low_score import LowScoreCondition
from rules.kinds.overdue import OverdueCondition
from rules.kinds.purchase_frequency_drop import PurchaseFrequencyDropCondition
from rules.kinds.purchase_model import PurchaseModelCondition
from rules.kinds.spend_drop import SpendDropCondition
from rules.kinds.spike import SpikeCondition

NOW = datetime(2026, 4, 1, 9, 30, tzinfo=UTC)

# Evidence as each kind's check() builds it (the names are checked against evidence_fields below).
CASES: list[tuple[type[Condition], dict[str, EvidenceValue], list[str], str | None]] = [
    (
        PurchaseFrequencyDropCondition,
        {"recent_purchases": 1, "recent_days": 30, "baseline_purchases": 13, "baseline_days": 90,
         "expected_purchases": 4.33, "ratio": 0.231},
        ["purchases 30d: 1 vs 4.3 usual (23% of usual)"],
        "2026-03-02 (the last 30 days)",
    ),
    (
        InteractionDropCondition,
        {"interaction_kinds": "login/session", "recent_interactions": 3, "recent_days": 30,
         "baseline_interactions": 60, "baseline_days": 90, "expected_interactions": 20.0, "ratio": 0.15},
        ["login/session 30d: 3 vs 20 usual (15% of usual)"],
        "2026-03-02 (the last 30 days)",
    ),
    (
        SpendDropCondition,
        {"measure": "average_order_value", "recent_spend": 24.6, "expected_spend": 93.0, "baseline_spend": 279.0,
         "recent_days": 30, "baseline_days": 90, "recent_orders": 3, "baseline_orders": 9, "recent_aov": 8.2,
         "baseline_aov": 31.0, "ratio": 0.265},
        ["average order 30d: 8.20 vs 31.00 usual (26% of usual)", "spend 30d: 24.60 vs 93.00 usual"],
        "2026-03-02 (the last 30 days)",
    ),
    (
        SpikeCondition,
        {"interaction_kinds": "support_ticket/complaint", "count": 4, "window_days": 7, "expected": 0.31,
         "baseline_days": 90, "multiplier": 3.0},
        ["support_ticket/complaint 7d: 4 vs 0.31 usual"],
        "2026-03-25 (the last 7 days)",
    ),
    (
        DetractorCondition,
        {"score": 3, "previous_score": 9, "answered_at": "2026-03-30T12:00:00+00:00", "drop": 6},
        ["NPS 3 (previous answer 9)"],
        "2026-03-30 (answered, 2 days ago)",
    ),
    (
        LowScoreCondition,
        {"survey": "csat", "value": 1.67, "answers_considered": 3, "latest_score": 1,
         "answered_at": "2026-03-31T08:00:00+00:00", "threshold": 2},
        ["CSAT 1.7 over the last 3 answers (threshold 2)"],
        "2026-03-31 (answered, 1 day ago)",
    ),
    (
        HealthScoreCondition,
        {"score": 38.5, "previous_score": 72.0, "drop": 33.5, "band": "critical", "previous_band": "healthy",
         "movers": "recency -12.0, nps -10.5", "missing": "", "weight_present": 0.85, "lookback": "7d",
         "signal_nps": 0.2},
        ["health score 38.5 (critical), was 72 (healthy) 7d ago", "moved by: recency -12.0, nps -10.5"],
        "2026-03-25 (the last 7 days)",
    ),
    (
        InactivityCondition,
        {"last_activity_at": "2026-01-28T10:00:00+00:00", "days_silent": 62.98, "silent_for_days": 60.0,
         "lifetime_purchases": 5},
        ["silent 63.0 days (the rule allows 60)"],
        "2026-01-28 (last activity, 63 days ago)",
    ),
    (
        OverdueCondition,
        {"days_since_last_purchase": 63.0, "typical_gap_days": 9.0, "threshold_days": 30.0, "purchase_days": 14,
         "last_purchase_at": "2026-01-28T10:00:00+00:00"},
        ["silent 63 days (usual gap 9 days; alerted after 30)"],
        "2026-01-28 (last purchase, 63 days ago)",
    ),
    (
        PurchaseModelCondition,
        {"p_alive": 0.12, "p_no_purchase": 0.8213, "horizon_days": 30.0, "repeat_purchases": 6,
         "days_since_last_purchase": 41.5, "customer_age_days": 200.0},
        ["82% chance of no purchase in the next 30 days", "silent 41.5 days"],
        "2026-02-18 (last purchase, 42 days ago)",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "evidence", "lines", "started"), CASES, ids=[c[0].__name__ for c in CASES])
def test_each_kind_reads_as_numbers_against_the_customers_own_baseline(
    kind: type[Condition], evidence: dict[str, EvidenceValue], lines: list[str], started: str | None
) -> None:
    assert set(evidence) <= set(kind.evidence_fields), "the case must use the names the kind really writes"
    shown, used = what_changed(evidence)
    assert shown == lines
    assert since(evidence, NOW)[0] == started
    assert used <= set(evidence) | {"interaction_kinds", "baseline_purchases", "baseline_interactions"}


def test_every_leaf_kind_with_evidence_has_a_case() -> None:
    from rules.registry import LEAF_KINDS

    assert {k for k in LEAF_KINDS if k.evidence_fields} == {c[0] for c in CASES}


def test_a_name_one_line_showed_is_not_shown_again_and_the_rest_is_left_to_the_details() -> None:
    evidence: dict[str, EvidenceValue] = {"days_since_last_purchase": 20.0, "typical_gap_days": 3.0, "zz": 1}
    shown, used = what_changed(evidence)
    assert shown == ["silent 20 days (usual gap 3 days; alerted after ?)"]  # not "silent 20 days" again
    assert "zz" not in used


def test_unknown_evidence_gives_no_line_and_no_since() -> None:
    assert what_changed({"purchases_30d": 1, "segment": "smb"}) == ([], set())
    assert since({"answered_at": "not a time", "recent_days": None}, NOW) == (None, set())


@pytest.mark.parametrize(
    ("value", "text"), [(4.2, "4.2"), (4.0, "4"), (0.333, "0.33"), (14.54, "14.5"), (1234.5, "1,234"), (7, "7")]
)
def test_number(value: float, text: str) -> None:
    assert number(value) == text
