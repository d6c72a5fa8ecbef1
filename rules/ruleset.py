"""Loading rule files into a validated, immutable rule set.

A rule file holds ``rules:``, a list of rules; a directory of ``*.yaml``/``*.yml`` files is loaded
as one set. Every problem is reported with the file, the rule id and the field, and nothing of an
invalid set is used: the caller gets either a whole :class:`RuleSet` or a :class:`RuleConfigError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from rules.base import RuleBase
from rules.registry import AnyRule
from rules.templates import check_template

RULE_FILE_SUFFIXES = (".yaml", ".yml")


class RuleFile(BaseModel):
    """The schema of one rule file (the JSON Schema for editors is generated from this)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[AnyRule]

    @model_validator(mode="after")
    def _templates_use_known_fields(self) -> RuleFile:
        for rule in cast(list[RuleBase], self.rules):
            check_template(rule.message, rule.evidence_names())
        return self


@dataclass(frozen=True)
class RuleProblem:
    file: str
    rule_id: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.rule_id:
            where += f": rule '{self.rule_id}'"
        if self.field:
            where += f": field '{self.field}'"
        return f"{where}: {self.message}"


class RuleConfigError(Exception):
    """The rule set is invalid; ``problems`` lists every error found, each with file and field."""

    def __init__(self, problems: Sequence[RuleProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[RuleBase, ...]
    version: str
    """Short hash of the files' contents: tells which set a running worker has."""
    sources: tuple[str, ...]

    @property
    def enabled(self) -> tuple[RuleBase, ...]:
        return tuple(r for r in self.rules if r.enabled)

    def by_id(self, rule_id: str) -> RuleBase | None:
        return next((r for r in self.rules if r.id == rule_id), None)


def rule_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in RULE_FILE_SUFFIXES and p.is_file())
    return [path]


def load_rule_set(path: Path | str) -> RuleSet:
    """Load and validate a rule file or a directory of them; raise RuleConfigError listing every problem."""
    root = Path(path)
    if not root.exists():
        raise RuleConfigError([RuleProblem(str(root), None, None, "no such file or directory")])
    files = rule_files(root)
    problems: list[RuleProblem] = []
    rules: list[tuple[str, RuleBase]] = []
    digest = hashlib.sha256()
    for file in files:
        text = file.read_bytes()
        digest.update(file.name.encode() + b"\0" + text)
        loaded, file_problems = _load_file(str(file), text)
        problems += file_problems
        rules += [(str(file), r) for r in loaded]
    problems += _duplicate_ids(rules)
    if not files:
        problems.append(RuleProblem(str(root), None, None, "no rule files (*.yaml, *.yml) found"))
    if problems:
        raise RuleConfigError(problems)
    return RuleSet(
        rules=tuple(r for _, r in rules),
        version=digest.hexdigest()[:12],
        sources=tuple(str(f) for f in files),
    )


def _load_file(name: str, text: bytes) -> tuple[list[RuleBase], list[RuleProblem]]:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [], [RuleProblem(name, None, None, f"not valid YAML: {exc}")]
    if not isinstance(raw, dict):
        return [], [RuleProblem(name, None, None, "expected a mapping with a 'rules:' list at the top")]
    try:
        return list(RuleFile.model_validate(raw).rules), []
    except ValidationError as exc:
        return [], list(_problems_from(name, raw, exc))


def _problems_from(name: str, raw: dict[str, Any], exc: ValidationError) -> Iterator[RuleProblem]:
    listed = raw.get("rules")
    raw_rules: list[Any] = listed if isinstance(listed, list) else []
    for error in exc.errors():
        loc = list(error["loc"])
        rule_id = None
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            index = loc[1]
            item = raw_rules[index] if index < len(raw_rules) else None
            rule_id = str(item.get("id")) if isinstance(item, dict) and item.get("id") else f"#{index + 1}"
            loc = loc[2:]
            # A discriminated union puts the kind's tag first; it is not a field the user wrote.
            if loc and isinstance(item, dict) and loc[0] == item.get("kind"):
                loc = loc[1:]
        field = ".".join(str(part) for part in loc) or None
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field (misspelt?)"
        elif error["type"] == "union_tag_invalid":
            message = f"{error['msg']}"
        yield RuleProblem(name, rule_id, field, message)


def _duplicate_ids(rules: list[tuple[str, RuleBase]]) -> list[RuleProblem]:
    seen: dict[str, str] = {}
    problems = []
    for file, rule in rules:
        if rule.id in seen:
            problems.append(RuleProblem(file, rule.id, "id", f"duplicate rule id (also defined in {seen[rule.id]})"))
        seen.setdefault(rule.id, file)
    return problems
