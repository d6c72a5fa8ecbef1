"""The routing tree: which receivers an alert reaches, and with which timing (after Alertmanager's).

A routes file names its ``receivers`` and holds one ``route`` tree. The root route matches every
alert (the default route); an alert walks the tree depth first, and at each level the first child
whose ``matchers`` all hold takes it, unless that child says ``continue: true``, in which case the
next children are tried too (fan-out). A route none of whose children match delivers to its own
receiver. Children inherit their parent's receiver and timing unless they set their own.

``inhibit_rules`` (optional; none: nothing is inhibited) mute lower-severity alerts of a customer
while a more severe one is open for them: see :mod:`alerts.inhibition`.

Secrets never sit in the file: a receiver names the environment variable that holds its URL or
token (``url_env``), so the file can be reviewed and committed. Everything here is pure except
:func:`load_routes`, which reads the file it is given.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from alerts.model import Alert
from alerts.receivers import RECEIVER_TYPES as RECEIVER_TYPES
from alerts.receivers import Receiver, ReceiverName
from rules.base import Duration, EvidenceValue, RuleId, Severity, format_duration
from rules.ruleset import RuleConfigError, RuleProblem

_FROZEN = ConfigDict(extra="forbid", frozen=True)


def _one_or_many(value: Any) -> Any:
    """``severity: critical`` and ``severity: [warning, critical]`` both read naturally."""
    return (value,) if isinstance(value, str) else value


def _one_or_many_schema(item: dict[str, Any]) -> WithJsonSchema:
    """What editors are told: one value or a list of them (the validator turns one into a list)."""
    return WithJsonSchema({"anyOf": [item, {"type": "array", "items": item, "minItems": 1}]})


_LISTED = BeforeValidator(_one_or_many)
Names = Annotated[tuple[str, ...], _LISTED, Field(min_length=1), _one_or_many_schema({"type": "string"})]
RuleIds = Annotated[tuple[RuleId, ...], _LISTED, Field(min_length=1), _one_or_many_schema({"type": "string"})]
Severities = Annotated[
    tuple[Severity, ...], _LISTED, Field(min_length=1), _one_or_many_schema({"enum": [s.value for s in Severity]})
]


class NumberMatcher(BaseModel):
    """Bounds on one of the customer's figures; all given bounds must hold. A missing figure never matches."""

    model_config = _FROZEN

    gt: FiniteFloat | None = None
    ge: FiniteFloat | None = None
    lt: FiniteFloat | None = None
    le: FiniteFloat | None = None

    @model_validator(mode="after")
    def _has_a_bound(self) -> NumberMatcher:
        if (self.gt, self.ge, self.lt, self.le) == (None, None, None, None):
            raise ValueError("give at least one of gt, ge, lt, le")
        return self

    def holds(self, value: EvidenceValue) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return (
            (self.gt is None or value > self.gt)
            and (self.ge is None or value >= self.ge)
            and (self.lt is None or value < self.lt)
            and (self.le is None or value <= self.le)
        )


class Matchers(BaseModel):
    """What a route takes: every condition given must hold; a list means any of its values."""

    model_config = _FROZEN

    rule: RuleIds | None = None
    severity: Severities | None = None
    team: Names | None = Field(default=None, description="The rule's owner team")
    segment: Names | None = None
    lifetime_spend: NumberMatcher | None = None
    lifetime_purchases: NumberMatcher | None = None
    days_since_last_purchase: NumberMatcher | None = None

    def empty(self) -> bool:
        return all(getattr(self, name) is None for name in type(self).model_fields)

    def match(self, alert: Alert, team: str | None) -> bool:
        segment = alert.customer.get("segment") or None
        chosen: tuple[tuple[tuple[str, ...] | None, EvidenceValue], ...] = (
            (self.rule, alert.rule_id),
            (self.severity, alert.severity),
            (self.team, team),
            (self.segment, segment),
        )
        if any(allowed is not None and value not in allowed for allowed, value in chosen):
            return False
        figures = (
            ("lifetime_spend", self.lifetime_spend),
            ("lifetime_purchases", self.lifetime_purchases),
            ("days_since_last_purchase", self.days_since_last_purchase),
        )
        return all(bound is None or bound.holds(alert.customer.get(name)) for name, bound in figures)


class Route(BaseModel):
    """A node of the tree. Timing left unset is inherited from the parent (the root's from the defaults)."""

    model_config = _FROZEN

    receiver: ReceiverName | None = Field(default=None, description="Default: the parent route's receiver")
    matchers: Matchers = Field(default_factory=Matchers)
    continue_: bool = Field(
        default=False, alias="continue", description="Also try the next sibling routes after this one matched"
    )
    routes: tuple[Route, ...] = ()
    group_wait: Duration | None = Field(default=None, description="How long to collect alerts before the first digest")
    group_interval: Duration | None = Field(default=None, description="Between digests of a group")
    repeat_interval: Duration | None = Field(default=None, description="Before an unchanged digest is sent again")
    max_alerts_per_hour: int | None = Field(default=None, ge=1, description="Storm limit; the rest go to a digest")
    send_resolved: bool | None = Field(default=None, description="Whether resolutions are sent too")
    digest: bool | None = Field(
        default=None,
        description="Send this route's alerts as digests (group_wait, group_interval, repeat_interval apply); "
        "unset or false: each alert at once (only those over max_alerts_per_hour wait for a digest)",
    )
    digest_size: int | None = Field(
        default=None, ge=1, le=20, description="Alerts a digest shows in full, the most valuable first (default 10)"
    )
    flap_span: Duration | None = Field(
        default=None,
        description="Flap damping: hold a resolution this long before it is sent; a firing of the same customer "
        "and rule meanwhile cancels it and is not sent (the alert stays one open alert). Default 0s: off",
    )

    @field_validator("group_interval", "repeat_interval")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("group_wait", "flap_span")
    @classmethod
    def _not_negative(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(0):
            raise ValueError("must not be negative")
        return value

    def walk(self, path: str = "route") -> Iterator[tuple[str, Route]]:
        """Every route with its place in the file (``route.routes[2]``), parents first."""
        yield path, self
        for index, child in enumerate(self.routes, start=1):
            yield from child.walk(f"{path}.routes[{index}]")


@dataclass(frozen=True)
class RouteSettings:
    """A route's effective timing, after inheritance. The defaults are Alertmanager's."""

    group_wait: timedelta = timedelta(seconds=30)
    group_interval: timedelta = timedelta(minutes=5)
    repeat_interval: timedelta = timedelta(hours=4)
    max_alerts_per_hour: int | None = None
    """None: no storm limit."""
    send_resolved: bool = True
    digest: bool = False
    """False: alerts are sent one by one, at once; only those over the storm limit wait for a digest."""
    digest_size: int = 10
    flap_span: timedelta = timedelta(0)
    """0: resolutions are sent at once."""

    def under(self, route: Route) -> RouteSettings:
        """These settings as inherited by ``route``: what it sets wins."""
        own = {name: getattr(route, name) for name in _SETTING_NAMES if getattr(route, name) is not None}
        return replace(self, **own)

    def describe(self) -> str:
        limit = "none" if self.max_alerts_per_hour is None else str(self.max_alerts_per_hour)
        return (
            f"group_wait={format_duration(self.group_wait)} group_interval={format_duration(self.group_interval)} "
            f"repeat_interval={format_duration(self.repeat_interval)} max_alerts_per_hour={limit} "
            f"send_resolved={str(self.send_resolved).lower()}"
        ) + (
            (f" digest=true digest_size={self.digest_size}" if self.digest else "")
            + (f" flap_span={format_duration(self.flap_span)}" if self.flap_span else "")
        )

    @property
    def grouped(self) -> bool:
        """Whether alerts of this route can wait in a group: a digest route, or one with a storm limit."""
        return self.digest or self.max_alerts_per_hour is not None


_SETTING_NAMES = (
    "group_wait",
    "group_interval",
    "repeat_interval",
    "max_alerts_per_hour",
    "send_resolved",
    "digest",
    "digest_size",
    "flap_span",
)


@dataclass(frozen=True)
class RouteMatch:
    """One delivery an alert is due: to ``receiver``, from the route at ``path``, with its effective timing."""

    receiver: str
    path: str
    settings: RouteSettings


class UnresolvedReferences(ValueError):
    """Cross-field problems (unknown receivers, root constraints), each with its field path, so that
    :func:`load_routes` reports each at its own place rather than as one message about the file."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{field}: {message}" for field, message in self.problems))


EqualLabel = Literal["customer_id", "rule", "severity", "segment", "team"]
"""The labels ``equal`` may name: those of :func:`alerts.silence.labels_of`."""


class InhibitRule(BaseModel):
    """While an open alert matches ``source``, alerts matching ``target`` with the same ``equal``
    labels are sent to no receiver (Alertmanager's ``inhibit_rules``; see :mod:`alerts.inhibition`).

    ``equal`` must name ``customer_id``: open alerts are kept per customer, so one customer's alert
    never inhibits another's."""

    model_config = _FROZEN

    source: Matchers = Field(description="What the open alert that inhibits must match, e.g. {severity: critical}")
    target: Matchers = Field(description="What the alerts it inhibits match, e.g. {severity: [warning, info]}")
    equal: tuple[EqualLabel, ...] = Field(
        default=("customer_id",), description="Labels the two must share; must include customer_id"
    )

    @model_validator(mode="after")
    def _per_customer(self) -> InhibitRule:
        if "customer_id" not in self.equal:
            raise ValueError("equal must include customer_id: open alerts are kept per customer")
        if self.source.empty() or self.target.empty():
            raise ValueError("give source and target matchers: an empty one would match every alert")
        return self


class RoutesConfig(BaseModel):
    """The schema of a routes file (``churnwatch routes schema`` prints its JSON Schema)."""

    model_config = _FROZEN

    receivers: tuple[Receiver, ...]
    route: Route
    inhibit_rules: tuple[InhibitRule, ...] = Field(
        default=(), description="Open alerts that mute others of the same customer; none: no inhibition"
    )

    @model_validator(mode="after")
    def _references_hold(self) -> RoutesConfig:
        problems = list(_reference_problems(self))
        if problems:
            raise UnresolvedReferences(problems)
        return self

    def receiver(self, name: str) -> Receiver:
        return next(r for r in self.receivers if r.name == name)


def _reference_problems(config: RoutesConfig) -> Iterator[tuple[str, str]]:
    if not config.receivers:
        yield "receivers", "name at least one receiver"
    names: dict[str, int] = {}
    for index, receiver in enumerate(config.receivers, start=1):
        if receiver.name in names:
            first = names[receiver.name]
            yield f"receivers[{index}].name", f"duplicate receiver name '{receiver.name}' (also receivers[{first}])"
        names.setdefault(receiver.name, index)
    root = config.route
    if root.receiver is None:
        yield "route.receiver", "the root route needs a receiver: it takes every alert no other route takes"
    if not root.matchers.empty():
        yield "route.matchers", "the root route matches every alert; put matchers on its child routes"
    if root.continue_:
        yield "route.continue", "the root route has no siblings to continue to"
    for path, route in root.walk():
        if names and route.receiver is not None and route.receiver not in names:
            yield f"{path}.receiver", f"no receiver '{route.receiver}' (known: {', '.join(names)})"


def route_alert(tree: Route, alert: Alert, *, team: str | None = None) -> list[RouteMatch]:
    """The deliveries ``alert`` is due, in tree order; the root (default route) always matches.

    The alert record does not carry its rule's owner team: a caller that knows the rule set passes
    it as ``team`` (``RuleBase.owner``); without it, routes that match on ``team`` do not take the alert.
    Two routes may name the same receiver; the notification log keeps it to one delivery per receiver.
    """
    if tree.receiver is None:
        raise ValueError("the root route needs a receiver")
    return _matches(tree, alert, team, "route", tree.receiver, RouteSettings().under(tree))


def _matches(
    route: Route, alert: Alert, team: str | None, path: str, receiver: str, settings: RouteSettings
) -> list[RouteMatch]:
    found: list[RouteMatch] = []
    for index, child in enumerate(route.routes, start=1):
        if not child.matchers.match(alert, team):
            continue
        below = _matches(
            child, alert, team, f"{path}.routes[{index}]", child.receiver or receiver, settings.under(child)
        )
        found += below
        if not child.continue_:
            break
    return found or [RouteMatch(receiver, path, settings)]


class RoutesConfigError(RuleConfigError):
    """The routes file is invalid; ``problems`` lists each error with the file and field path.

    A :class:`RuleConfigError` so that a routes file reports its problems exactly as rule files do."""


def parse_routes(text: str | bytes, name: str) -> RoutesConfig:
    """Validate a routes document; ``name`` (the file) prefixes every problem."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RoutesConfigError([RuleProblem(name, None, None, f"not valid YAML: {exc}")]) from None
    if not isinstance(raw, dict):
        raise RoutesConfigError([RuleProblem(name, None, None, "expected a mapping with 'receivers:' and 'route:'")])
    try:
        return RoutesConfig.model_validate(raw)
    except ValidationError as exc:
        raise RoutesConfigError(list(_problems_from(name, exc))) from None


def load_routes(path: Path | str) -> RoutesConfig:
    """Read and validate a routes file; raise :class:`RoutesConfigError` naming the file and each field."""
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise RoutesConfigError([RuleProblem(str(path), None, None, exc.strerror or str(exc))]) from None
    return parse_routes(text, str(path))


def _problems_from(name: str, exc: ValidationError) -> Iterator[RuleProblem]:
    for error in exc.errors():
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, UnresolvedReferences):
            yield from (RuleProblem(name, None, field, message) for field, message in cause.problems)
            continue
        loc = list(error["loc"])
        # A discriminated union puts the receiver's type tag in the location; it is not a field the user wrote.
        if len(loc) >= 3 and loc[0] == "receivers" and loc[2] in RECEIVER_TYPES:
            del loc[2]
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field (misspelt?)"
        yield RuleProblem(name, None, _field_path(loc), message)


def _field_path(loc: Sequence[int | str]) -> str | None:
    """``route.routes[2].matchers.sevrity``: list positions counted from 1, as people count."""
    path = ""
    for part in loc:
        path += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or None
