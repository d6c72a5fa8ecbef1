"""The schema of a rule test file, as pydantic models with ``extra="forbid"``: a typo is an error.

Times are written the way people think of them in a test: ``3d ago`` (relative to the test's
``evaluate_at``), ``now``, or an absolute ISO 8601 timestamp with a timezone. Repeated events use
``every``/``from``/``until``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, model_validator

from rules.base import Duration, Severity
from stream.events import InteractionKind
from stream.settings import Settings

MAX_EVENTS_PER_ENTRY = 10_000

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s+ago\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_TIME_HINT = "write e.g. '3d ago', '12h ago', 'now' or '2026-06-01T10:00:00Z'"


@dataclass(frozen=True)
class Moment:
    """A point in time as written in a test: absolute, or ``ago`` before the test's evaluation time."""

    absolute: datetime | None = None
    ago: timedelta | None = None

    def resolve(self, evaluate_at: datetime) -> datetime:
        if self.absolute is not None:
            return self.absolute
        return evaluate_at - (self.ago or timedelta(0))


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no timezone; add one, e.g. 'Z' for UTC")
    return moment


def _absolute(value: Any) -> datetime:
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, date):  # a bare date is that day's midnight UTC (days are UTC days everywhere)
        return datetime.combine(value, time(0), tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a time; {_TIME_HINT}") from None
        return _aware(parsed)
    raise ValueError(f"{value!r} is not a time; {_TIME_HINT}")


def parse_moment(value: Any) -> Moment:
    if isinstance(value, Moment):
        return value
    if isinstance(value, str):
        if value.strip() == "now":
            return Moment(ago=timedelta(0))
        if match := _AGO.match(value):
            return Moment(ago=timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]]))
        if "ago" in value:
            raise ValueError(f"{value!r} is not a relative time; write a number and a unit: '90m ago', '3d ago'")
    return Moment(absolute=_absolute(value))


def parse_evaluation_time(value: Any) -> datetime:
    if isinstance(value, str) and (value.strip() == "now" or _AGO.match(value)):
        raise ValueError("evaluate_at must be an absolute time, e.g. 2026-06-30T12:00:00Z")
    return _absolute(value)


def _text(value: Any) -> Any:
    """``customer: 42`` in YAML is a number; ids are text (trimmed, as the event contracts trim them)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value.strip() if isinstance(value, str) else value


MomentField = Annotated[Moment, PlainValidator(parse_moment, json_schema_input_type=str)]
EvaluationTime = Annotated[datetime, PlainValidator(parse_evaluation_time, json_schema_input_type=str)]
Text = Annotated[str, BeforeValidator(_text), Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Timed(_Strict):
    """When the event happens: ``at`` once, or ``every`` interval ``from`` a time ``until`` another."""

    at: MomentField | None = Field(default=None, description="When it happened: '3d ago', 'now' or an ISO time")
    every: Duration | None = Field(default=None, description="Repeat at this interval, e.g. '7d'")
    from_: MomentField | None = Field(default=None, alias="from", description="First repetition (with every)")
    until: MomentField | None = Field(
        default=None, description="Repeat up to this time, inclusive (with every; default: evaluate_at)"
    )

    @model_validator(mode="after")
    def _once_or_repeated(self) -> _Timed:
        repeated = self.every is not None or self.from_ is not None or self.until is not None
        if self.at is not None and repeated:
            raise ValueError("give either 'at' (one event) or 'every' + 'from' (repeated events), not both")
        if self.at is None and not repeated:
            raise ValueError("say when: 'at: 3d ago', or 'every: 7d' with 'from: 90d ago' (and optionally 'until')")
        if repeated and (self.every is None or self.from_ is None):
            raise ValueError("repeated events need both 'every' and 'from' ('until' is optional)")
        if self.every is not None and self.every <= timedelta(0):
            raise ValueError("'every' must be longer than zero")
        return self

    def times(self, evaluate_at: datetime) -> list[datetime]:
        if self.at is not None:
            return [self.at.resolve(evaluate_at)]
        assert self.every is not None and self.from_ is not None  # checked above
        first = self.from_.resolve(evaluate_at)
        last = self.until.resolve(evaluate_at) if self.until is not None else evaluate_at
        if last < first:
            raise ValueError(f"'until' ({last.isoformat()}) is before 'from' ({first.isoformat()})")
        count = int((last - first) / self.every) + 1
        if count > MAX_EVENTS_PER_ENTRY:
            raise ValueError(f"this repeats {count} times; at most {MAX_EVENTS_PER_ENTRY} events per entry")
        return [first + n * self.every for n in range(count)]


class PurchaseSpec(_Timed):
    amount: Decimal = Field(default=Decimal(20), description="Order total (default 20)")
    item_count: int | None = None


class InteractionSpec(_Timed):
    kind: InteractionKind
    custom_kind: str | None = Field(default=None, description="With kind 'custom': its name, e.g. webinar")
    channel: str = "app"


class FeedbackSpec(_Timed):
    kind: Literal["nps", "csat", "ces"]
    score: int
    comment: str | None = None


class EventEntry(_Strict):
    """One event (or one repeated series of events) of one customer: exactly one of the three kinds."""

    customer: Text
    purchase: PurchaseSpec | None = None
    interaction: InteractionSpec | None = None
    feedback: FeedbackSpec | None = None
    segment: str | None = Field(default=None, description="The customer segment the event carries")
    id: Text | None = Field(
        default=None, description="Event id (default: generated); an id given twice is a redelivery, counted once"
    )

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> EventEntry:
        given = [k for k in ("purchase", "interaction", "feedback") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'purchase', 'interaction', 'feedback'"
                + (f" (got {' and '.join(given)})" if given else "")
            )
        if self.id is not None and self.spec.at is None:
            raise ValueError("'id' names one event; it cannot be used with 'every'")
        return self

    @property
    def kind(self) -> str:
        return "purchase" if self.purchase else "interaction" if self.interaction else "feedback"

    @property
    def spec(self) -> _Timed:
        spec = self.purchase or self.interaction or self.feedback
        assert spec is not None  # checked above
        return spec


class Expectation(_Strict):
    """An alert that must fire: rule and customer, optionally its severity, some evidence, the message."""

    rule: str = Field(min_length=1)
    customer: Text
    severity: Severity | None = None
    evidence: dict[str, Any] = Field(
        default_factory=dict, description="Only the keys given are compared (numbers with a small tolerance)"
    )
    message_contains: str | None = Field(default=None, description="Text the rendered message must contain")


class RuleTest(_Strict):
    name: str = Field(min_length=1)
    evaluate_at: EvaluationTime | None = Field(default=None, description="Overrides the file's evaluate_at")
    events: list[EventEntry] = Field(default_factory=list)
    expect: list[Expectation] = Field(
        default_factory=list,
        description="Every alert that must fire; any other alert for this test's customers is a failure",
    )

    @model_validator(mode="after")
    def _one_expectation_per_rule_and_customer(self) -> RuleTest:
        seen: set[tuple[str, str]] = set()
        for item in self.expect:
            key = (item.rule, item.customer)
            if key in seen:
                raise ValueError(f"rule '{item.rule}' for customer '{item.customer}' is expected twice")
            seen.add(key)
        return self

    @property
    def customers(self) -> list[str]:
        return list(dict.fromkeys([e.customer for e in self.events] + [x.customer for x in self.expect]))


_DEFAULTS = Settings.model_fields


class WindowSettings(_Strict):
    """The window policy the events are folded with (default: the worker's defaults)."""

    retention: Duration = Field(default=_DEFAULTS["retention"].default, description="CHURNWATCH_RETENTION")
    feedback_history: int = Field(
        default=_DEFAULTS["feedback_history"].default, ge=2, le=100, description="CHURNWATCH_FEEDBACK_HISTORY"
    )


class RuleTestFile(_Strict):
    """A rule test file: the rules under test, a default evaluation time, the disabled rules it
    evaluates nonetheless, and the tests."""

    rule_files: list[str] = Field(
        default_factory=lambda: [".."],
        min_length=1,
        description="Rule files or directories, relative to this file (default: '..', the directory above it)",
    )
    evaluate_at: EvaluationTime | None = Field(default=None, description="When every test is evaluated")
    enable: list[str] = Field(
        default_factory=list,
        description=(
            "Rules of the set that are disabled (enabled: false) to evaluate in this file's tests as if enabled, "
            "in their own mode: what such a rule would do once switched on"
        ),
    )
    window: WindowSettings = Field(default_factory=WindowSettings)
    tests: list[RuleTest] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> RuleTestFile:
        names = [t.name for t in self.tests]
        if duplicates := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"test names must be unique; repeated: {', '.join(duplicates)}")
        if duplicates := sorted({r for r in self.enable if self.enable.count(r) > 1}):
            raise ValueError(f"'enable' names a rule twice: {', '.join(duplicates)}")
        return self
