from pathlib import Path

from prometheus_client import CollectorRegistry

from rules.ruleset import load_rule_set
from stream.metrics import Metrics
from stream.rules_reload import ActiveRules, ReloadOutcome, RuleReloader

RULE = """
rules:
  - id: {rule_id}
    kind: detractor
    message: "NPS {{{{ score }}}}"
"""


def setup(tmp_path: Path) -> tuple[RuleReloader, ActiveRules, Metrics]:
    (tmp_path / "a.yaml").write_text(RULE.format(rule_id="first"))
    metrics = Metrics(CollectorRegistry())
    active = ActiveRules(load_rule_set(tmp_path), metrics)
    return RuleReloader(tmp_path, active, metrics), active, metrics


def reloads(metrics: Metrics, outcome: str) -> float:
    return metrics.registry.get_sample_value("churnwatch_rules_reload_total", {"outcome": outcome}) or 0.0


def test_valid_change_is_swapped_in(tmp_path: Path) -> None:
    reloader, active, metrics = setup(tmp_path)
    old = active().version
    (tmp_path / "b.yaml").write_text(RULE.format(rule_id="second"))
    assert reloader.reload() is ReloadOutcome.APPLIED
    assert {r.id for r in active().rules} == {"first", "second"}
    assert metrics.registry.get_sample_value("churnwatch_rule_set_info", {"version": active().version}) == 1
    assert metrics.registry.get_sample_value("churnwatch_rule_set_info", {"version": old}) is None
    assert metrics.registry.get_sample_value("churnwatch_rules_loaded") == 2


def test_invalid_change_is_rejected_and_the_old_set_stays(tmp_path: Path) -> None:
    reloader, active, metrics = setup(tmp_path)
    before = active()
    (tmp_path / "b.yaml").write_text(RULE.format(rule_id="second").replace("kind:", "knd:"))
    assert reloader.reload() is ReloadOutcome.INVALID
    assert active() is before
    assert reloads(metrics, "invalid") == 1


def test_deleted_rule_disappears_but_an_empty_directory_is_a_mistake(tmp_path: Path) -> None:
    reloader, active, _ = setup(tmp_path)
    (tmp_path / "b.yaml").write_text(RULE.format(rule_id="second"))
    reloader.reload()
    (tmp_path / "a.yaml").unlink()
    assert reloader.reload() is ReloadOutcome.APPLIED
    assert [r.id for r in active().rules] == ["second"]
    (tmp_path / "b.yaml").unlink()
    assert reloader.reload() is ReloadOutcome.INVALID
    assert [r.id for r in active().rules] == ["second"]


def test_unchanged_files_do_not_swap(tmp_path: Path) -> None:
    reloader, active, metrics = setup(tmp_path)
    before = active()
    assert reloader.reload() is ReloadOutcome.UNCHANGED
    assert active() is before and reloads(metrics, "unchanged") == 1
