"""The text report of a rule test run, and the entry point of ``churnwatch rules test``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from rules.base import Finding, Mode
from stream.ruletest.loader import find_test_files
from stream.ruletest.runner import FileResult, Missing, RuleTestResult, evidence_line, run_files, show

INDENT = "        "


def main(paths: Sequence[Path], echo: Callable[[str], None] = print) -> int:
    """Run the test files (or the ``*_test.yaml`` files of directories); report; 1 on any failure."""
    results: list[FileResult] = []
    files: list[Path] = []
    for path in paths:
        if not path.exists():
            results.append(FileResult(path, (f"{path}: no such file or directory",)))
        elif not (found := find_test_files(path)):
            results.append(FileResult(path, (f"{path}: no rule test files (*_test.yaml) in this directory",)))
        else:
            files += found
    results = run_files(files) + results
    for result in results:
        for line in format_file(result):
            echo(line)
    passed, failed = sum(r.passed for r in results), sum(r.failed for r in results)
    echo("")
    echo(summary(passed, failed))
    return 1 if failed else 0


def summary(passed: int, failed: int) -> str:
    return f"{passed} passed, {failed} failed"


def format_file(result: FileResult) -> Iterator[str]:
    if result.problems:
        yield f"{result.path}: ERROR, no test ran"
        for problem in result.problems:
            yield f"  {problem}"
        return
    yield str(result.path)
    for test in result.tests:
        yield from format_test(test)


def format_test(test: RuleTestResult) -> Iterator[str]:
    if test.passed:
        yield f"  PASS  {test.name}"
        return
    if test.problems:
        yield f"  ERROR {test.name}"
        for problem in test.problems:
            yield f"{INDENT}{problem}"
        return
    at = f" (evaluated at {test.evaluate_at.isoformat()})" if test.evaluate_at else ""
    yield f"  FAIL  {test.name}{at}"
    for missing in test.missing:
        yield from _missing(missing)
    for finding in test.unexpected:
        yield f"{INDENT}unexpected: {_alert(finding.rule_id, finding.customer_id, finding)}"
        yield from _fired(finding)
    for mismatch in test.mismatched:
        yield f"{INDENT}mismatch: {_alert(mismatch.finding.rule_id, mismatch.finding.customer_id, mismatch.finding)}"
        for difference in mismatch.differences:
            yield f"{INDENT}  {difference}"
        yield from _fired(mismatch.finding)
    for note in test.notes:
        yield f"{INDENT}note: {note}"


def _alert(rule_id: str, customer: str, finding: Finding | None = None, severity: str | None = None) -> str:
    labels = [str(finding.severity) if finding else severity]
    if finding and finding.mode is Mode.SHADOW:
        labels.append("shadow")
    shown = ", ".join(label for label in labels if label)
    return f"{rule_id} for customer {customer}" + (f" ({shown})" if shown else "")


def _fired(finding: Finding) -> Iterator[str]:
    yield f"{INDENT}  message: {finding.message}"
    yield f"{INDENT}  evidence: {evidence_line(finding.evidence)}"


def _missing(missing: Missing) -> Iterator[str]:
    x, seen = missing.expectation, missing.explanation
    yield f"{INDENT}missing: {_alert(x.rule, x.customer, severity=str(x.severity) if x.severity else None)}"
    if x.evidence:
        yield f"{INDENT}  expected evidence: {', '.join(f'{k}={show(v)}' for k, v in x.evidence.items())}"
    if not seen.in_scope:
        yield f"{INDENT}  not fired: the customer is outside the rule's scope"
        return
    verdict = seen.verdict
    assert verdict is not None  # in scope: the rule was checked
    yield f"{INDENT}  not fired" + (f": {verdict.note}" if verdict.note else "")
    if verdict.evidence:
        yield f"{INDENT}  evidence: {evidence_line(verdict.evidence)}"
