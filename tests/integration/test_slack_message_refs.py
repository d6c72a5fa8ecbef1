"""RedisMessageRefs against a real redis-server, and a resolution that updates its original message
after the receiver was rebuilt (a restarted worker) with nothing but Redis to remember it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from alerts.message_refs import MessageRef
from alerts.model import Alert, alert_id_for
from alerts.slack_web import SlackWebApiNotifier
from rules.base import Severity
from stream.slack_message_refs import RedisMessageRefs
from stream.windows import keys
from tests.unit.http_receiver import LocalReceiver, Reply

TTL = timedelta(days=180)
JSON = {"Content-Type": "application/json; charset=utf-8"}


def slack_ok(ts: str) -> Reply:
    return Reply(200, JSON, json.dumps({"ok": True, "channel": "C0CHURN01", "ts": ts}))


async def test_remembers_and_looks_up_with_the_ttl_per_receiver(redis: Redis) -> None:
    alert_id = str(uuid.uuid4())
    refs = RedisMessageRefs(redis, receiver="slack_web", ttl=TTL)
    other = RedisMessageRefs(redis, receiver="slack_vip", ttl=TTL)

    assert await refs.lookup(alert_id) is None
    await refs.remember(alert_id, "C0CHURN01", "1733100000.000100")

    assert await refs.lookup(alert_id) == MessageRef("C0CHURN01", "1733100000.000100")
    assert await other.lookup(alert_id) is None  # another receiver posted nothing for it
    key = keys.slack_message(alert_id, "slack_web")
    assert key == f"cw:slack:{{{alert_id}}}:slack_web"
    assert json.loads(await redis.get(key)) == {"channel": "C0CHURN01", "ts": "1733100000.000100"}
    assert TTL.total_seconds() - 60 < await redis.ttl(key) <= TTL.total_seconds()

    await refs.remember(alert_id, "C0CHURN01", "1733100000.000999")
    assert await refs.lookup(alert_id) == MessageRef("C0CHURN01", "1733100000.000999")


async def test_an_unreadable_value_is_no_ref(redis: Redis) -> None:
    alert_id = str(uuid.uuid4())
    await redis.set(keys.slack_message(alert_id, "slack_web"), b"\xff not json", ex=60)
    assert await RedisMessageRefs(redis, receiver="slack_web", ttl=TTL).lookup(alert_id) is None


async def test_a_ttl_must_be_positive(redis: Redis) -> None:
    with pytest.raises(ValueError, match="ttl"):
        RedisMessageRefs(redis, receiver="slack_web", ttl=timedelta(0))


async def test_a_rebuilt_receiver_updates_the_message_its_predecessor_posted(redis: Redis) -> None:
    customer, claim = f"cust-{uuid.uuid4()}", "claim-1"
    alerted = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
    alert = Alert(
        alert_id=alert_id_for(customer, "purchase-overdue", claim),
        customer_id=customer,
        rule_id="purchase-overdue",
        severity=Severity.WARNING,
        message="No purchase for 42.4 days.",
        evidence={"days_since_purchase": 42.4},
        evaluated_at=alerted,
        detected_at=alerted,
        trigger_event_id="evt-1",
        trigger_topic="churnwatch.purchases",
    )
    resolution = Alert.resolution(
        customer_id=customer,
        rule_id="purchase-overdue",
        claim_key=claim,
        severity=Severity.WARNING,
        alerted_at=alerted,
        returned_at=alerted + timedelta(days=12),
        trigger_event_id="evt-9",
        trigger_topic="churnwatch.purchases",
        detected_at=alerted + timedelta(days=12),
    )

    def receiver_on(server: LocalReceiver) -> SlackWebApiNotifier:
        refs = RedisMessageRefs(redis, receiver="slack_web", ttl=TTL)
        return SlackWebApiNotifier(
            SecretStr("xoxb-1-2-token"), "#churn-alerts", refs, base_url=server.url, messages_per_second=100.0
        )

    replies = [slack_ok("1733100000.000100"), slack_ok("1733100000.000100"), slack_ok("1734136800.000200")]
    async with LocalReceiver(replies) as server:
        await receiver_on(server).notify(alert)
        await receiver_on(server).notify(resolution)  # a new instance: only Redis remembers the message
        await receiver_on(server).notify(alert)  # redelivered: posted before, so not again

    assert [r.path for r in server.requests] == ["/chat.postMessage", "/chat.update", "/chat.postMessage"]
    assert server.requests[1].json["channel"] == "C0CHURN01"
    assert server.requests[1].json["ts"] == "1733100000.000100"
    assert server.requests[2].json["thread_ts"] == "1733100000.000100"
