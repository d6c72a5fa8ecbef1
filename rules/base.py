"""The building blocks of a warning rule: a condition kind, the shared metadata, and what they return.

A rule kind subclasses :class:`Condition`, adds a ``kind`` literal and its own parameters, and
implements :meth:`Condition.check`: a pure function of the customer's window state and the time
given to it (event time, never the wall clock). :func:`rule_class` adds the metadata every rule has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator

if TYPE_CHECKING:
    from rules.context import EvaluationContext

EvidenceValue = int | float | str | bool | None

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(value: Any) -> Any:
    """Accept ``"90s"``, ``"30m"``, ``"12h"``, ``"7d"``, ``"2w"``, plain seconds (``30``, ``"30"``) or
    ISO 8601 (``"P7D"``), as people write them."""
    if isinstance(value, str):
        if re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
            return timedelta(seconds=float(value))
        if value.strip().startswith("P"):
            return value  # ISO 8601: pydantic parses it
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration; write e.g. '30s', '10m', '12h', '7d' or '2w'")
        return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    Field(json_schema_extra={"type": "string", "pattern": _DURATION.pattern}),
]


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Mode(StrEnum):
    ACTIVE = "active"
    """Alerts are sent."""
    SHADOW = "shadow"
    """Evaluated and counted as if sent, but nobody is told: watch a new rule on live traffic first."""


NEXT_STEP_MAX = 200
"""Characters of a rule's ``next_step``: a suggestion read at a glance, not a runbook (link one instead)."""

RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="Unique id, e.g. 'nps-detractor'")]


@dataclass(frozen=True)
class Verdict:
    """What a condition saw: whether it fires, and the numbers either way (``rules explain`` shows them).

    ``episode`` names the occurrence (e.g. the survey answer's time) so the same occurrence never
    alerts twice, even after the cooldown has passed; None means 'the cooldown alone decides'.
    ``note`` says why a customer was not judged (too little history, no answers, ...).
    """

    fired: bool
    evidence: Mapping[str, EvidenceValue] = field(default_factory=dict)
    episode: str | None = None
    note: str | None = None

    @classmethod
    def fire(cls, evidence: Mapping[str, EvidenceValue], episode: str | None = None) -> Verdict:
        return cls(True, evidence, episode)

    @classmethod
    def quiet(cls, evidence: Mapping[str, EvidenceValue] | None = None, note: str | None = None) -> Verdict:
        return cls(False, evidence or {}, None, note)


class Condition(BaseModel):
    """A rule kind's parameters and its pure check. Unknown keys are errors, so a typo never passes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    evidence_fields: ClassVar[tuple[str, ...]] = ()
    """Names of the evidence values :meth:`check` returns; message templates may use these."""

    risk_score: ClassVar[tuple[str, bool] | None] = None
    """A kind whose evidence carries a score: (evidence field, whether higher means riskier). The
    backtest ranks every judged customer by it (ROC AUC), beyond the alert threshold."""

    def evidence_names(self) -> tuple[str, ...]:
        return self.evidence_fields

    def check(self, ctx: EvaluationContext) -> Verdict:
        raise NotImplementedError

    def resolved_by(self, activity: str, interaction_kind: str | None) -> bool:
        """Whether an event of ``activity`` (``purchase``, ``interaction`` of ``interaction_kind``,
        ``feedback``) ends what this condition alerts on: a customer who comes back resolves an
        absence alert. Only absence kinds say yes."""
        return False

    def next_check(self, ctx: EvaluationContext) -> datetime | None:
        """When, if the customer sends nothing more, this condition's verdict may next change (a
        silence crossing its threshold, a score decaying into a band): the customer is judged again
        then, at that moment as "now". None: only a new event can change it. A moment at or before
        ``ctx.now`` is not a change to wait for (the verdict at ``now`` already holds)."""
        return None


class RuleMeta(BaseModel):
    """Fields every rule has, whatever its kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: RuleId
    description: str = ""
    owner: str | None = Field(default=None, description="Team that owns the rule and answers for its alerts")
    severity: Severity = Severity.WARNING
    cooldown: Duration = Field(
        default=timedelta(days=7),
        description="A customer gets this rule's alert at most once per cooldown (event time)",
    )
    enabled: bool = True
    mode: Mode = Field(default=Mode.ACTIVE, description="'shadow' evaluates and counts but sends nothing")
    scope: str | None = Field(
        default=None,
        description="CEL condition over the customer's aggregates; the rule only applies where it is true, "
        "e.g. \"lifetime_spend >= 500.0 && segment == 'enterprise'\"",
    )
    message: str = Field(
        description="Jinja2 template (sandboxed) for the alert text; the rule's evidence fields are variables",
    )
    next_step: str | None = Field(
        default=None,
        min_length=1,
        max_length=NEXT_STEP_MAX,
        pattern=r"\S",
        description="What the person told should do next, shown with the alert, e.g. "
        "'Call within 48 h; offer a win-back voucher' (plain text, one short line)",
    )

    @field_validator("next_step")
    @classmethod
    def _next_step_is_one_line(cls, text: str | None) -> str | None:
        """A message shows it on one line; a YAML block scalar's trailing newline is forgiven."""
        if text is not None and "\n" in text.strip():
            raise ValueError("next_step is one line: write it without line breaks")
        return None if text is None else text.strip()

    @field_validator("scope")
    @classmethod
    def _scope_compiles(cls, source: str | None) -> str | None:
        if source is not None:
            from rules.cel import compile_condition

            compile_condition(source)
        return source


class RuleBase(RuleMeta, Condition):
    """A rule: the metadata plus one kind's condition (see :func:`rule_class`)."""


def rule_class(condition: type[Condition]) -> type[RuleBase]:
    """The rule model of a condition kind: its parameters plus the shared metadata, side by side in YAML."""
    name = condition.__name__.removesuffix("Condition") + "Rule"
    return type(name, (RuleBase, condition), {"__module__": condition.__module__, "__doc__": condition.__doc__})


@dataclass(frozen=True)
class Finding:
    """A rule that fired for one customer at one moment, with its rendered message."""

    rule_id: str
    severity: Severity
    mode: Mode
    customer_id: str
    evaluated_at: datetime
    message: str
    evidence: Mapping[str, EvidenceValue]
    cooldown: timedelta
    episode: str | None = None
    customer: Mapping[str, EvidenceValue] = field(default_factory=dict)
    """Context about the customer (lifetime value, segment), whatever the rule."""
    owner: str | None = None
    """The rule's owner team, so the alert names who answers for it."""
    next_step: str | None = None
    """The rule's suggested next step, shown with the alert."""
