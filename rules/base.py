"""The fields every warning rule has, and what a rule hands back when it fires.

A rule kind subclasses :class:`RuleBase`, adds a ``kind`` literal and its own parameters, and
implements :meth:`RuleBase.check`: a pure function of the customer's state and the time given to
it (event time, never the wall clock).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from rules.state import CustomerState

EvidenceValue = int | float | str | bool | None

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(value: Any) -> Any:
    """Accept ``"90s"``, ``"30m"``, ``"12h"``, ``"7d"``, ``"2w"`` or plain seconds, as people write them."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration; write e.g. '30m', '12h', '7d' or '2w'")
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


RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="Unique id, e.g. 'nps-detractor'")]


class RuleBase(BaseModel):
    """Fields shared by all rule kinds. Unknown keys are errors, so a typo never passes silently."""

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
    message: str = Field(
        description="Jinja2 template (sandboxed) for the alert text; the rule's evidence fields are variables",
    )

    evidence_fields: ClassVar[tuple[str, ...]] = ()
    """Names of the evidence values :meth:`check` returns; message templates may use these."""

    def check(self, state: CustomerState, now: datetime) -> Signal | None:
        raise NotImplementedError


@dataclass(frozen=True)
class Signal:
    """What a rule saw when it fired: the numbers that justify the alert.

    ``episode`` names the occurrence (e.g. the survey answer's time) so the same occurrence never
    alerts twice, even after the cooldown has passed; None means 'the cooldown alone decides'.
    """

    evidence: Mapping[str, EvidenceValue]
    episode: str | None = None


@dataclass(frozen=True)
class Finding:
    """A rule that fired for one customer at one moment, with its rendered message."""

    rule_id: str
    severity: Severity
    customer_id: str
    evaluated_at: datetime
    message: str
    evidence: Mapping[str, EvidenceValue]
    cooldown: timedelta
    episode: str | None = None
