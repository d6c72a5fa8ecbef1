"""When each customer must next be judged, if they send nothing: the due index, in Redis.

After every judgement the processor writes the customer's next due moment (:func:`rules.evaluation.next_due`:
a silence crossing an absence rule's threshold, a purchase model's probability crossing its line)
into the index of the partition that owns the customer. A timer claims the customers whose moment
has passed, on the partitions this worker owns, and judges them with the scan time as "now". The
cost of a scan is the customers due, not the customers tracked (a range query on a sorted set).

A claim is a lease (``claim_due.lua``): the moment is pushed ``lease`` ahead, so two workers never
judge one due moment twice, and a worker killed between claim and judgement leaves the customer to
the partition's next owner once the lease has run out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from importlib.resources import files
from typing import Any, Protocol

from redis.asyncio import Redis

from rules.state import epoch_ms
from stream.windows import keys

DueMoments = Mapping[tuple[int, str], datetime | None]
"""(partition, customer id) -> the customer's next due moment (None: nothing to wait for, leave the index)."""


class DueIndex(Protocol):
    async def schedule_many(self, moments: DueMoments) -> None:
        """Write the next due moment of each customer of ``moments`` (one round trip)."""

    async def claim_due(self, partition: int, now: datetime, limit: int) -> list[str]:
        """Customers of ``partition`` due at ``now``, leased to this caller."""


class RedisDueIndex:
    def __init__(self, redis: Redis, app_id: str, *, lease: timedelta = timedelta(minutes=1)) -> None:
        self._redis = redis
        self._app_id = app_id
        self._lease_ms = int(lease.total_seconds() * 1000)
        self._claim = redis.register_script((files("stream.windows") / "claim_due.lua").read_text())

    async def schedule(self, partition: int, customer_id: str, at: datetime | None) -> None:
        await self.schedule_many({(partition, customer_id): at})

    async def schedule_many(self, moments: DueMoments) -> None:
        if not moments:
            return
        added: defaultdict[int, dict[str, int]] = defaultdict(dict)
        removed: defaultdict[int, list[str]] = defaultdict(list)
        for (partition, customer_id), at in moments.items():
            if at is None:
                removed[partition].append(customer_id)
            else:
                added[partition][customer_id] = epoch_ms(at)
        pipe = self._redis.pipeline(transaction=False)
        for partition, scores in added.items():
            pipe.zadd(keys.due_index(self._app_id, partition), scores)
        for partition, customers in removed.items():
            pipe.zrem(keys.due_index(self._app_id, partition), *customers)
        await pipe.execute()

    async def claim_due(self, partition: int, now: datetime, limit: int) -> list[str]:
        claimed: list[Any] = await self._claim(
            keys=[keys.due_index(self._app_id, partition)], args=[epoch_ms(now), limit, self._lease_ms]
        )
        return [c.decode() if isinstance(c, bytes) else c for c in claimed]

    async def size(self, partition: int) -> int:
        return int(await self._redis.zcard(keys.due_index(self._app_id, partition)))
