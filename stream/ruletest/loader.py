"""Reading rule test files: YAML to validated models, rule sets, and the events each test sends.

Every problem names the file, the line, the test and the field (``RuleProblem``'s style), so a typo in
a test file is as clear as a typo in a rule file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rules.base import RuleBase
from rules.ruleset import RuleConfigError, RuleProblem, load_rule_set
from stream.events import EventBase, FeedbackEvent, InteractionEvent, PurchaseEvent
from stream.ruletest.schema import EventEntry, RuleTest, RuleTestFile
from stream.settings import Settings
from stream.windows.store import WindowPolicy

TEST_FILE_SUFFIXES = ("_test.yaml", "_test.yml")
_SPEC_NAMES = {"occurred_at": "at", "customer_id": "customer", "event_id": "id"}


@dataclass(frozen=True)
class RuleTestProblem:
    file: str
    line: int | None
    test: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.test:
            where += f": test '{self.test}'"
        if self.field:
            where += f": field '{self.field}'"
        return f"{where}: {self.message}"


class Lines:
    """Line numbers of the values in a YAML document, looked up by a pydantic error location."""

    def __init__(self, text: str) -> None:
        try:
            self._root: yaml.Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            self._root = None

    def of(self, loc: Sequence[int | str]) -> int | None:
        node = self._root
        if node is None:
            return None
        line = node.start_mark.line + 1
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                found = next(((k, v) for k, v in node.value if k.value == str(part)), None)
                if found is None:
                    return line
                line, node = found[0].start_mark.line + 1, found[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line


@dataclass(frozen=True)
class LoadedFile:
    path: Path
    model: RuleTestFile | None
    problems: tuple[RuleTestProblem, ...]
    lines: Lines

    def problem(self, loc: Sequence[int | str], message: str) -> RuleTestProblem:
        """A problem at ``loc`` (a location inside the file's document, e.g. ``("tests", 0, "events", 2)``)."""
        test, field = _describe(loc, self.model)
        return RuleTestProblem(str(self.path), self.lines.of(loc), test, field, message)


def _describe(loc: Sequence[int | str], model: RuleTestFile | None, raw: Any = None) -> tuple[str | None, str | None]:
    """(test name, field path) for a location; list positions are shown counting from 1."""
    parts = list(loc)
    test = None
    if len(parts) >= 2 and parts[0] == "tests" and isinstance(parts[1], int):
        index = parts[1]
        name = None
        if model is not None and index < len(model.tests):
            name = model.tests[index].name
        elif isinstance(raw, dict) and isinstance(raw.get("tests"), list) and index < len(raw["tests"]):
            item = raw["tests"][index]
            name = item.get("name") if isinstance(item, dict) else None
        test = str(name) if name else f"#{index + 1}"
        parts = parts[2:]
    field = ""
    for part in parts:
        field += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    return test, field or None


def find_test_files(path: Path) -> list[Path]:
    """A file as given, or the ``*_test.yaml`` files directly in a directory."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(TEST_FILE_SUFFIXES))
    return [path]


def load_test_file(path: Path) -> LoadedFile:
    try:
        text = path.read_text()
    except OSError as exc:
        problem = RuleTestProblem(str(path), None, None, None, exc.strerror or str(exc))
        return LoadedFile(path, None, (problem,), Lines(""))
    lines = Lines(text)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = RuleTestProblem(str(path), None, None, None, f"not valid YAML: {exc}")
        return LoadedFile(path, None, (problem,), lines)
    if not isinstance(raw, dict):
        problem = RuleTestProblem(str(path), None, None, None, "expected a mapping with a 'tests:' list at the top")
        return LoadedFile(path, None, (problem,), lines)
    try:
        return LoadedFile(path, RuleTestFile.model_validate(raw), (), lines)
    except ValidationError as exc:
        return LoadedFile(path, None, tuple(_problems_from(path, raw, lines, exc)), lines)


def _problems_from(path: Path, raw: dict[str, Any], lines: Lines, exc: ValidationError) -> Iterator[RuleTestProblem]:
    for error in exc.errors():
        loc = list(error["loc"])
        test, field = _describe(loc, None, raw)
        yield RuleTestProblem(str(path), lines.of(loc), test, field, _message(error))


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field (misspelt?)"
    if error["type"] == "missing":
        return "required field is missing"
    message = str(error["msg"])
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


# -- the rules under test -------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedRules:
    rules: tuple[RuleBase, ...]
    problems: tuple[str, ...]
    """Each problem with its rule file, rule and field (from :class:`rules.ruleset.RuleProblem`)."""

    def by_id(self, rule_id: str) -> RuleBase | None:
        return next((r for r in self.rules if r.id == rule_id), None)


def load_rules(paths: Sequence[Path]) -> LoadedRules:
    """Load one or more rule files/directories as one set (``load_rule_set`` each, ids unique across)."""
    rules: list[RuleBase] = []
    problems: list[RuleProblem] = []
    origin: dict[str, str] = {}
    for path in paths:
        try:
            loaded = load_rule_set(path)
        except RuleConfigError as exc:
            problems += exc.problems
            continue
        for rule in loaded.rules:
            if rule.id in origin:
                message = f"duplicate rule id (also defined in {origin[rule.id]})"
                problems.append(RuleProblem(str(path), rule.id, "id", message))
                continue
            origin[rule.id] = str(path)
            rules.append(rule)
    return LoadedRules(tuple(rules), tuple(str(p) for p in problems))


def rule_paths(loaded: LoadedFile) -> tuple[Path, ...]:
    assert loaded.model is not None
    base = loaded.path.parent
    return tuple((base / p).resolve() if not Path(p).is_absolute() else Path(p) for p in loaded.model.rule_files)


# -- events ---------------------------------------------------------------------------------------


def window_policy(model: RuleTestFile) -> WindowPolicy:
    """The file's window settings; the expiries are wall-clock matters the in-memory fold does not model."""
    defaults = Settings.model_fields
    return WindowPolicy(
        retention=model.window.retention,
        dedupe_ttl=defaults["dedupe_ttl"].default,
        idle_ttl=defaults["idle_ttl"].default,
        feedback_history=model.window.feedback_history,
        dedupe_ids=defaults["dedupe_ids"].default,
    )


def events_of(
    loaded: LoadedFile, index: int, test: RuleTest, evaluate_at: datetime
) -> tuple[list[EventBase], list[RuleTestProblem]]:
    """The events of test ``index`` in arrival order (the file's order, repetitions in time order)."""
    events: list[EventBase] = []
    problems: list[RuleTestProblem] = []
    for number, entry in enumerate(test.events):
        loc: list[int | str] = ["tests", index, "events", number]
        try:
            times = entry.spec.times(evaluate_at)
        except ValueError as exc:
            problems.append(loaded.problem([*loc, entry.kind], str(exc)))
            continue
        if after := [t for t in times if t > evaluate_at]:
            problems.append(
                loaded.problem(
                    [*loc, entry.kind],
                    f"{entry.kind} at {after[0].isoformat()} is after evaluate_at ({evaluate_at.isoformat()}); "
                    "rules are never evaluated before a customer's newest event",
                )
            )
            continue
        for repetition, moment in enumerate(times):
            event_id = entry.id or f"t{index + 1}-e{number + 1}-{repetition + 1}"
            try:
                events.append(_event(entry, event_id, moment))
            except ValidationError as exc:
                for error in exc.errors():
                    field = [_SPEC_NAMES.get(str(p), p) for p in error["loc"]]
                    where = [*loc] if field and field[0] in ("customer", "segment", "id") else [*loc, entry.kind]
                    problems.append(loaded.problem([*where, *field], _message(error)))
                break
    return events, problems


def _event(entry: EventEntry, event_id: str, moment: datetime) -> EventBase:
    common: dict[str, Any] = {
        "event_id": event_id,
        "customer_id": entry.customer,
        "occurred_at": moment,
        "segment": entry.segment,
    }
    if entry.purchase is not None:
        p = entry.purchase
        return PurchaseEvent(
            **common, order_id=f"o-{event_id}", amount=p.amount, currency="USD", item_count=p.item_count
        )
    if entry.interaction is not None:
        i = entry.interaction
        return InteractionEvent(**common, kind=i.kind, custom_kind=i.custom_kind, channel=i.channel)
    assert entry.feedback is not None
    f = entry.feedback
    return FeedbackEvent(**common, kind=f.kind, score=f.score, comment=f.comment)
