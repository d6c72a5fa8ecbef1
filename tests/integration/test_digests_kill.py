"""A worker killed -9 while a digest is on its way: its successor sends the same digest again, under
the same Idempotency-Key, and no alert of it is lost or sent in another digest.

The receiver holds every request for a few seconds, so the kill lands after the digest was sent and
before the worker heard back: the digest is still marked in flight in Redis, its alerts moved into
it. The successor's flush finds it there once the dead worker's group lock has lapsed
(``alerts.digests.lock_ttl`` of one attempt: about 16 s) and sends it as it is.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis import Redis as SyncRedis

from alerts.grouping import GroupState
from alerts.model import Alert
from rules.base import Severity
from stream.alert_groups import key
from stream.localstack import StackInfo
from stream.localstack.worker import running_worker
from tests.integration.deployment import WEBHOOK_PATH, Deployment, deploy
from tests.integration.kafka_io import produce
from tests.integration.waiting import wait_for
from tests.unit.http_receiver import Reply

ALERTS = 30
HOLD_SECONDS = 4.0  # under the webhook's 10 s timeout: the held request still succeeds
GROUP = "storm@route.routes[1]"
ROUTES = """
receivers:
  - {name: default, type: log}
  - {name: storm, type: webhook, url_env: CHURNWATCH_WEBHOOK_URL}
route:
  receiver: default
  routes:
    - receiver: storm
      matchers: {rule: storm-test}
      digest: true
      group_wait: 1s
      group_interval: 1s
"""


def storm() -> list[Alert]:
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:6]
    return [
        Alert(
            alert_id=str(uuid.uuid4()),
            customer_id=f"kill-{run}-{n:02d}",
            rule_id="storm-test",
            severity=Severity.WARNING,
            message=f"alert {n}",
            evidence={},
            customer={"lifetime_spend": float(n)},
            evaluated_at=now,
            detected_at=now,
            trigger_event_id=f"evt-{run}-{n}",
            trigger_topic="churnwatch.purchases",
        )
        for n in range(ALERTS)
    ]


def digest_posts(deployment: Deployment) -> list[tuple[str, dict[str, Any]]]:
    return [
        (r.headers["Idempotency-Key"], r.json)
        for r in deployment.slack.requests
        if r.path == WEBHOOK_PATH and isinstance(r.json, dict) and r.json.get("type") == "digest"
    ]


async def test_a_worker_killed_mid_digest_leaves_it_to_its_successor_who_sends_the_same_digest(
    local_stack: StackInfo, tmp_path: Path
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    env = {
        "CHURNWATCH_ROUTES_FILE": str(routes),
        "CHURNWATCH_DELIVERY_ATTEMPTS": "1",
        "CHURNWATCH_DELIVERY_BACKOFF_MAX": "1s",
        "CHURNWATCH_KAFKA_SESSION_TIMEOUT": "8",
    }
    alerts = storm()
    with deploy(local_stack, tmp_path, env) as deployment:
        deployment.slack.receiver.default = Reply(200, delay=HOLD_SECONDS)
        await produce(
            local_stack.kafka_bootstrap,
            [(deployment.topics.alerts, b"one-partition", a.model_dump_json().encode()) for a in alerts],
        )

        def grouped() -> float:
            return deployment.metric("churnwatch_alert_deliveries_total", sink="storm", outcome="grouped")

        wait_for(lambda: grouped() == ALERTS, "every alert in its group", 60, every=0.1)
        wait_for(lambda: len(digest_posts(deployment)) >= 1, "the digest on its way", 60, every=0.1)
        os.kill(deployment.worker.process.pid, signal.SIGKILL)  # our own child, its request held
        deployment.worker.process.wait()
        [(first_key, first)] = digest_posts(deployment)

        redis = SyncRedis.from_url(local_stack.redis_url)
        app = deployment.env["CHURNWATCH_APP_ID"]
        raw_state = redis.get(key(app, "state", GROUP))
        assert raw_state is not None
        state = GroupState.model_validate_json(raw_state)
        assert state.in_flight is not None and state.in_flight.digest_id == first_key  # the kill landed mid-send
        carried = {entry["alert_id"] for entry in first["all"]}
        waiting = {k.decode() for k in redis.hkeys(key(app, "pending", GROUP))}
        assert not carried & waiting  # moved into the digest before it was sent

        deployment.slack.receiver.default = Reply(200)
        with running_worker(local_stack, env=deployment.env, output=tmp_path / "second.log"):
            wait_for(lambda: len(digest_posts(deployment)) >= 2, "the successor's send", 90, every=0.1)
            wait_for(lambda: redis.hlen(key(app, "pending", GROUP)) == 0, "every alert sent", 60, every=0.1)
            time.sleep(2)  # a resend would arrive right behind
            posts = digest_posts(deployment)
            final_state = GroupState.model_validate_json(redis.get(key(app, "state", GROUP)) or b"{}")
        redis.close()

    again = [body for digest_key, body in posts if digest_key == first_key]
    assert again == [first, first]  # the same digest, at most once more, same Idempotency-Key
    others = [body for digest_key, body in posts if digest_key != first_key]
    in_others = [entry["alert_id"] for body in others for entry in body["all"]]
    assert not carried & set(in_others)  # no alert of it in another digest
    assert len(in_others) == len(set(in_others))
    assert carried | set(in_others) == {a.alert_id for a in alerts}  # none lost
    assert final_state.in_flight is None
