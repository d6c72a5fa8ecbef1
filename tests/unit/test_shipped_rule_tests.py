"""The shipped rules have unit tests, and they pass: every ``rules/defaults/tests/*_test.yaml`` runs
through the rule test runner, and every enabled rule in ``rules/defaults`` is expected to fire in at
least one of them (a disabled rule never fires, so it cannot be; it needs tests once switched on)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.ruleset import load_rule_set
from stream.ruletest.loader import find_test_files, load_test_file
from stream.ruletest.report import format_file
from stream.ruletest.runner import run_file

DEFAULTS = Path(__file__).resolve().parents[2] / "rules" / "defaults"
TEST_FILES = find_test_files(DEFAULTS / "tests")


def test_there_are_shipped_rule_tests() -> None:
    assert TEST_FILES, f"no *_test.yaml in {DEFAULTS / 'tests'}"


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_shipped_rule_tests_pass(path: Path) -> None:
    result = run_file(path)
    assert result.failed == 0, "\n".join(format_file(result))
    assert result.passed > 0


def test_every_shipped_rule_is_expected_to_fire_in_a_test() -> None:
    rule_set = load_rule_set(DEFAULTS)
    expected: set[str] = set()
    for path in TEST_FILES:
        loaded = load_test_file(path)
        assert loaded.model is not None, "\n".join(str(p) for p in loaded.problems)
        expected |= {x.rule for test in loaded.model.tests for x in test.expect}
    untested = sorted(r.id for r in rule_set.enabled if r.id not in expected)
    assert not untested, (
        f"rules in {DEFAULTS} without a unit test that expects them to fire: {', '.join(untested)} "
        f"(add a test to {DEFAULTS / 'tests'}/<file>_test.yaml; run: churnwatch rules test {DEFAULTS / 'tests'})"
    )


def test_the_rule_set_does_not_read_the_tests_directory() -> None:
    """``load_rule_set(dir)`` reads only the directory's own *.yaml files, never tests/ below it."""
    sources = load_rule_set(DEFAULTS).sources
    assert sources and all(Path(s).parent == DEFAULTS for s in sources)
