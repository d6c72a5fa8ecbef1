"""Running rule tests: fold each test's events in memory, evaluate the rules, compare with the expectations.

Each customer of a test is evaluated once, at the test's ``evaluate_at``, with every enabled rule of
the set (active and shadow alike), exactly as :func:`rules.evaluation.evaluate` does in the worker,
and with the disabled rules the file lists under ``enable``, as if switched on.
Cooldowns and episodes belong to the alert ledger, not to evaluation, so they play no part.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from rules.base import EvidenceValue, Finding
from rules.context import EvaluationContext
from rules.evaluation import Explanation, evaluate, explain_rule
from stream.ruletest.loader import (
    LoadedFile,
    LoadedRules,
    RuleTestProblem,
    events_of,
    load_rules,
    load_test_file,
    rule_paths,
    window_policy,
)
from stream.ruletest.schema import Expectation, RuleTest
from stream.windows.memory import MemoryWindows
from stream.windows.store import UpdateOutcome

REL_TOLERANCE = 1e-6
ABS_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Missing:
    expectation: Expectation
    explanation: Explanation
    """What the rule saw for the customer: out of scope, or its verdict (evidence and note)."""


@dataclass(frozen=True)
class Mismatch:
    expectation: Expectation
    finding: Finding
    differences: tuple[str, ...]


@dataclass(frozen=True)
class RuleTestResult:
    name: str
    evaluate_at: datetime | None = None
    problems: tuple[RuleTestProblem, ...] = ()
    missing: tuple[Missing, ...] = ()
    unexpected: tuple[Finding, ...] = ()
    mismatched: tuple[Mismatch, ...] = ()
    notes: tuple[str, ...] = ()
    """Events the windows did not count (late, redelivered): shown with a failure, as a hint."""

    @property
    def passed(self) -> bool:
        return not (self.problems or self.missing or self.unexpected or self.mismatched)


@dataclass(frozen=True)
class FileResult:
    path: Path
    problems: tuple[str, ...] = ()
    """The file could not be used at all (schema errors, invalid rules): no test ran."""
    tests: tuple[RuleTestResult, ...] = ()

    @property
    def passed(self) -> int:
        return sum(t.passed for t in self.tests)

    @property
    def failed(self) -> int:
        """Failed tests; a file that could not be used counts as one failure."""
        return sum(not t.passed for t in self.tests) + (1 if self.problems else 0)


@dataclass
class RuleCache:
    """Rule sets by their paths, so test files sharing rules load them once."""

    loaded: dict[tuple[Path, ...], LoadedRules] = field(default_factory=dict)

    def get(self, paths: tuple[Path, ...]) -> LoadedRules:
        if paths not in self.loaded:
            self.loaded[paths] = load_rules(paths)
        return self.loaded[paths]


def run_file(path: Path, cache: RuleCache | None = None) -> FileResult:
    loaded = load_test_file(path)
    if loaded.model is None:
        return FileResult(path, tuple(str(p) for p in loaded.problems))
    rules = (cache or RuleCache()).get(rule_paths(loaded))
    if rules.problems:
        return FileResult(path, ("invalid rules under test:", *rules.problems))
    rules, problems = with_enabled(loaded, rules)
    if problems:
        return FileResult(path, tuple(str(p) for p in problems))
    return FileResult(path, tests=tuple(run_test(loaded, i, t, rules) for i, t in enumerate(loaded.model.tests)))


def with_enabled(loaded: LoadedFile, rules: LoadedRules) -> tuple[LoadedRules, list[RuleTestProblem]]:
    """The rules with those the file lists under ``enable`` switched on (copies: the cache keeps the
    set as loaded). Each must be a rule of the set that is disabled: enabling an enabled rule is a
    mistake, or a leftover from when it was off."""
    assert loaded.model is not None
    problems = []
    for number, rule_id in enumerate(loaded.model.enable):
        rule = rules.by_id(rule_id)
        if rule is None:
            known = ", ".join(sorted(r.id for r in rules.rules if not r.enabled)) or "none"
            message = f"no rule '{rule_id}' in the rules under test (the disabled ones: {known})"
            problems.append(loaded.problem(["enable", number], message))
        elif rule.enabled:
            message = f"rule '{rule_id}' is enabled already: remove it from 'enable'"
            problems.append(loaded.problem(["enable", number], message))
    if problems or not loaded.model.enable:
        return rules, problems
    switched = set(loaded.model.enable)
    enabled = tuple(r.model_copy(update={"enabled": True}) if r.id in switched else r for r in rules.rules)
    return LoadedRules(enabled, rules.problems), []


def run_test(loaded: LoadedFile, index: int, test: RuleTest, rules: LoadedRules) -> RuleTestResult:
    assert loaded.model is not None
    evaluate_at = test.evaluate_at or loaded.model.evaluate_at
    if evaluate_at is None:
        message = "no evaluation time: give 'evaluate_at' in this test or at the top of the file"
        return RuleTestResult(test.name, problems=(loaded.problem(["tests", index, "evaluate_at"], message),))
    problems = _unknown_rules(loaded, index, test, rules)
    events, event_problems = events_of(loaded, index, test, evaluate_at)
    problems += event_problems
    if problems:
        problems.sort(key=lambda p: p.line or 0)
        return RuleTestResult(test.name, evaluate_at, problems=tuple(problems))

    policy = window_policy(loaded.model)
    windows = MemoryWindows(policy)
    dropped: Counter[tuple[str, UpdateOutcome]] = Counter()
    for event in events:
        outcome = windows.apply(event).outcome
        if outcome is not UpdateOutcome.OK:
            dropped[(event.customer_id, outcome)] += 1

    enabled = [r for r in rules.rules if r.enabled]
    expected = {(x.rule, x.customer): x for x in test.expect}
    got: dict[tuple[str, str], Finding] = {}
    contexts: dict[str, EvaluationContext] = {}
    for customer in test.customers:
        state = windows.read(customer)
        contexts[customer] = EvaluationContext(state, evaluate_at)
        for finding in evaluate(enabled, state, evaluate_at):
            got[(finding.rule_id, finding.customer_id)] = finding

    missing, mismatched = [], []
    for key, expectation in expected.items():
        if key not in got:
            rule = rules.by_id(expectation.rule)
            assert rule is not None  # unknown rules are problems, above
            missing.append(Missing(expectation, explain_rule(rule, contexts[expectation.customer])))
        elif differences := compare(expectation, got[key]):
            mismatched.append(Mismatch(expectation, got[key], tuple(differences)))
    unexpected = tuple(f for key, f in got.items() if key not in expected)
    notes = tuple(_note(customer, outcome, n, policy.retention.days) for (customer, outcome), n in dropped.items())
    return RuleTestResult(test.name, evaluate_at, (), tuple(missing), unexpected, tuple(mismatched), notes)


def _unknown_rules(loaded: LoadedFile, index: int, test: RuleTest, rules: LoadedRules) -> list[RuleTestProblem]:
    problems = []
    for number, expectation in enumerate(test.expect):
        rule = rules.by_id(expectation.rule)
        loc: list[int | str] = ["tests", index, "expect", number, "rule"]
        if rule is None:
            known = ", ".join(sorted(r.id for r in rules.rules)) or "none"
            problems.append(loaded.problem(loc, f"no rule '{expectation.rule}' in the rules under test ({known})"))
        elif not rule.enabled:
            message = (
                f"rule '{expectation.rule}' is disabled (enabled: false): it never fires "
                "(list it under 'enable' at the top of the file to test it as if switched on)"
            )
            problems.append(loaded.problem(loc, message))
    return problems


def _note(customer: str, outcome: UpdateOutcome, count: int, horizon_days: int) -> str:
    events = "1 event" if count == 1 else f"{count} events"
    if outcome is UpdateOutcome.LATE:
        return (
            f"{events} of {customer} dropped as late: more than {horizon_days} days older than the customer's "
            "newest event at the time it arrived (events arrive in the order they are listed)"
        )
    return f"{events} of {customer} counted once: an event id given again is a redelivery"


# -- comparing one expected alert with the one that fired ------------------------------------------


def compare(expectation: Expectation, finding: Finding) -> list[str]:
    differences = []
    if expectation.severity is not None and expectation.severity != finding.severity:
        differences.append(f"severity: expected {expectation.severity}, got {finding.severity}")
    for name, want in expectation.evidence.items():
        if name not in finding.evidence:
            has = ", ".join(finding.evidence) or "none"
            differences.append(f"evidence.{name}: expected {show(want)}, but the alert has no such evidence ({has})")
        elif not same(want, finding.evidence[name]):
            differences.append(f"evidence.{name}: expected {show(want)}, got {show(finding.evidence[name])}")
    if expectation.message_contains is not None and expectation.message_contains not in finding.message:
        wanted = show(expectation.message_contains)
        differences.append(f"message: expected to contain {wanted}, got {show(finding.message)}")
    return differences


def same(want: Any, got: EvidenceValue) -> bool:
    """Evidence equality as a test author means it: numbers within a small tolerance, times as instants."""
    if isinstance(want, bool) or isinstance(got, bool):
        return want is got
    if isinstance(want, int | float) and isinstance(got, int | float):
        if math.isnan(want) or math.isnan(got):
            return math.isnan(want) and math.isnan(got)
        return math.isclose(want, got, rel_tol=REL_TOLERANCE, abs_tol=ABS_TOLERANCE)
    if isinstance(want, datetime) and isinstance(got, str):  # YAML reads an unquoted ISO time as a datetime
        try:
            return want == datetime.fromisoformat(got)
        except ValueError:
            return False
    return bool(want == got)


def show(value: Any) -> str:
    """A value as it would be written in YAML, so expected and got read alike."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def evidence_line(evidence: Mapping[str, EvidenceValue]) -> str:
    return ", ".join(f"{k}={show(v)}" for k, v in evidence.items()) or "(none)"


def run_files(paths: Sequence[Path]) -> list[FileResult]:
    cache = RuleCache()
    return [run_file(path, cache) for path in paths]
