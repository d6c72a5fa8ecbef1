"""Through the real broker and Redis: a worker process consumes Kafka and alerts reach the alerts
topic and a local HTTP receiver standing in for Slack (posted to by the real slack_sdk client)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stream.kafka_sinks import dead_letter_headers
from stream.localstack import StackInfo
from tests.events_factory import feedback, interaction, unique_customer, weekly_purchases, wire
from tests.integration.deployment import Deployment, deploy
from tests.integration.kafka_io import produce, produce_events, read_topic


@pytest.fixture(scope="module")
def deployment(local_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deploy(local_stack, tmp_path_factory.mktemp("worker")) as running:
        yield running


NOW = datetime.now(UTC).replace(microsecond=0)


async def test_fading_customer_and_detractor_alert_on_topic_and_slack(deployment: Deployment) -> None:
    cid = unique_customer("e2e")
    events = [*weekly_purchases(cid, NOW, 119, 40), interaction(cid, NOW - timedelta(minutes=5)), feedback(cid, NOW, 3)]
    await produce_events(deployment.stack.kafka_bootstrap, deployment.topics, events)

    alerts = await deployment.alerts_for(cid, 2)
    assert sorted(a.rule_id for a in alerts) == ["nps-detractor", "purchase-overdue"]
    overdue = next(a for a in alerts if a.rule_id == "purchase-overdue")
    assert overdue.evidence["typical_gap_days"] == 7.0 and overdue.evidence["purchase_days"] == 12

    deadline = time.monotonic() + 30
    while (len(deployment.slack_posts_for(cid)) < 2 or len(deployment.webhook_posts_for(cid)) < 2) and (
        time.monotonic() < deadline
    ):
        await asyncio.sleep(0.2)
    posts = deployment.slack_posts_for(cid)
    assert len(posts) == 2
    text = json.dumps(posts)
    assert "blocks" in posts[0] and "overdue for this customer" in text
    assert "NPS answer 3/10" in text
    hooks = deployment.webhook_posts_for(cid)
    assert sorted(h.json["rule_id"] for h in hooks) == ["nps-detractor", "purchase-overdue"]
    assert {h.headers["Idempotency-Key"] for h in hooks} == {a.alert_id for a in alerts}


async def test_redelivered_events_count_once_and_alert_once(deployment: Deployment) -> None:
    cid = unique_customer("redeliver")
    events = [*weekly_purchases(cid, NOW, 119, 40), interaction(cid, NOW)]
    topics = deployment.topics
    await produce_events(deployment.stack.kafka_bootstrap, topics, events)
    (first,) = await deployment.alerts_for(cid, 1)

    before_p, before_i = deployment.processed(topics.purchases), deployment.processed(topics.interactions)
    await produce_events(deployment.stack.kafka_bootstrap, topics, events)  # the same events again
    deployment.wait_processed(topics.purchases, before_p + len(events) - 1)
    deployment.wait_processed(topics.interactions, before_i + 1)

    assert await deployment.alerts_for(cid, 2, timeout=3) == [first]
    await asyncio.sleep(1)
    assert len(deployment.slack_posts_for(cid)) == 1
    metrics = deployment.worker.get("/metrics")
    assert f'churnwatch_events_consumed_total{{outcome="duplicate",topic="{topics.purchases}"}}' in metrics


async def test_garbage_is_dead_lettered_and_good_events_behind_it_flow(deployment: Deployment) -> None:
    cid = unique_customer("garbage")
    key = cid.encode()
    good = feedback(cid, NOW, 2)
    topic = deployment.topics.feedback
    await produce(
        deployment.stack.kafka_bootstrap,
        [
            (topic, key, b"\x00\x01 definitely not json"),
            (topic, key, wire(good).replace(b'"score":2', b'"score":"two"')),
            (topic, key, wire(feedback(cid, NOW + timedelta(days=30), 5))),  # far future
            (topic, key, b"{" + b" " * 70_000 + b"}"),  # oversized
            (topic, key, wire(good)),
        ],
    )
    (alert,) = await deployment.alerts_for(cid, 1)
    assert alert.rule_id == "nps-detractor"

    dead = await read_topic(
        deployment.stack.kafka_bootstrap,
        deployment.topics.deadletter,
        until=lambda rs: len([r for r in rs if r.key == key]) >= 4,
    )
    mine = [r for r in dead if r.key == key]
    reasons = [dead_letter_headers(r.headers)["reason"] for r in mine]
    assert reasons == ["not_json", "schema", "future_timestamp", "too_large"]
    assert mine[0].value == b"\x00\x01 definitely not json"
    first = dead_letter_headers(mine[0].headers)
    assert first["source.topic"] == topic and first["source.partition"].isdigit() and first["source.offset"].isdigit()
    assert "score" in dead_letter_headers(mine[1].headers)["detail"]


def test_health_and_metrics_follow_prometheus_conventions(deployment: Deployment, tmp_path: Path) -> None:
    assert json.loads(deployment.worker.get("/healthz"))["status"] == "ok"
    exposition = deployment.worker.get("/metrics")
    for name in (
        "churnwatch_events_consumed_total",
        "churnwatch_event_processing_seconds_bucket",
        "churnwatch_rule_evaluations_total",
        "churnwatch_alerts_fired_total",
        "churnwatch_alert_deliveries_total",
        "churnwatch_deadletters_total",
    ):
        assert name in exposition, name
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    result = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
