"""The open alerts per customer in Redis (:class:`RedisOpenAlerts`), for inhibition, and the worker's
gauge of them (:class:`OpenAlertsGauge`).

One hash per customer (:func:`stream.windows.keys.open_alerts`, under the customer's hash tag):
alert id -> the alert and until when it stays open. A firing record adds its alert, a resolution
removes the alert it resolves; both are idempotent, so a record read again after a crash repeats
them harmlessly. An alert stays open for its rule's cooldown after it was detected (``open_for``):
rules that never resolve stop inhibiting then, and the key expires with its last alert.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Gauge
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError
from redis.asyncio import Redis

from alerts.model import Alert
from rules.ruleset import RuleSet
from rules.state import epoch_ms
from stream.windows import keys

log = logging.getLogger("churnwatch.open_alerts")

DEFAULT_OPEN_FOR = timedelta(days=7)
"""For an alert whose rule is no longer in the rule set: the default cooldown."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    alert: Alert
    until: AwareDatetime


def rule_cooldown(rules: Callable[[], RuleSet]) -> Callable[[str], timedelta]:
    """How long a rule's alert stays open: its cooldown in the active rule set (hot reloads included)."""

    def cooldown(rule_id: str) -> timedelta:
        rule = rules().by_id(rule_id)
        return DEFAULT_OPEN_FOR if rule is None else rule.cooldown

    return cooldown


class RedisOpenAlerts:
    def __init__(
        self,
        redis: Redis,
        *,
        open_for: Callable[[str], timedelta],
        gauge: Gauge | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``gauge``: ``churnwatch_open_alerts``, updated after each write that succeeded."""
        self._redis = redis
        self._open_for = open_for
        self._clock = clock
        self._gauge = None if gauge is None else OpenAlertsGauge(gauge, self.until)

    def until(self, alert: Alert) -> datetime:
        return alert.detected_at + self._open_for(alert.rule_id)

    async def opened(self, alert: Alert) -> None:
        key = keys.open_alerts(alert.customer_id)
        until = self.until(alert)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, alert.alert_id, _Entry(alert=alert, until=until).model_dump_json())
            pipe.pexpireat(key, epoch_ms(until), nx=True)  # a new key: its first deadline
            pipe.pexpireat(key, epoch_ms(until), gt=True)  # or a later one than it has
            await pipe.execute()
        if self._gauge is not None:
            self._gauge.opened(alert, self._clock())

    async def closed(self, resolution: Alert) -> None:
        if resolution.resolves is not None:
            await self._redis.hdel(keys.open_alerts(resolution.customer_id), resolution.resolves)
        if self._gauge is not None:
            self._gauge.closed(resolution, self._clock())

    async def open_of(self, customer_id: str, now: datetime) -> Sequence[Alert]:
        """Read only (the delivery path's call); entries past their time are skipped, and go with the key."""
        raw: dict[Any, Any] = await self._redis.hgetall(keys.open_alerts(customer_id))
        found = []
        for alert_id, value in raw.items():
            try:
                entry = _Entry.model_validate_json(value)
            except ValidationError as exc:  # one unreadable entry must not stop the customer's alerts
                log.warning("open alert %r of customer %s is unreadable, ignored: %s", alert_id, customer_id, exc)
                continue
            if entry.until > now:
                found.append(entry.alert)
        return found


class OpenAlertsGauge:
    """``churnwatch_open_alerts{rule,severity}`` as this worker saw them: the alerts it read the
    firing record of, minus those it read the resolution of or whose time passed.

    Per worker: the store is per customer (Redis Cluster safe), so no one key holds a count to read.
    After a rebalance, an alert another worker opened is not in this worker's figure, and one this
    worker opened but another resolved stays in it until its time passes; a restart starts from 0.
    Summed over the workers it is the deployment's figure when no partition changed hands.
    """

    def __init__(self, gauge: Gauge, until: Callable[[Alert], datetime]) -> None:
        self._gauge = gauge
        self._until = until
        self._open: dict[str, tuple[str, str, datetime]] = {}

    def opened(self, alert: Alert, now: datetime) -> None:
        self._open[alert.alert_id] = (alert.rule_id, alert.severity.value, self._until(alert))
        self._refresh(now)

    def closed(self, resolution: Alert, now: datetime) -> None:
        if resolution.resolves is not None:
            self._open.pop(resolution.resolves, None)
        self._refresh(now)

    def _refresh(self, now: datetime) -> None:
        self._open = {i: entry for i, entry in self._open.items() if entry[2] > now}
        counts: dict[tuple[str, str], int] = {}
        for rule, severity, _ in self._open.values():
            counts[(rule, severity)] = counts.get((rule, severity), 0) + 1
        for labels in {tuple(s.labels.values()) for m in self._gauge.collect() for s in m.samples}:
            if labels not in counts:
                self._gauge.labels(*labels).set(0)
        for (rule, severity), count in counts.items():
            self._gauge.labels(rule=rule, severity=severity).set(count)
