"""The alert groups and held resolutions in memory, with the semantics of :class:`stream.alert_groups.RedisAlertGroups`
(the integration test ``test_alert_groups_redis`` holds the Redis one to the same behaviour)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from alerts.flapping import Held
from alerts.grouping import STORM_WINDOW, Digest, GroupSettings, GroupSnapshot, GroupState, Pending
from alerts.model import Alert


@dataclass
class InMemoryAlertGroups:
    pending: dict[str, dict[str, Pending]] = field(default_factory=dict)
    settings: dict[str, GroupSettings] = field(default_factory=dict)
    states: dict[str, GroupState] = field(default_factory=dict)
    due_at: dict[str, datetime] = field(default_factory=dict)
    sent: dict[str, list[tuple[datetime, int]]] = field(default_factory=dict)
    digests: dict[str, Digest] = field(default_factory=dict)
    resolved_ids: dict[str, set[str]] = field(default_factory=dict)
    locks: set[str] = field(default_factory=set)
    crash_on_finish: bool = False
    """Raise in ``finish_digest`` (before writing anything), as a worker killed after the send would stop."""

    async def add(self, group: str, settings: GroupSettings, entry: Pending, now: datetime, due_at: datetime) -> None:
        self.pending.setdefault(group, {}).setdefault(entry.alert.alert_id, entry)
        self.settings[group] = settings
        self.due_at[group] = min(due_at, self.due_at.get(group, due_at))

    async def drop_pending(self, group: str, alert_id: str) -> bool:
        return self.pending.get(group, {}).pop(alert_id, None) is not None

    async def record_resolved(self, group: str, alert_id: str) -> None:
        self.resolved_ids.setdefault(group, set()).add(alert_id)

    async def resolved(self, group: str) -> set[str]:
        return set(self.resolved_ids.get(group, set()))

    async def reserve(self, group: str, wanted: int, limit: int, now: datetime) -> tuple[int, datetime | None]:
        window = [(at, n) for at, n in self.sent.get(group, []) if at > now - STORM_WINDOW]
        used = sum(n for _, n in window)
        granted = min(wanted, max(limit - used, 0))
        if granted:
            window.append((now, granted))
        self.sent[group] = window
        frees = None if granted == wanted or not window else window[0][0] + STORM_WINDOW + timedelta(milliseconds=1)
        return granted, frees

    async def due(self, now: datetime) -> list[str]:
        return [g for g, at in sorted(self.due_at.items(), key=lambda item: item[1]) if at <= now]

    async def lock(self, group: str, ttl: timedelta) -> bool:
        if group in self.locks:
            return False
        self.locks.add(group)
        return True

    async def unlock(self, group: str) -> None:
        self.locks.discard(group)

    async def load(self, group: str) -> GroupSnapshot | None:
        if group not in self.settings:
            return None
        pending = tuple(self.pending.get(group, {}).values())
        first = min((p.since for p in pending), default=None)
        return GroupSnapshot(self.settings[group], self.states.get(group, GroupState()), pending, first)

    async def mark_limited(self, group: str, entries: Sequence[Pending]) -> None:
        for p in entries:
            self.pending[group][p.alert.alert_id] = p.model_copy(update={"limited": True})

    async def start_digest(self, group: str, state: GroupState, limited: Sequence[Pending]) -> None:
        assert state.in_flight is not None
        self.digests[state.in_flight.digest_id] = state.in_flight
        self.states[group] = state
        if not state.in_flight.repeat:
            for alert in state.in_flight.alerts:
                self.pending[group].pop(alert.alert_id, None)
        await self.mark_limited(group, limited)

    async def finish_digest(self, group: str, state: GroupState, if_empty: datetime | None) -> None:
        if self.crash_on_finish:
            raise RuntimeError("worker killed after the send")
        self.states[group] = state
        await self.reschedule(group, state.last_sent_at or datetime.min, if_empty)

    async def reschedule(self, group: str, if_pending: datetime, if_empty: datetime | None) -> None:
        if self.pending.get(group):
            self.due_at[group] = if_pending
        elif if_empty is None:
            self.due_at.pop(group, None)
        else:
            self.due_at[group] = if_empty

    async def digest(self, digest_id: str) -> Digest | None:
        return self.digests.get(digest_id)


@dataclass
class InMemoryHeldResolutions:
    """Held resolutions in memory, with the semantics of :class:`stream.held_resolutions.RedisHeldResolutions`."""

    held: dict[tuple[str, str, str], Held] = field(default_factory=dict)
    due_at: dict[tuple[str, str, str], datetime] = field(default_factory=dict)
    episodes: dict[tuple[str, str], str] = field(default_factory=dict)

    async def hold(self, held: Held) -> None:
        where = (held.receiver, held.resolution.customer_id, held.resolution.rule_id)
        if where not in self.held:
            self.held[where] = held
            self.due_at[where] = held.release_at

    async def cancel(self, receiver: str, customer_id: str, rule_id: str) -> Alert | None:
        self.due_at.pop((receiver, customer_id, rule_id), None)
        held = self.held.pop((receiver, customer_id, rule_id), None)
        return None if held is None else held.resolution

    async def remember_episode(self, receiver: str, alert_id: str, original: str) -> None:
        self.episodes[(receiver, alert_id)] = original

    async def original_of(self, receiver: str, alert_id: str) -> str | None:
        return self.episodes.get((receiver, alert_id))

    async def claim_due(self, now: datetime, lease: timedelta) -> list[Held]:
        due = [where for where, at in self.due_at.items() if at <= now]
        for where in due:
            self.due_at[where] = now + lease
        return [self.held[where] for where in due]

    async def release(self, held: Held) -> None:
        where = (held.receiver, held.resolution.customer_id, held.resolution.rule_id)
        if where in self.held and self.held[where].resolution.alert_id == held.resolution.alert_id:
            del self.held[where]
            del self.due_at[where]
