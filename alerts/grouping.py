"""Grouping, digests and the storm limit: the pure decisions (after Alertmanager's ``dispatch/``
aggregation groups, plus a per-route storm limit it does not have).

A **group** is one route and one of its receivers (``route.routes[2]`` → ``support-team``). A route
with ``digest: true`` sends no alert on its own: each one waits in its group (durably, in Redis:
:class:`AlertGroups`) and the group goes out as one **digest**:

- the first digest ``group_wait`` after the first alert came in, then at most one every
  ``group_interval`` while new alerts keep coming;
- an unchanged group (no new alert) is sent again after ``repeat_interval`` as a reminder, with its
  last digest's alerts that were not resolved since, until none is left (or they are older than
  :data:`REPEAT_MAX_AGE`);
- it shows the ``digest_size`` most valuable alerts (lifetime spend, from the alert's customer
  context) in full, counts the rest, and names where every alert is listed (``churnwatch alerts list
  --digest <id>``, from the digest kept in Redis for :data:`DIGEST_KEPT`).

The **storm limit** (``max_alerts_per_hour``) counts the alerts a group's receiver got in the last
hour, on their own or in digests. An alert over it is never dropped: it waits in the group
(outcome ``rate_limited``) and goes out in a later digest, the most valuable first; a digest says
how many are still waiting. On a route without ``digest`` the alerts within the limit are sent at
once, as on any route; only those over it wait for a digest.

A digest is written to Redis (the group's alerts moved into it) before it is sent and cleared after
the receiver accepted it, so a crash in between sends the same digest again (same ``digest_id``, the
receivers' idempotency key) and loses none.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from alerts.model import Alert

if TYPE_CHECKING:  # routing imports the receivers, which import this module's notifiers
    from alerts.routing import RouteMatch

STORM_WINDOW = timedelta(hours=1)
REPEAT_MAX_AGE = timedelta(days=7)
"""A digest's alerts older than this are not repeated any more (a rule that never resolves would
otherwise be reminded of forever)."""
DIGEST_KEPT = timedelta(days=14)
"""How long a sent digest's full list stays readable (``churnwatch alerts list --digest``)."""
RETRY_AFTER = timedelta(seconds=30)
"""When a digest could not be delivered: it is tried again this much later (it stays in Redis)."""
_NAMESPACE = uuid.UUID("0b8a3f52-54a2-4d55-8a4e-3f6f3e0b9d21")


def group_id(match: RouteMatch) -> str:
    """``<receiver>@<route path>``: one group per route and receiver (names and paths hold no ``@``)."""
    return f"{match.receiver}@{match.path}"


def value_of(alert: Alert) -> float:
    """What a customer is worth to the ranking: their lifetime spend; 0 when the alert carries none."""
    spend = alert.customer.get("lifetime_spend")
    if isinstance(spend, int | float) and not isinstance(spend, bool) and math.isfinite(spend):
        return float(spend)
    return 0.0


def ranked(alerts: Iterable[Alert]) -> list[Alert]:
    """Most valuable first; ties by detection time, then id, so every worker ranks alike."""
    return sorted(alerts, key=lambda a: (-value_of(a), a.detected_at, a.alert_id))


class GroupSettings(BaseModel):
    """A group's timing, as the route had it when its latest alert came in."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    receiver: str
    route: str
    digest: bool
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    max_alerts_per_hour: int | None
    digest_size: int = Field(ge=1)

    @classmethod
    def of(cls, match: RouteMatch) -> GroupSettings:
        s = match.settings
        return cls(
            receiver=match.receiver,
            route=match.path,
            digest=s.digest,
            group_wait=s.group_wait,
            group_interval=s.group_interval,
            repeat_interval=s.repeat_interval,
            max_alerts_per_hour=s.max_alerts_per_hour,
            digest_size=s.digest_size,
        )


class Digest(BaseModel):
    """One message for a group: ``alerts`` ranked, the first ``shown`` of them in full."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    digest_id: str = Field(description="Stable for this digest: a re-send after a crash carries the same id")
    group: str
    receiver: str
    route: str
    created_at: AwareDatetime
    alerts: tuple[Alert, ...]
    shown: int
    held_back: int = Field(description="Alerts of the group over the storm limit, waiting for a later digest")
    max_alerts_per_hour: int | None
    repeat: bool = Field(default=False, description="A reminder: the group did not change for repeat_interval")

    @property
    def top(self) -> tuple[Alert, ...]:
        return self.alerts[: self.shown]

    @property
    def rest(self) -> int:
        return len(self.alerts) - self.shown

    def list_command(self) -> str:
        return f"churnwatch alerts list --digest {self.digest_id}"


class GroupState(BaseModel):
    """What a group remembers between digests (one JSON value in Redis)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sequence: int = 0
    """Digests made so far: the next digest's id derives from it."""
    last_sent_at: AwareDatetime | None = None
    in_flight: Digest | None = None
    """Written before the send, cleared after it: found set, it is sent again as it is."""
    last_digest: tuple[str, ...] = ()
    """The last digest's alert ids, for the repeat."""
    last_digest_id: str | None = None


class Pending(BaseModel):
    """An alert waiting in a group; ``limited``: already counted as over the storm limit."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    alert: Alert
    since: AwareDatetime
    limited: bool = False


def in_flight(state: GroupState, digest: Digest) -> GroupState:
    return state.model_copy(update={"in_flight": digest})


def after_sent(state: GroupState, digest: Digest, now: datetime) -> GroupState:
    return GroupState(
        sequence=state.sequence + 1,
        last_sent_at=now,
        in_flight=None,
        last_digest=tuple(a.alert_id for a in digest.alerts),
        last_digest_id=digest.digest_id,
    )


def digest_id(group: str, sequence: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{group}\x1f{sequence}"))


def next_due(state: GroupState, settings: GroupSettings, first_pending_at: datetime) -> datetime:
    """When a group with waiting alerts may send: ``group_wait`` after its first alert, and not
    before ``group_interval`` after its last digest."""
    due = first_pending_at + (settings.group_wait if settings.digest else timedelta(0))
    if state.last_sent_at is not None:
        due = max(due, state.last_sent_at + settings.group_interval)
    return due


def plan_digest(
    group: str,
    settings: GroupSettings,
    state: GroupState,
    pending: Sequence[Pending],
    granted: int,
    now: datetime,
) -> tuple[Digest, list[Pending]]:
    """The digest of the ``granted`` most valuable waiting alerts (``granted``: what the storm limit
    allows now, ``len(pending)`` without one), and the waiting alerts it leaves over the limit."""
    order = ranked(p.alert for p in pending)
    by_id = {p.alert.alert_id: p for p in pending}
    taken, left = order[:granted], order[granted:]
    digest = Digest(
        digest_id=digest_id(group, state.sequence),
        group=group,
        receiver=settings.receiver,
        route=settings.route,
        created_at=now,
        alerts=tuple(taken),
        shown=min(settings.digest_size, len(taken)),
        held_back=len(left),
        max_alerts_per_hour=settings.max_alerts_per_hour,
    )
    return digest, [by_id[a.alert_id] for a in left]


def plan_repeat(
    group: str,
    settings: GroupSettings,
    state: GroupState,
    last: Digest | None,
    resolved: set[str],
    now: datetime,
) -> Digest | None:
    """The reminder of an unchanged group, once ``repeat_interval`` passed since its last digest:
    that digest's alerts not resolved since and younger than :data:`REPEAT_MAX_AGE`; None if none."""
    if last is None or state.last_sent_at is None or now < state.last_sent_at + settings.repeat_interval:
        return None
    still = [a for a in last.alerts if a.alert_id not in resolved and now - a.detected_at < REPEAT_MAX_AGE]
    if not still:
        return None
    return Digest(
        digest_id=digest_id(group, state.sequence),
        group=group,
        receiver=settings.receiver,
        route=settings.route,
        created_at=now,
        alerts=tuple(ranked(still)),
        shown=min(settings.digest_size, len(still)),
        held_back=0,
        max_alerts_per_hour=settings.max_alerts_per_hour,
        repeat=True,
    )


@dataclass(frozen=True)
class GroupSnapshot:
    settings: GroupSettings
    state: GroupState
    pending: tuple[Pending, ...]
    first_pending_at: datetime | None


class AlertGroups(Protocol):
    """The groups' durable store (Redis: :mod:`stream.alert_groups`). Every write is idempotent or
    guarded, so a record redelivered after a crash, or two workers' timers, change nothing twice."""

    async def add(self, group: str, settings: GroupSettings, entry: Pending, now: datetime, due_at: datetime) -> None:
        """The alert waits in the group, durably, once this returns (``now``: when it came in); the
        group is due at ``due_at`` unless it was due earlier."""
        ...

    async def drop_pending(self, group: str, alert_id: str) -> bool:
        """Take a waiting alert out (it was resolved before any digest carried it); True if it waited."""
        ...

    async def record_resolved(self, group: str, alert_id: str) -> None:
        """A digest's alert was resolved: a repeat leaves it out."""
        ...

    async def resolved(self, group: str) -> set[str]: ...

    async def reserve(self, group: str, wanted: int, limit: int, now: datetime) -> tuple[int, datetime | None]:
        """Take up to ``wanted`` of the storm budget of the hour before ``now``, atomically; return
        what was granted and, when not all was, when budget frees up next."""
        ...

    async def due(self, now: datetime) -> list[str]:
        """Groups due at ``now``."""
        ...

    async def lock(self, group: str, ttl: timedelta) -> bool:
        """One flusher per group at a time, across workers; expires on its own after a crash."""
        ...

    async def unlock(self, group: str) -> None: ...

    async def load(self, group: str) -> GroupSnapshot | None: ...

    async def mark_limited(self, group: str, entries: Sequence[Pending]) -> None:
        """These waiting alerts were counted as over the storm limit (counted once each)."""
        ...

    async def start_digest(self, group: str, state: GroupState, limited: Sequence[Pending]) -> None:
        """Atomically: ``state`` (its digest in flight) is written, the digest is kept for its list,
        its alerts no longer wait, and ``limited`` waiting alerts are marked as counted."""
        ...

    async def finish_digest(self, group: str, state: GroupState, if_empty: datetime | None) -> None:
        """The receiver has the digest: write ``state`` (nothing in flight); the group is due at once
        if alerts came in meanwhile (the flusher then applies ``group_interval``), else at
        ``if_empty`` (None: retired)."""
        ...

    async def reschedule(self, group: str, if_pending: datetime, if_empty: datetime | None) -> None:
        """Due at ``if_pending`` while alerts wait in the group, else at ``if_empty`` (None: retired),
        decided atomically against an alert coming in meanwhile."""
        ...

    async def digest(self, digest_id: str) -> Digest | None:
        """A digest as it was sent (for its full list)."""
        ...


@runtime_checkable
class DigestNotifier(Protocol):
    """A receiver that sends a digest as one message (every built-in one). A notifier without it gets
    a digest's alerts one by one."""

    @property
    def name(self) -> str: ...

    async def notify_digest(self, digest: Digest) -> None: ...
