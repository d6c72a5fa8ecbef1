"""One customer's or one rule's failure stays theirs: the pure parts of the worker's isolation."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from rules.base import RuleBase
from rules.evaluation import evaluate
from rules.ruleset import load_rule_set
from stream.metrics import Metrics
from stream.quarantine import Quarantine
from stream.windows.memory_store import MemoryQuarantineLedger
from tests.unit.state_builder import NOW, customer, weekly

DEFAULTS = Path(__file__).resolve().parents[2] / "rules" / "defaults"


class Broken:
    """Stands for a rule whose evaluation raises (a bug, or an aggregate it cannot compute)."""

    def __init__(self, rule: RuleBase) -> None:
        self._rule = rule

    def __getattr__(self, name: str) -> object:
        return getattr(self._rule, name)

    def check(self, ctx: object) -> object:
        raise ZeroDivisionError("boom")


def fading_rules() -> list[RuleBase]:
    """Two shipped rules that fire for a weekly buyer gone quiet who answered NPS 3. The frequency rule
    ships disabled (below chance on real baskets): switched on here, as the example it is."""
    rule_set = load_rule_set(DEFAULTS)
    rules = [rule_set.by_id(rule_id) for rule_id in ("purchase-frequency-drop", "nps-detractor")]
    return [rule.model_copy(update={"enabled": True}) for rule in rules if rule is not None]


def test_a_rule_that_raises_is_reported_and_the_others_still_fire() -> None:
    drop, detractor = sorted(fading_rules(), key=lambda r: r.id)[::-1]
    state = customer(weekly(119, 40), nps=[(0, 3)])
    failures: list[tuple[str, str]] = []

    findings = evaluate(
        [Broken(detractor), drop],  # type: ignore[list-item]
        state,
        NOW,
        on_rule_error=lambda rule, exc: failures.append((rule.id, str(exc))),
    )

    assert [f.rule_id for f in findings] == ["purchase-frequency-drop"]
    assert failures == [("nps-detractor", "boom")]


def test_without_a_handler_the_error_propagates() -> None:
    (rule, *_) = fading_rules()
    with pytest.raises(ZeroDivisionError):
        evaluate([Broken(rule)], customer(weekly(119, 40)), NOW)  # type: ignore[list-item]


async def test_quarantine_after_consecutive_failures_and_release() -> None:
    ledger, metrics = MemoryQuarantineLedger(), Metrics(CollectorRegistry())
    quarantine = Quarantine(ledger, metrics, max_failures=3)
    error = ValueError("year 0 is out of range")

    assert not await quarantine.failed("c1", "deferred", error)
    quarantine.succeeded("c1")  # a success in between starts the count again
    assert not await quarantine.failed("c1", "deferred", error)
    assert not await quarantine.failed("c1", "deferred", error)
    assert not quarantine.holds("c1")
    assert await quarantine.failed("c1", "deferred", error)

    assert quarantine.holds("c1")
    [entry] = await ledger.entries()
    assert entry.error == "ValueError: year 0 is out of range"
    assert metrics.registry.get_sample_value("churnwatch_evaluation_errors_total", {"stage": "deferred"}) == 4
    assert metrics.registry.get_sample_value("churnwatch_quarantined_customers") == 1

    await ledger.release("c1")
    await quarantine.refresh()
    assert not quarantine.holds("c1")
    assert metrics.registry.get_sample_value("churnwatch_quarantined_customers") == 0
