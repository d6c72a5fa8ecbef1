"""Where waiting evaluations survive a crash: Redis, one index per app id.

Namespaced by the app id (the consumer group), so a worker of another deployment on the same Redis
never runs, or trips over, this deployment's waiting evaluations.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from redis.asyncio import Redis

from stream.evaluation_queue import Trigger
from stream.windows import keys

log = logging.getLogger("churnwatch.pending_ledger")


class RedisPendingLedger:
    def __init__(self, redis: Redis, app_id: str) -> None:
        self._redis = redis
        self._index = keys.pending_index(app_id)
        self._triggers = keys.pending_triggers(app_id)

    async def mark_pending(self, triggers: Sequence[Trigger]) -> None:
        """One round trip for all of them (a batch queues its customers together)."""
        if not triggers:
            return
        now_ms = int(time.time() * 1000)
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(self._index, {t.customer_id: now_ms for t in triggers}, nx=True)
        pipe.hset(self._triggers, mapping={t.customer_id: json.dumps(asdict(t)) for t in triggers})
        await pipe.execute()

    async def clear_pending(self, customer_ids: Sequence[str]) -> None:
        if not customer_ids:
            return
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrem(self._index, *customer_ids)
        pipe.hdel(self._triggers, *customer_ids)
        await pipe.execute()

    async def load_pending(self, limit: int) -> list[Trigger]:
        """The waiting evaluations, oldest first; an entry that cannot be read is logged and dropped,
        so one bad entry never stops a worker from starting."""
        members: list[Any] = await self._redis.zrange(self._index, 0, limit - 1)
        customers = [m.decode() if isinstance(m, bytes) else m for m in members]
        if not customers:
            return []
        triggers = []
        for customer_id, raw in zip(customers, await self._redis.hmget(self._triggers, customers), strict=True):
            try:
                if raw is None:
                    raise ValueError("no trigger recorded")
                triggers.append(Trigger(**json.loads(raw)))
            except (TypeError, ValueError) as exc:
                log.error("dropping unreadable waiting evaluation of customer %r: %r (%s)", customer_id, raw, exc)
                await self.clear_pending([customer_id])
        return triggers
