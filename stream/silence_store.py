"""Silences in Redis (:class:`RedisSilenceStore`), and the cache the delivery path reads them through.

One hash per deployment (``cw:silences:{<app id>}``, id -> the silence as JSON; see
:func:`stream.windows.keys.silences` for Redis Cluster), and per silence a set of the alert ids it
held back. An expired silence stays for :data:`RETENTION` after it ended, for ``churnwatch silence
list --expired``; adding or listing silences drops the ones past that (Redis 7.0 has no per-field
expiry), so the hash holds at most the silences that ended within the retention, plus the current.

The delivery agent reads them through :class:`CachedSilences`: Redis at most once every
:data:`REFRESH_SECONDS`. Start and end times are judged at each alert, so a silence starts and
expires on time; what may lag by up to that interval is a silence just added or expired by hand.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis

from alerts.model import Alert
from alerts.silence import ActiveSilences, Listing, Silence, expiring, listed
from rules.ruleset import RuleSet
from rules.state import epoch_ms
from stream.windows import keys
from stream.windows.codec import as_text

log = logging.getLogger("churnwatch.silences")

RETENTION = timedelta(days=7)
REFRESH_SECONDS = 5.0


class RedisSilenceStore:
    def __init__(self, redis: Redis, app_id: str, *, retention: timedelta = RETENTION) -> None:
        self._redis = redis
        self._app_id = app_id
        self._key = keys.silences(app_id)
        self._retention = retention

    async def add(self, silence: Silence) -> None:
        await self._redis.hset(self._key, silence.id, silence.model_dump_json())
        await self._prune(await self._all(), silence.created_at)

    async def get(self, silence_id: str) -> Silence | None:
        raw = await self._redis.hget(self._key, silence_id)
        return None if raw is None else self._parse(silence_id, raw)

    async def silences(self, listing: Listing, now: datetime) -> list[Silence]:
        every = await self._all()
        kept = await self._prune(every, now)
        return listed(kept, listing, now)

    async def current(self, now: datetime) -> Sequence[Silence]:
        """Read only (the delivery path's call): pruning is left to the commands."""
        return listed(await self._all(), Listing.CURRENT, now)

    async def expire(self, silence_id: str, *, by: str, now: datetime) -> Silence:
        ended = expiring(await self.get(silence_id), silence_id, by=by, now=now)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key, silence_id, ended.model_dump_json())
            pipe.pexpireat(keys.silenced_alerts(self._app_id, silence_id), epoch_ms(ended.ends_at + self._retention))
            await pipe.execute()
        return ended

    async def record_silenced(self, silence: Silence, alert: Alert) -> None:
        muted = keys.silenced_alerts(self._app_id, silence.id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(muted, alert.alert_id)
            pipe.pexpireat(muted, epoch_ms(silence.ends_at + self._retention))
            await pipe.execute()

    async def muted_counts(self, silence_ids: Sequence[str]) -> dict[str, int]:
        if not silence_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for silence_id in silence_ids:
                pipe.scard(keys.silenced_alerts(self._app_id, silence_id))
            counts = await pipe.execute()
        return {silence_id: int(n) for silence_id, n in zip(silence_ids, counts, strict=True)}

    async def _all(self) -> list[Silence]:
        raw: dict[Any, Any] = await self._redis.hgetall(self._key)
        found = (self._parse(as_text(silence_id), value) for silence_id, value in raw.items())
        return [s for s in found if s is not None]

    def _parse(self, silence_id: str, raw: bytes | str) -> Silence | None:
        """A silence that no longer parses (written by another version, edited by hand) is skipped
        with a warning: one bad entry must not stop every alert's delivery."""
        try:
            return Silence.model_validate_json(raw)
        except ValidationError as exc:
            log.warning("silence %s in %s is unreadable, ignored: %s", silence_id, self._key, exc)
            return None

    async def _prune(self, silences: list[Silence], now: datetime) -> list[Silence]:
        """Drop the silences that ended more than the retention ago (and their muted sets)."""
        old = [s.id for s in silences if s.ends_at + self._retention <= now]
        if old:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(self._key, *old)
                pipe.unlink(*(keys.silenced_alerts(self._app_id, i) for i in old))
                await pipe.execute()
        return [s for s in silences if s.id not in old]


def rule_owner(rules: Callable[[], RuleSet]) -> Callable[[str], str | None]:
    """A rule's owner team in the active rule set (hot reloads included), for ``team`` matchers."""

    def owner(rule_id: str) -> str | None:
        rule = rules().by_id(rule_id)
        return None if rule is None else rule.owner

    return owner


class CachedSilences:
    """The silences the delivery path applies, read from the store at most every ``refresh_seconds``.

    A failed read raises (the caller stalls and retries, :mod:`stream.delivery`) and leaves the cache
    due for a read, so an alert is never judged against silences older than one refresh interval
    plus the read that failed."""

    def __init__(
        self,
        store: ActiveSilences,
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._refresh = refresh_seconds
        self._monotonic = monotonic
        self._silences: Sequence[Silence] = ()
        self._read_at: float | None = None

    async def current(self, now: datetime) -> Sequence[Silence]:
        if self._read_at is None or self._monotonic() - self._read_at >= self._refresh:
            self._silences = await self._store.current(now)
            self._read_at = self._monotonic()
        return self._silences

    async def record_silenced(self, silence: Silence, alert: Alert) -> None:
        await self._store.record_silenced(silence, alert)
