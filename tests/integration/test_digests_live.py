"""Grouping through the real worker: a burst of 200 alerts for one digest route, whose storm limit
is 120 an hour, reaches a local HTTP receiver (a signed generic webhook) as digests: within the
limit, the most valuable first, and every alert accounted for: in exactly one digest, or waiting in
the group in Redis and counted ``rate_limited``; none in two digests, none sent on its own.

The alerts are produced straight onto the alerts topic (the delivery agent's input), with one key so
that they arrive in the order sent: most valuable first. Whenever the worker's timer flushes, the
alerts that have arrived are then the most valuable ones, so the digests must carry exactly the 120
most valuable of the 200 however the flushes fall in time.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from alerts.grouping import Pending
from alerts.model import Alert
from rules.base import Severity
from stream.alert_groups import key
from stream.localstack import StackInfo
from tests.integration.deployment import WEBHOOK_PATH, Deployment, deploy
from tests.integration.kafka_io import produce
from tests.integration.waiting import wait_for_async

BURST = 200
LIMIT = 120
GROUP = "storm@route.routes[1]"
ROUTES = f"""
receivers:
  - {{name: default, type: log}}
  - {{name: storm, type: webhook, url_env: CHURNWATCH_WEBHOOK_URL}}
route:
  receiver: default
  routes:
    - receiver: storm
      matchers: {{rule: storm-test}}
      digest: true
      group_wait: 2s
      group_interval: 2s
      max_alerts_per_hour: {LIMIT}
      digest_size: 10
"""


def burst() -> list[Alert]:
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:6]
    return [
        Alert(
            alert_id=str(uuid.uuid4()),
            customer_id=f"storm-{run}-{n:03d}",
            rule_id="storm-test",
            severity=Severity.WARNING,
            message=f"alert {n} of the storm",
            evidence={"days_silent": 30},
            customer={"lifetime_spend": float(10 * (BURST - n)), "segment": "smb"},  # most valuable first
            evaluated_at=now,
            detected_at=now,
            trigger_event_id=f"evt-{run}-{n}",
            trigger_topic="churnwatch.purchases",
        )
        for n in range(BURST)
    ]


@pytest.fixture(scope="module")
def deployment(local_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    config = tmp_path_factory.mktemp("config")
    (config / "routes.yaml").write_text(ROUTES)
    env = {"CHURNWATCH_ROUTES_FILE": str(config / "routes.yaml")}
    with deploy(local_stack, tmp_path_factory.mktemp("worker"), env) as running:
        yield running


def digests(deployment: Deployment) -> dict[str, dict[str, Any]]:
    """Digest documents the receiver got, by Idempotency-Key (a re-send carries the same key)."""
    found: dict[str, dict[str, Any]] = {}
    for request in deployment.slack.requests:
        if request.path == WEBHOOK_PATH and isinstance(request.json, dict) and request.json.get("type") == "digest":
            assert request.headers["Idempotency-Key"] == request.json["digest_id"]
            assert found.setdefault(request.json["digest_id"], request.json) == request.json
    return found


async def test_a_burst_of_200_becomes_digests_within_the_limit_ranked_and_every_alert_accounted_for(
    deployment: Deployment, redis: Redis
) -> None:
    alerts = burst()
    by_id = {a.alert_id: a for a in alerts}
    await produce(
        deployment.stack.kafka_bootstrap,
        [(deployment.topics.alerts, b"one-partition", a.model_dump_json().encode()) for a in alerts],
    )

    def counted(outcome: str) -> float:
        return deployment.metric("churnwatch_alert_deliveries_total", sink="storm", outcome=outcome)

    await wait_for_async(lambda: counted("grouped") == BURST, "every alert in its group", timeout=90)
    await wait_for_async(
        lambda: sum(d["count"] for d in digests(deployment).values()) >= LIMIT, "the digests", timeout=90
    )
    await wait_for_async(
        lambda: counted("rate_limited") >= BURST - LIMIT, "the alerts over the limit counted", timeout=90
    )
    await asyncio.sleep(3)  # time for a digest over the limit, or a second count, to show

    sent = list(digests(deployment).values())
    carried = [entry["alert_id"] for d in sent for entry in d["all"]]
    assert len(carried) == len(set(carried)) == LIMIT  # within the limit, none in two digests
    for d in sent:  # each ranked by customer value, its top ten in full
        values = [entry["lifetime_spend"] for entry in d["all"]]
        assert values == sorted(values, reverse=True)
        assert [a["alert_id"] for a in d["alerts"]] == [e["alert_id"] for e in d["all"][:10]]
        assert d["rest"] == d["count"] - len(d["alerts"])
    most_valuable = sorted(alerts, key=lambda a: -float(a.customer["lifetime_spend"]))  # type: ignore[arg-type]
    assert set(carried) == {a.alert_id for a in most_valuable[:LIMIT]}

    app = deployment.env["CHURNWATCH_APP_ID"]
    raw = await redis.hgetall(key(app, "pending", GROUP))
    waiting = {k.decode(): Pending.model_validate_json(v) for k, v in raw.items()}
    assert set(waiting) == set(by_id) - set(carried)  # the other 80 wait for a later digest
    assert all(p.limited for p in waiting.values())
    assert counted("rate_limited") == BURST - LIMIT  # counted once each
    assert sent[-1]["held_back"] > 0 or len(sent) > 1

    individually = [
        r for r in deployment.slack.requests if r.path == WEBHOOK_PATH and r.headers.get("Idempotency-Key") in by_id
    ]
    assert individually == []  # no alert of the storm was also sent on its own
    assert deployment.metric("churnwatch_alert_digests_total", sink="storm", outcome="delivered") == len(sent)
    assert deployment.metric("churnwatch_alert_digest_alerts_total", sink="storm") == LIMIT
    assert json.dumps(sent).count("churnwatch alerts list --digest") == len(sent)
