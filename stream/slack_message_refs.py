"""Where a Slack Web API receiver posted each alert, in Redis: shared by the workers, kept across
restarts, so a resolution published months after its alert still updates the original message.

One small string per alert and receiver (``keys.slack_message``), expiring after ``ttl``: by
default the idle TTL, after which the customer is forgotten and no resolution can come any more.
"""

from __future__ import annotations

import json
from datetime import timedelta

from redis.asyncio import Redis

from alerts.message_refs import MessageRef
from stream.windows import keys


class RedisMessageRefs:
    def __init__(self, redis: Redis, *, receiver: str, ttl: timedelta) -> None:
        """``receiver`` is the notifier's name: two receivers posting to two channels keep apart."""
        if ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        self._redis = redis
        self._receiver = receiver
        self._ttl = ttl

    async def remember(self, alert_id: str, channel: str, ts: str) -> None:
        value = json.dumps({"channel": channel, "ts": ts}, separators=(",", ":"))
        await self._redis.set(keys.slack_message(alert_id, self._receiver), value, ex=self._ttl)

    async def lookup(self, alert_id: str) -> MessageRef | None:
        raw = await self._redis.get(keys.slack_message(alert_id, self._receiver))
        if raw is None:
            return None
        try:
            value = json.loads(raw)
            return MessageRef(channel=str(value["channel"]), ts=str(value["ts"]))
        except (ValueError, TypeError, KeyError):
            return None  # not ours to read: the resolution becomes a new message rather than a stuck alert
