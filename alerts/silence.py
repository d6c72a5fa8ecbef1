"""Silences: an operator mutes the alerts that match, for a while, and says who and why.

After Alertmanager's silences, with two differences its users asked for: a silence always ends
(``ends_at`` is required, and at most :data:`MAX_DURATION` after the start), and a silenced alert is
not lost: the delivery stage counts it (``churnwatch_alerts_silenced_total``), records it against
the silence (``churnwatch silence list`` shows how many it muted), and its resolution is still
published on the alerts topic and judged by the same silences.

A matcher compares one label of the alert with a value (``rule=nps-detractor``) or a regular
expression that must match the whole value (``customer_id=~cust-00.*``). The labels are the
alert's ``customer_id``, ``rule`` (its rule id), ``severity``, ``segment`` (from the customer
context; ``""`` when the alert carries none, as resolutions do) and ``team``: the rule's owner,
which the alert does not carry, so the caller passes it (``""`` when unknown). A silence matches
an alert when all its matchers do, and applies between ``starts_at`` (inclusive) and ``ends_at``
(exclusive).

Pure: no I/O. The store is a Protocol (:class:`SilenceStore`), implemented on Redis in
:mod:`stream.silence_store` and in memory here for tests.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from alerts.model import Alert
from rules.base import Severity

MAX_DURATION = timedelta(days=90)
"""Longer than a quarter is a rule change in disguise: disable the rule or narrow its scope instead."""
MAX_PATTERN = 1_000

LabelName = Literal["customer_id", "rule", "severity", "segment", "team"]


def _segment(alert: Alert) -> str:
    value = alert.customer.get("segment")
    return "" if value is None else str(value)


_LABELS: dict[str, Callable[[Alert, str | None], str]] = {
    "customer_id": lambda alert, team: alert.customer_id,
    "rule": lambda alert, team: alert.rule_id,
    "severity": lambda alert, team: alert.severity.value,
    "segment": lambda alert, team: _segment(alert),
    "team": lambda alert, team: team or "",
}
"""How each matchable label is read from an alert (and its rule's owner team): adding one is a line
here and a name in :data:`LabelName`."""


def labels_of(alert: Alert, team: str | None = None) -> dict[str, str]:
    """The values the matchers compare, read once per alert."""
    return {name: read(alert, team) for name, read in _LABELS.items()}


class SilenceError(ValueError):
    """A silence that cannot be made; ``problems`` are fit to print one a line."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


class UnknownSilenceError(LookupError):
    pass


class SilenceState(StrEnum):
    PENDING = "pending"
    """Not started yet: it will mute from ``starts_at``."""
    ACTIVE = "active"
    EXPIRED = "expired"


class Listing(StrEnum):
    CURRENT = "current"
    """Active and pending: what ``churnwatch silence list`` shows by default."""
    EXPIRED = "expired"
    ALL = "all"


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class Matcher(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: LabelName
    value: str
    regex: bool = False

    @model_validator(mode="after")
    def _value_is_usable(self) -> Matcher:
        if self.regex:
            if len(self.value) > MAX_PATTERN:
                raise ValueError(f"{self.name}=~…: the pattern is longer than {MAX_PATTERN} characters")
            try:
                _compiled(self.value)
            except re.error as exc:
                raise ValueError(f"{self.name}=~{self.value}: not a regular expression ({exc})") from None
        elif self.name == "severity" and self.value not in {s.value for s in Severity}:
            known = ", ".join(s.value for s in Severity)
            raise ValueError(f"severity={self.value}: no such severity (one of {known})")
        return self

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``key=value`` or ``key=~regex``, as typed on the command line."""
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise SilenceError([f"{text!r}: write a matcher as key=value or key=~regex"])
        if name not in _LABELS:
            raise SilenceError([f"{text!r}: no label {name!r} to match (one of {', '.join(_LABELS)})"])
        regex = value.startswith("~")
        try:
            return cls(name=name, value=value[1:] if regex else value, regex=regex)
        except ValidationError as exc:
            raise SilenceError(_problems(exc)) from None

    def matches_value(self, value: str) -> bool:
        if self.regex:
            return _compiled(self.value).fullmatch(value) is not None
        return value == self.value

    def matches(self, labels: Mapping[str, str]) -> bool:
        """``labels`` from :func:`labels_of`."""
        return self.matches_value(labels[self.name])

    def __str__(self) -> str:
        return f"{self.name}={'~' if self.regex else ''}{self.value}"


class Silence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    created_by: str
    comment: str
    created_at: AwareDatetime
    expired_by: str | None = None
    """Who ended it early with ``churnwatch silence expire`` (``ends_at`` is then that moment)."""

    @field_validator("matchers")
    @classmethod
    def _matches_something_specific(cls, matchers: tuple[Matcher, ...]) -> tuple[Matcher, ...]:
        if not matchers:
            raise ValueError("no matchers: give --customer, --rule or --matcher key=value (one at least)")
        if all(m.matches_value("") for m in matchers):
            # As Alertmanager: a silence whose every matcher accepts an empty label mutes nearly everything.
            raise ValueError(
                f"every matcher ({', '.join(map(str, matchers))}) also matches an empty value, so the silence "
                "would mute almost every alert; add a matcher with a non-empty value"
            )
        return matchers

    @field_validator("created_by", "comment")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty: say who silences and why")
        return value.strip()

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> Silence:
        if self.ends_at < self.starts_at:
            raise ValueError(f"ends at {self.ends_at.isoformat()}, before it starts ({self.starts_at.isoformat()})")
        return self

    def state(self, now: datetime) -> SilenceState:
        if now >= self.ends_at:
            return SilenceState.EXPIRED
        return SilenceState.PENDING if now < self.starts_at else SilenceState.ACTIVE

    def matches(self, alert: Alert, team: str | None = None) -> bool:
        return self.matches_labels(labels_of(alert, team))

    def matches_labels(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def expired(self, *, by: str, now: datetime) -> Silence:
        """Ended now by ``by``; a pending silence ends before it ever started (both times set to now)."""
        return self.model_copy(update={"ends_at": now, "starts_at": min(self.starts_at, now), "expired_by": by})

    def describe(self) -> str:
        return " ".join(map(str, self.matchers))


def new_silence(
    matchers: Iterable[Matcher],
    *,
    ends_at: datetime,
    created_by: str,
    comment: str,
    now: datetime,
    starts_at: datetime | None = None,
) -> Silence:
    """A silence to add, checked against ``now`` as well: its end must be in the future, after its
    start and at most :data:`MAX_DURATION` later. Raises :class:`SilenceError` listing every problem."""
    starts = now if starts_at is None else starts_at
    problems = []
    if ends_at <= now:
        problems.append(f"expiry {ends_at.isoformat()} is not in the future (now {now.isoformat()})")
    elif ends_at <= starts:
        problems.append(f"expiry {ends_at.isoformat()} is not after the start {starts.isoformat()}")
    elif ends_at - starts > MAX_DURATION:
        problems.append(f"lasts {ends_at - starts}, longer than the {MAX_DURATION.days} days a silence may last")
    silence: Silence | None = None
    try:
        silence = Silence(
            id=str(uuid.uuid4()),
            matchers=tuple(matchers),
            starts_at=starts,
            ends_at=ends_at,
            created_by=created_by,
            comment=comment,
            created_at=now,
        )
    except ValidationError as exc:
        # The start/end order is already reported above, against now as well.
        problems.extend(p for p in _problems(exc) if "before it starts" not in p)
    if problems or silence is None:
        raise SilenceError(problems or ["invalid silence"])
    return silence


def _problems(exc: ValidationError) -> list[str]:
    """One line per error, named by field (``comment: must not be empty``), without pydantic's prefix."""
    lines = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        where = ".".join(str(part) for part in error["loc"] if not isinstance(part, int))
        lines.append(f"{where}: {message}" if where else message)
    return lines


def silence_for(alert: Alert, silences: Iterable[Silence], now: datetime, *, team: str | None = None) -> Silence | None:
    """The active silence that mutes ``alert`` at ``now``, if any; of several, the one that ends last
    (ties by id), so the log names the silence that will keep muting longest. ``team`` is the owner
    of the alert's rule, for ``team`` matchers."""
    labels = labels_of(alert, team)
    matching = [s for s in silences if s.state(now) is SilenceState.ACTIVE and s.matches_labels(labels)]
    return max(matching, key=lambda s: (s.ends_at, s.id), default=None)


class ActiveSilences(Protocol):
    """What the delivery stage needs: the silences that may apply, and where to record a muted alert."""

    async def current(self, now: datetime) -> Sequence[Silence]:
        """Every silence not yet expired at ``now`` (active and pending: a pending one may start
        before the next read)."""
        ...

    async def record_silenced(self, silence: Silence, alert: Alert) -> None: ...


class SilenceStore(ActiveSilences, Protocol):
    """Where silences live; what ``churnwatch silence`` manages."""

    async def add(self, silence: Silence) -> None: ...

    async def get(self, silence_id: str) -> Silence | None: ...

    async def silences(self, listing: Listing, now: datetime) -> list[Silence]:
        """Sorted by start; expired ones are kept for a retention period after they end."""
        ...

    async def expire(self, silence_id: str, *, by: str, now: datetime) -> Silence:
        """End it now; raises :class:`UnknownSilenceError`, or :class:`SilenceError` when it already ended."""
        ...

    async def muted_counts(self, silence_ids: Sequence[str]) -> dict[str, int]:
        """Distinct alert records each silence kept from the receivers."""
        ...


def listed(silences: Iterable[Silence], listing: Listing, now: datetime) -> list[Silence]:
    wanted = {
        Listing.CURRENT: (SilenceState.ACTIVE, SilenceState.PENDING),
        Listing.EXPIRED: (SilenceState.EXPIRED,),
        Listing.ALL: tuple(SilenceState),
    }[listing]
    return sorted((s for s in silences if s.state(now) in wanted), key=lambda s: (s.starts_at, s.id))


def expiring(silence: Silence | None, silence_id: str, *, by: str, now: datetime) -> Silence:
    """The stores' shared rule for ``expire``: unknown and already-ended silences are refused."""
    if silence is None:
        raise UnknownSilenceError(f"no silence {silence_id}")
    if silence.state(now) is SilenceState.EXPIRED:
        raise SilenceError([f"silence {silence_id} already ended at {silence.ends_at.isoformat()}"])
    return silence.expired(by=by, now=now)


class InMemorySilenceStore:
    """For tests and runs without Redis: forgets on restart, keeps expired silences for ever."""

    def __init__(self) -> None:
        self.by_id: dict[str, Silence] = {}
        self.muted: dict[str, set[str]] = {}

    async def add(self, silence: Silence) -> None:
        self.by_id[silence.id] = silence

    async def get(self, silence_id: str) -> Silence | None:
        return self.by_id.get(silence_id)

    async def silences(self, listing: Listing, now: datetime) -> list[Silence]:
        return listed(self.by_id.values(), listing, now)

    async def current(self, now: datetime) -> Sequence[Silence]:
        return listed(self.by_id.values(), Listing.CURRENT, now)

    async def expire(self, silence_id: str, *, by: str, now: datetime) -> Silence:
        ended = expiring(self.by_id.get(silence_id), silence_id, by=by, now=now)
        self.by_id[silence_id] = ended
        return ended

    async def record_silenced(self, silence: Silence, alert: Alert) -> None:
        self.muted.setdefault(silence.id, set()).add(alert.alert_id)

    async def muted_counts(self, silence_ids: Sequence[str]) -> dict[str, int]:
        return {i: len(self.muted.get(i, ())) for i in silence_ids}
