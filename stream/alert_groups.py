"""The alert groups in Redis (:class:`RedisAlertGroups`, the :class:`alerts.grouping.AlertGroups`
role): pending alerts, group state, the storm window and the sent digests.

Every key of a deployment's groups carries the hash tag ``{<app id>}`` (as the silences do): a
group's writes are one ``MULTI`` and the storm budget one script, which Redis Cluster allows only
within one slot. Groups are few (one per route and receiver) and written at alert rates, which one
node carries easily. The keys are built in :func:`key` below rather than in
:mod:`stream.windows.keys`, as that module was not this change's to edit; they follow its layout
(``cw:groups:{<app id>}:<kind>:<group>``; group names hold no ``{`` or ``}``; digest ids are UUIDs).

- ``due``: sorted set, group → when it is due (epoch ms); the timer reads what is due.
- ``pending:<group>``: hash, alert id → the waiting alert (JSON :class:`~alerts.grouping.Pending`).
- ``settings:<group>``, ``state:<group>``: the group's timing and its state (JSON).
- ``sent:<group>``: sorted set of the storm window: ``<id>:<count>`` → when (epoch ms).
- ``resolved:<group>``: set of the alert ids of sent digests resolved since (for the repeat).
- ``lock:<group>``: one flusher at a time (``SET NX PX``).
- ``digest:<digest id>``: a digest as sent (JSON), kept :data:`~alerts.grouping.DIGEST_KEPT`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis

from alerts.grouping import (
    DIGEST_KEPT,
    REPEAT_MAX_AGE,
    STORM_WINDOW,
    Digest,
    GroupSettings,
    GroupSnapshot,
    GroupState,
    Pending,
)
from rules.state import epoch_ms, from_epoch_ms
from stream.windows.codec import as_text

log = logging.getLogger("churnwatch.alert_groups")

_PREFIX = "cw:groups"

_RESERVE = """
local window_start = tonumber(ARGV[1]) - tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', window_start)
local used = 0
local oldest = nil
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  used = used + tonumber(string.match(entries[i], ':(%d+)$'))
  if oldest == nil then oldest = tonumber(entries[i + 1]) end
end
local granted = math.min(tonumber(ARGV[4]), math.max(tonumber(ARGV[3]) - used, 0))
if granted > 0 then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[5] .. ':' .. granted)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  if oldest == nil then oldest = tonumber(ARGV[1]) end
end
return {granted, oldest or -1}
"""
"""Take up to ARGV[4] of the budget ARGV[3] within the window ARGV[2] (ms) before ARGV[1]; returns
what was granted and the oldest send still in the window (when budget frees up next)."""

_RESCHEDULE = """
if redis.call('HLEN', KEYS[2]) > 0 then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return 1
end
if tonumber(ARGV[3]) < 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 0
"""
"""Due at ARGV[2] while alerts wait in the group, else at ARGV[3] (negative: retired), decided
atomically against an alert coming in meanwhile."""


def key(app_id: str, kind: str, name: str = "") -> str:
    return f"{_PREFIX}:{{{app_id}}}:{kind}" + (f":{name}" if name else "")


class RedisAlertGroups:
    def __init__(self, redis: Redis, app_id: str) -> None:
        if "{" in app_id or "}" in app_id:
            raise ValueError("an app id holds no braces (it is the groups' hash tag)")
        self._redis = redis
        self._app = app_id
        self._reserve = redis.register_script(_RESERVE)
        self._reschedule = redis.register_script(_RESCHEDULE)
        self._token = uuid.uuid4().hex  # this flusher's lock value

    def _key(self, kind: str, name: str = "") -> str:
        return key(self._app, kind, name)

    async def add(self, group: str, settings: GroupSettings, entry: Pending, now: datetime, due_at: datetime) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self._key("pending", group), entry.alert.alert_id, entry.model_dump_json())
            pipe.set(self._key("settings", group), settings.model_dump_json())
            pipe.zadd(self._key("due"), {group: epoch_ms(due_at)}, lt=True)  # sooner wins; adds a new group
            await pipe.execute()

    async def drop_pending(self, group: str, alert_id: str) -> bool:
        return bool(await self._redis.hdel(self._key("pending", group), alert_id))

    async def record_resolved(self, group: str, alert_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(self._key("resolved", group), alert_id)
            pipe.expire(self._key("resolved", group), int(REPEAT_MAX_AGE.total_seconds()))
            await pipe.execute()

    async def resolved(self, group: str) -> set[str]:
        return {as_text(v) for v in await self._redis.smembers(self._key("resolved", group))}

    async def reserve(self, group: str, wanted: int, limit: int, now: datetime) -> tuple[int, datetime | None]:
        window = int(STORM_WINDOW.total_seconds() * 1000)
        granted, oldest = await self._reserve(
            keys=[self._key("sent", group)], args=[epoch_ms(now), window, limit, wanted, uuid.uuid4().hex]
        )
        frees = None if int(oldest) < 0 or int(granted) == wanted else from_epoch_ms(int(oldest) + window + 1)
        return int(granted), frees

    async def due(self, now: datetime) -> list[str]:
        found: list[Any] = await self._redis.zrangebyscore(self._key("due"), "-inf", epoch_ms(now))
        return [as_text(g) for g in found]

    async def lock(self, group: str, ttl: timedelta) -> bool:
        return bool(
            await self._redis.set(
                self._key("lock", group), self._token, nx=True, px=int(ttl / timedelta(milliseconds=1))
            )
        )

    async def unlock(self, group: str) -> None:
        lock = self._key("lock", group)
        if as_text(await self._redis.get(lock) or b"") == self._token:
            await self._redis.delete(lock)

    async def load(self, group: str) -> GroupSnapshot | None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._key("settings", group))
            pipe.get(self._key("state", group))
            pipe.hgetall(self._key("pending", group))
            raw_settings, raw_state, raw_pending = await pipe.execute()
        if raw_settings is None:
            return None
        settings = GroupSettings.model_validate_json(raw_settings)
        state = GroupState() if raw_state is None else GroupState.model_validate_json(raw_state)
        pending: list[Pending] = []
        for alert_id, value in (raw_pending or {}).items():
            try:
                pending.append(Pending.model_validate_json(value))
            except ValidationError as exc:  # never silently: it stays in Redis, and the log says where
                log.error("group %s: waiting alert %r is unreadable, left in place: %s", group, as_text(alert_id), exc)
        first = min((p.since for p in pending), default=None)
        return GroupSnapshot(settings, state, tuple(pending), first)

    async def mark_limited(self, group: str, entries: Sequence[Pending]) -> None:
        if not entries:
            return
        marked = {p.alert.alert_id: p.model_copy(update={"limited": True}).model_dump_json() for p in entries}
        await self._redis.hset(self._key("pending", group), mapping=marked)  # type: ignore[arg-type]

    async def start_digest(self, group: str, state: GroupState, limited: Sequence[Pending]) -> None:
        digest = state.in_flight
        if digest is None:
            raise ValueError("start_digest needs a state with its digest in flight")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key("digest", digest.digest_id), digest.model_dump_json(), ex=DIGEST_KEPT)
            pipe.set(self._key("state", group), state.model_dump_json())
            if digest.alerts and not digest.repeat:
                pipe.hdel(self._key("pending", group), *(a.alert_id for a in digest.alerts))
            for p in limited:
                pipe.hset(
                    self._key("pending", group),
                    p.alert.alert_id,
                    p.model_copy(update={"limited": True}).model_dump_json(),
                )
            await pipe.execute()

    async def finish_digest(self, group: str, state: GroupState, if_empty: datetime | None) -> None:
        await self._redis.set(self._key("state", group), state.model_dump_json())
        # Alerts came in meanwhile: due at once (the flusher then holds them to group_interval).
        await self.reschedule(group, state.last_sent_at or datetime.now(UTC), if_empty)

    async def reschedule(self, group: str, if_pending: datetime, if_empty: datetime | None) -> None:
        empty = -1 if if_empty is None else epoch_ms(if_empty)
        await self._reschedule(
            keys=[self._key("due"), self._key("pending", group)], args=[group, epoch_ms(if_pending), empty]
        )

    async def digest(self, digest_id: str) -> Digest | None:
        raw: Any = await self._redis.get(self._key("digest", digest_id))
        return None if raw is None else Digest.model_validate_json(raw)
