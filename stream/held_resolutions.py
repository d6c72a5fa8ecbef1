"""Held resolutions in Redis (:class:`RedisHeldResolutions`, the
:class:`alerts.flapping.HeldResolutions` role), next to the alert groups and under the same hash
tag ``{<app id>}`` (keys from :func:`stream.alert_groups.key`):

- ``held``: hash, ``["<receiver>", "<customer id>", "<rule id>"]`` (JSON) → the held resolution
  and when it goes out (JSON); one per receiver, customer and rule;
- ``held-due``: sorted set, the same field → when it is due (epoch ms); a claim moves it a lease
  ahead, so a worker that dies mid-send leaves it to another after the lease;
- ``episode:<receiver>:<alert id>``: string, the first alert of the episode an absorbed alert joined
  (kept :data:`alerts.flapping.EPISODE_KEPT`). Receiver names hold no ``:``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError
from redis.asyncio import Redis

from alerts.flapping import EPISODE_KEPT, Held
from alerts.model import Alert
from rules.state import epoch_ms
from stream.alert_groups import key
from stream.windows.codec import as_text

log = logging.getLogger("churnwatch.held_resolutions")

_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, field in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], field)
end
return due
"""
"""Lease the due entries (at most ARGV[3]) until ARGV[2]; returns their fields."""

_RELEASE = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value and cjson.decode(value)['resolution']['alert_id'] == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
"""
"""Forget the entry ARGV[1] only if it still holds resolution ARGV[2]."""

_CLAIM_BATCH = 100


class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    receiver: str
    resolution: Alert
    release_at: AwareDatetime


def _field(receiver: str, customer_id: str, rule_id: str) -> str:
    return json.dumps([receiver, customer_id, rule_id], separators=(",", ":"))


class RedisHeldResolutions:
    def __init__(self, redis: Redis, app_id: str) -> None:
        self._redis = redis
        self._held = key(app_id, "held")
        self._due = key(app_id, "held-due")
        self._app = app_id
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)

    def _episode(self, receiver: str, alert_id: str) -> str:
        return key(self._app, "episode", f"{receiver}:{alert_id}")

    async def hold(self, held: Held) -> None:
        resolution = held.resolution
        field = _field(held.receiver, resolution.customer_id, resolution.rule_id)
        entry = _Entry(receiver=held.receiver, resolution=resolution, release_at=held.release_at)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self._held, field, entry.model_dump_json())
            pipe.zadd(self._due, {field: epoch_ms(held.release_at)}, nx=True)
            await pipe.execute()

    async def cancel(self, receiver: str, customer_id: str, rule_id: str) -> Alert | None:
        field = _field(receiver, customer_id, rule_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(self._held, field)
            pipe.hdel(self._held, field)
            pipe.zrem(self._due, field)
            value, _, _ = await pipe.execute()
        if value is None:
            return None
        try:
            return _Entry.model_validate_json(value).resolution
        except ValidationError as exc:  # it was held, so the firing still counts as a flap
            log.error("held resolution %s was unreadable (dropped with the flap): %s", field, exc)
            return None

    async def remember_episode(self, receiver: str, alert_id: str, original: str) -> None:
        await self._redis.set(self._episode(receiver, alert_id), original, ex=EPISODE_KEPT)

    async def original_of(self, receiver: str, alert_id: str) -> str | None:
        value: Any = await self._redis.get(self._episode(receiver, alert_id))
        return None if value is None else as_text(value)

    async def claim_due(self, now: datetime, lease: timedelta) -> list[Held]:
        fields: list[Any] = await self._claim(
            keys=[self._due], args=[epoch_ms(now), epoch_ms(now + lease), _CLAIM_BATCH]
        )
        if not fields:
            return []
        values: list[Any] = await self._redis.hmget(self._held, fields)
        found = []
        for field, value in zip(fields, values, strict=True):
            if value is None:  # cancelled meanwhile
                await self._redis.zrem(self._due, field)
                continue
            try:
                entry = _Entry.model_validate_json(value)
            except ValidationError as exc:  # kept where it is, and said so: never dropped silently
                log.error("held resolution %s is unreadable, left in place: %s", as_text(field), exc)
                continue
            found.append(Held(entry.receiver, entry.resolution, entry.release_at))
        return found

    async def release(self, held: Held) -> None:
        resolution = held.resolution
        field = _field(held.receiver, resolution.customer_id, resolution.rule_id)
        await self._release(keys=[self._held, self._due], args=[field, resolution.alert_id])
