"""Silences on the real redis-server: the store (add, list, expire, retention, muted counts), the
``churnwatch silence`` command, and the delivery agent muting a matching alert while delivering others."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from alerts.model import Alert
from alerts.silence import Listing, Matcher, Silence, SilenceError, SilenceState, UnknownSilenceError, new_silence
from stream.cli import main
from stream.contracts import SourceRecord
from stream.delivery import AlertDelivery, Handled
from stream.localstack import StackInfo
from stream.metrics import Metrics
from stream.silence_store import CachedSilences, RedisSilenceStore
from stream.windows import keys
from tests import alerts_factory
from tests.fakes import FlakyDeadLetters, FlakyDeliveryLog, RecordingNotifier

HOUR = timedelta(hours=1)


def app_id() -> str:
    return f"silences-{uuid.uuid4().hex[:10]}"


def make_silence(
    *matchers: str, now: datetime, ends: datetime | None = None, starts: datetime | None = None
) -> Silence:
    return new_silence(
        [Matcher.parse(m) for m in matchers],
        starts_at=starts,
        ends_at=ends or now + 24 * HOUR,
        created_by="ana",
        comment="planned break",
        now=now,
    )


def make_alert(customer_id: str, alert_id: str) -> Alert:
    return alerts_factory.make_alert(alert_id=alert_id, customer_id=customer_id, rule_id="nps-detractor")


async def test_added_silences_are_listed_by_state_and_expire_by_hand(redis: Redis) -> None:
    now = datetime.now(UTC)
    store = RedisSilenceStore(redis, app_id())
    active = make_silence("customer_id=cust-1", now=now)
    pending = make_silence("rule=spend-drop", now=now, starts=now + HOUR, ends=now + 2 * HOUR)
    ended = make_silence("rule=x", now=now - 2 * HOUR, ends=now - HOUR)
    for s in (active, pending, ended):
        await store.add(s)
    assert await store.get(active.id) == active
    assert await store.silences(Listing.CURRENT, now) == [active, pending]  # by start
    assert await store.silences(Listing.EXPIRED, now) == [ended]
    assert await store.silences(Listing.ALL, now) == [ended, active, pending]
    assert list(await store.current(now)) == [active, pending]

    expired = await store.expire(active.id, by="bo", now=now)
    assert (expired.state(now), expired.expired_by, expired.ends_at) == (SilenceState.EXPIRED, "bo", now)
    assert await store.get(active.id) == expired
    assert await store.silences(Listing.CURRENT, now) == [pending]
    with pytest.raises(SilenceError, match="already ended"):
        await store.expire(active.id, by="bo", now=now)
    with pytest.raises(UnknownSilenceError, match="no silence nope"):
        await store.expire("nope", by="bo", now=now)


async def test_silences_live_in_one_hash_per_app_and_expired_ones_go_after_the_retention(redis: Redis) -> None:
    now, app = datetime.now(UTC), app_id()
    store = RedisSilenceStore(redis, app)
    old = make_silence("rule=x", now=now - 9 * 24 * HOUR, ends=now - 8 * 24 * HOUR)
    recent = make_silence("rule=y", now=now - 7 * 24 * HOUR, ends=now - 6 * 24 * HOUR - HOUR)
    for s in (old, recent):
        await store.add(s)
    await store.record_silenced(old, make_alert("c", "a-old"))
    assert await redis.hlen(keys.silences(app)) == 2 and keys.silences(app) == f"cw:silences:{{{app}}}"
    assert await store.silences(Listing.EXPIRED, now) == [recent]  # 6 days after its end: kept
    assert not await redis.hexists(keys.silences(app), old.id)  # 8 days: gone, with its muted set
    assert not await redis.exists(keys.silenced_alerts(app, old.id))
    assert await RedisSilenceStore(redis, app_id()).silences(Listing.ALL, now) == []  # another app's are apart


async def test_muted_alerts_are_counted_once_each_and_their_set_expires_with_the_silence(redis: Redis) -> None:
    now, app = datetime.now(UTC), app_id()
    store = RedisSilenceStore(redis, app)
    muting, other = make_silence("customer_id=c", now=now, ends=now + HOUR), make_silence("rule=z", now=now)
    await store.add(muting)
    await store.add(other)
    for alert_id in ("a1", "a2", "a1"):  # a redelivered record counts once
        await store.record_silenced(muting, make_alert("c", alert_id))
    assert await store.muted_counts([muting.id, other.id]) == {muting.id: 2, other.id: 0}
    ttl = await redis.pttl(keys.silenced_alerts(app, muting.id))
    assert timedelta(days=7) < timedelta(milliseconds=ttl) <= timedelta(days=7) + HOUR
    await store.expire(muting.id, by="bo", now=now)
    ttl = await redis.pttl(keys.silenced_alerts(app, muting.id))
    assert timedelta(days=7) - HOUR < timedelta(milliseconds=ttl) <= timedelta(days=7)


async def test_an_unreadable_entry_is_skipped_not_fatal(redis: Redis) -> None:
    now, app = datetime.now(UTC), app_id()
    store = RedisSilenceStore(redis, app)
    good = make_silence("rule=x", now=now)
    await store.add(good)
    await redis.hset(keys.silences(app), "broken", "{not json")
    assert list(await store.current(now)) == [good]


async def test_delivery_sends_nothing_for_a_silenced_alert_and_delivers_the_others(redis: Redis) -> None:
    now, app = datetime.now(UTC), app_id()
    store = RedisSilenceStore(redis, app)
    muting = make_silence("customer_id=cust-muted", now=now - HOUR)
    await store.add(muting)
    metrics, slack = Metrics(CollectorRegistry()), RecordingNotifier("slack")
    delivery = AlertDelivery(
        [slack], FlakyDeliveryLog(), FlakyDeadLetters(), metrics, attempts=1, backoff_max=0.01,
        silences=CachedSilences(store),
    )  # fmt: skip

    def record(alert: Alert) -> SourceRecord:
        return SourceRecord("churnwatch.alerts", 0, 1, alert.customer_id.encode(), alert.model_dump_json().encode())

    assert await delivery.handle(record(make_alert("cust-muted", "a-muted"))) is Handled.SILENCED
    assert await delivery.handle(record(make_alert("cust-told", "a-told"))) is Handled.DELIVERED
    assert slack.received == ["a-told"]
    sample = metrics.registry.get_sample_value
    assert sample("churnwatch_alerts_silenced_total", {"rule": "nps-detractor", "status": "firing"}) == 1
    assert sample("churnwatch_alert_deliveries_total", {"sink": "slack", "outcome": "silenced"}) == 1
    assert await store.muted_counts([muting.id]) == {muting.id: 1}


def test_the_silence_command_adds_lists_and_expires(local_stack: StackInfo) -> None:
    env = {"CHURNWATCH_REDIS_URL": local_stack.redis_url, "CHURNWATCH_APP_ID": app_id()}

    def run(*arguments: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(main, ["silence", *arguments], env=env)
        return result.exit_code, result.stdout, result.stderr

    code, out, err = run("add", "--customer", "cust-9", "--matcher", "severity=~warning|critical",
                         "--duration", "7d", "--author", "ana", "--comment", "on holiday until the 20th")  # fmt: skip
    assert code == 0, err
    silence_id = out.strip()
    assert uuid.UUID(silence_id) and "silenced customer_id=cust-9 severity=~warning|critical until" in err

    code, out, err = run("list")
    (line,) = out.splitlines()
    assert line.startswith(f"{silence_id}\tactive\t") and "\t0 muted\tana: on holiday until the 20th" in line
    assert err.strip() == "1 current silence(s)"
    code, out, _ = run("list", "--json")
    (listed,) = json.loads(out)
    assert listed["state"] == "active" and listed["muted"] == 0 and listed["created_by"] == "ana"
    assert listed["matchers"] == [
        {"name": "customer_id", "value": "cust-9", "regex": False},
        {"name": "severity", "value": "warning|critical", "regex": True},
    ]
    ends = datetime.fromisoformat(listed["ends_at"]) - datetime.fromisoformat(listed["starts_at"])
    assert ends == timedelta(days=7)

    code, out, err = run("expire", silence_id, "--author", "bo")
    assert code == 0, err
    assert out.startswith(f"expired {silence_id} (customer_id=cust-9 severity=~warning|critical) at ")
    assert run("list")[1] == ""
    code, out, _ = run("list", "--expired", "--json")
    (listed,) = json.loads(out)
    assert (listed["id"], listed["state"], listed["expired_by"]) == (silence_id, "expired", "bo")
    assert len(json.loads(run("list", "--all", "--json")[1])) == 1

    code, _, err = run("expire", silence_id, "--author", "bo")
    assert code == 1 and "already ended" in err
    code, _, err = run("expire", "no-such-id", "--author", "bo")
    assert code == 1 and "no silence no-such-id" in err
