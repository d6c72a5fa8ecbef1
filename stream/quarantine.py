"""Customers whose evaluation keeps failing are set aside, not retried for ever.

A failure while judging one customer (a rule that raises, state that cannot be decoded) is caught
at that customer, counted (``churnwatch_evaluation_errors_total{stage}``) and logged with the
customer and rule. After ``max_failures`` failures in a row the customer is quarantined: their
waiting evaluation is dropped, the reason is kept in Redis (``churnwatch quarantine list``), their
events are still applied to their windows, and rules skip them until an operator releases them
(``churnwatch quarantine release ID``). Nothing one customer does can stop another's processing.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from redis.asyncio import Redis

from stream.metrics import Metrics
from stream.windows import keys

log = logging.getLogger("churnwatch.quarantine")

REFRESH_SECONDS = 10.0


@dataclass(frozen=True)
class QuarantineEntry:
    customer_id: str
    stage: str
    error: str
    failures: int
    since: str
    """ISO 8601 wall time it was quarantined."""


class QuarantineLedger(Protocol):
    async def add(self, entry: QuarantineEntry) -> None: ...

    async def entries(self) -> list[QuarantineEntry]: ...

    async def release(self, customer_id: str) -> bool: ...


class RedisQuarantineLedger:
    def __init__(self, redis: Redis, app_id: str) -> None:
        self._redis = redis
        self._key = keys.quarantine(app_id)

    async def add(self, entry: QuarantineEntry) -> None:
        await self._redis.hset(self._key, entry.customer_id, json.dumps(asdict(entry)))

    async def entries(self) -> list[QuarantineEntry]:
        raw: dict[Any, Any] = await self._redis.hgetall(self._key)
        found = []
        for customer, value in raw.items():
            try:
                found.append(QuarantineEntry(**json.loads(value)))
            except (TypeError, ValueError):
                cid = customer.decode() if isinstance(customer, bytes) else customer
                found.append(QuarantineEntry(cid, "?", f"unreadable entry: {value!r}", 0, ""))
        return sorted(found, key=lambda e: e.since)

    async def release(self, customer_id: str) -> bool:
        return bool(await self._redis.hdel(self._key, customer_id))


class Quarantine:
    """Counts each customer's consecutive evaluation failures and quarantines them at the limit."""

    def __init__(self, ledger: QuarantineLedger, metrics: Metrics, *, max_failures: int) -> None:
        self._ledger = ledger
        self._metrics = metrics
        self._max_failures = max_failures
        self._failures: dict[str, int] = {}
        self._held: set[str] = set()
        self._refreshed = -REFRESH_SECONDS

    def holds(self, customer_id: str) -> bool:
        return customer_id in self._held

    def succeeded(self, customer_id: str) -> None:
        self._failures.pop(customer_id, None)

    async def failed(self, customer_id: str, stage: str, error: BaseException, rule_id: str | None = None) -> bool:
        """Count one failure; True once the customer is quarantined by it (give their work up)."""
        self._metrics.evaluation_errors.labels(stage=stage).inc()
        failures = self._failures[customer_id] = self._failures.get(customer_id, 0) + 1
        log.error(
            "evaluating customer %r failed at %s%s (failure %d of %d): %s: %s",
            customer_id, stage, f", rule {rule_id}" if rule_id else "", failures, self._max_failures,
            type(error).__name__, error, exc_info=error,
        )  # fmt: skip
        if failures < self._max_failures:
            return False
        entry = QuarantineEntry(
            customer_id, stage, f"{type(error).__name__}: {error}"[:2000], failures, datetime.now(UTC).isoformat()
        )
        await self._ledger.add(entry)
        self._held.add(customer_id)
        del self._failures[customer_id]
        self._metrics.quarantined_customers.set(len(self._held))
        log.error("customer %r quarantined after %d failed evaluations; see `churnwatch quarantine list`",
                  customer_id, failures)  # fmt: skip
        return True

    async def refresh(self) -> None:
        """Every few seconds, take up what operators released (and other workers quarantined)."""
        if time.monotonic() - self._refreshed < REFRESH_SECONDS:
            return
        self._refreshed = time.monotonic()
        self._held = {entry.customer_id for entry in await self._ledger.entries()}
        self._metrics.quarantined_customers.set(len(self._held))
