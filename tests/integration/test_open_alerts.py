"""The open-alert store on a real redis-server: opened and closed per customer, idempotent, open for
its rule's cooldown, the key expiring with its last alert, and the worker's gauge fed by it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from alerts.model import Alert
from rules.base import Severity
from stream.metrics import Metrics
from stream.open_alerts import RedisOpenAlerts
from stream.windows import keys
from tests.alerts_factory import make_alert

NOW = datetime.now(UTC).replace(microsecond=0)
COOLDOWNS = {"nps-detractor": timedelta(days=30), "purchase-overdue": timedelta(hours=1)}


def alert(customer: str, rule: str, severity: str, *, detected: datetime = NOW) -> Alert:
    return make_alert(
        alert_id=str(uuid.uuid4()),
        customer_id=customer,
        rule_id=rule,
        severity=Severity(severity),
        evaluated_at=detected,
        detected_at=detected,  # open for the rule's cooldown from here
    )


def resolution_of(firing: Alert) -> Alert:
    return firing.model_copy(update={"alert_id": str(uuid.uuid4()), "status": "resolved", "resolves": firing.alert_id})


def store(redis: Redis, metrics: Metrics | None = None, now: datetime = NOW) -> RedisOpenAlerts:
    return RedisOpenAlerts(
        redis,
        open_for=lambda rule: COOLDOWNS.get(rule, timedelta(days=7)),
        gauge=None if metrics is None else metrics.open_alerts,
        clock=lambda: now,
    )


async def test_opened_and_closed_per_customer_and_idempotent(redis: Redis) -> None:
    customer, other = f"open-{uuid.uuid4().hex[:8]}", f"open-{uuid.uuid4().hex[:8]}{{x}}"
    open_alerts = store(redis)
    critical, warning = alert(customer, "nps-detractor", "critical"), alert(customer, "purchase-overdue", "warning")
    theirs = alert(other, "nps-detractor", "critical")
    for a in (critical, critical, warning, theirs):  # a redelivered record repeats its write
        await open_alerts.opened(a)
    assert sorted(a.alert_id for a in await open_alerts.open_of(customer, NOW)) == sorted(
        [critical.alert_id, warning.alert_id]
    )
    assert await open_alerts.open_of(other, NOW) == [theirs]
    await open_alerts.closed(resolution_of(critical))
    await open_alerts.closed(resolution_of(critical))  # closing twice is harmless
    assert await open_alerts.open_of(customer, NOW) == [warning]
    assert await open_alerts.open_of(f"nobody-{uuid.uuid4().hex}", NOW) == []


async def test_an_alert_stays_open_for_its_rules_cooldown_and_the_key_expires_with_the_last(redis: Redis) -> None:
    customer = f"open-{uuid.uuid4().hex[:8]}"
    open_alerts = store(redis)
    short = alert(customer, "purchase-overdue", "warning")  # 1 h
    await open_alerts.opened(short)
    key = keys.open_alerts(customer)
    first = await redis.pexpiretime(key)
    assert abs(first - int((NOW + timedelta(hours=1)).timestamp() * 1000)) < 1000
    long = alert(customer, "nps-detractor", "critical")  # 30 days: the key's deadline moves out
    await open_alerts.opened(long)
    assert await redis.pexpiretime(key) > first
    await open_alerts.opened(short)  # an earlier deadline never shortens it
    assert abs(await redis.pexpiretime(key) - int((NOW + timedelta(days=30)).timestamp() * 1000)) < 1000
    assert [a.alert_id for a in await open_alerts.open_of(customer, NOW + timedelta(hours=2))] == [long.alert_id]
    assert await open_alerts.open_of(customer, NOW + timedelta(days=31)) == []


async def test_an_unreadable_entry_is_skipped(redis: Redis) -> None:
    customer = f"open-{uuid.uuid4().hex[:8]}"
    open_alerts = store(redis)
    good = alert(customer, "nps-detractor", "critical")
    await open_alerts.opened(good)
    await redis.hset(keys.open_alerts(customer), "garbage", b"{not json")
    assert await open_alerts.open_of(customer, NOW) == [good]


async def test_the_gauge_counts_open_alerts_by_rule_and_severity(redis: Redis) -> None:
    metrics = Metrics(CollectorRegistry())
    customer = f"open-{uuid.uuid4().hex[:8]}"

    def gauge(rule: str, severity: str) -> float | None:
        return metrics.registry.get_sample_value("churnwatch_open_alerts", {"rule": rule, "severity": severity})

    open_alerts = store(redis, metrics)
    critical, warning = alert(customer, "nps-detractor", "critical"), alert(customer, "purchase-overdue", "warning")
    for a in (critical, critical, warning):
        await open_alerts.opened(a)
    assert gauge("nps-detractor", "critical") == 1 and gauge("purchase-overdue", "warning") == 1
    await open_alerts.closed(resolution_of(critical))
    assert gauge("nps-detractor", "critical") == 0 and gauge("purchase-overdue", "warning") == 1
