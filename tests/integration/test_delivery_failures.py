"""Alerts waiting for delivery while the worker's Redis is unresponsive or restarted.

The guarantee under test: an alert on the alerts topic reaches every sink (here the local receiver
standing in for Slack and the generic webhook) exactly once, whatever happens to Redis while it
waits behind Slack's rate limit: the delivery agent stalls and retries the alert it holds instead of
crashing and committing past it.

The worker gets a redis-server of its own, started here, so this module can stop, kill and restart
exactly that process (by the pid it started) without touching the session's stack.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerts.model import Alert
from rules.base import Severity
from stream.localstack import StackInfo
from stream.localstack.ports import free_ports
from stream.localstack.processes import pid_alive
from stream.localstack.redis_server import ensure_redis_server, redis_url, start_redis, wait_ready
from tests.events_factory import unique_customer
from tests.integration.deployment import SLACK_PATH, WEBHOOK_PATH, Deployment, deploy
from tests.integration.kafka_io import produce
from tests.integration.waiting import wait_for

ALERTS_PER_CASE = 6
OUTAGE_SECONDS = 16.0


@dataclass
class OwnRedis:
    """One redis-server this module started; restarted on the same port and directory."""

    binary: str
    port: int
    directory: Path
    pid: int = 0

    @property
    def url(self) -> str:
        return redis_url(self.port)

    def start(self) -> None:
        self.pid = start_redis(self.binary, port=self.port, redis_dir=self.directory, log_path=self.directory / "log")
        wait_ready(self.url, timeout=15, pid=self.pid, log_path=self.directory / "log")

    def kill(self) -> None:
        """SIGKILL the pid started here (our child) and reap it."""
        if self.pid and pid_alive(self.pid):
            os.kill(self.pid, signal.SIGCONT)  # in case a failed test left it stopped
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        self.pid = 0


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    server = OwnRedis(ensure_redis_server(), free_ports(1)[0], tmp_path_factory.mktemp("own-redis"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def deployment(
    local_stack: StackInfo, own_redis: OwnRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    # A 2 s socket timeout (the URL's own option): an unresponsive Redis surfaces as TimeoutError
    # several times within the pause, as it would under a client configured to fail fast.
    env = {
        "CHURNWATCH_REDIS_URL": f"{own_redis.url}?socket_timeout=2",
        "CHURNWATCH_SLACK_MESSAGES_PER_SECOND": "0.5",
    }
    with deploy(local_stack, tmp_path_factory.mktemp("worker"), env) as running:
        yield running


def make_alerts(prefix: str, count: int) -> list[Alert]:
    now = datetime.now(UTC)
    return [
        Alert(
            alert_id=str(uuid.uuid4()),
            customer_id=unique_customer(prefix),
            rule_id="nps-detractor",
            severity=Severity.WARNING,
            message=f"{prefix} alert {n}",
            evidence={"score": 3},
            evaluated_at=now,
            detected_at=now,
            trigger_event_id=f"evt-{uuid.uuid4().hex[:8]}",
            trigger_topic="churnwatch.feedback",
        )
        for n in range(count)
    ]


async def publish(deployment: Deployment, alerts: list[Alert]) -> None:
    await produce(
        deployment.stack.kafka_bootstrap,
        [(deployment.topics.alerts, a.customer_id.encode(), a.model_dump_json().encode()) for a in alerts],
    )


def received(deployment: Deployment, alerts: list[Alert]) -> tuple[Counter[str], Counter[str]]:
    """How often each alert id reached Slack and the webhook."""
    ids = {a.alert_id for a in alerts}
    slack: Counter[str] = Counter()
    hooks: Counter[str] = Counter()
    for request in deployment.slack.requests:
        if request.path == SLACK_PATH:
            slack.update(i for i in ids if i in json.dumps(request.json))
        elif request.path == WEBHOOK_PATH and request.headers.get("Idempotency-Key") in ids:
            hooks[request.headers["Idempotency-Key"]] += 1
    return slack, hooks


def retried(deployment: Deployment) -> float:
    """Redis or Kafka calls that failed and were retried, any operation."""
    lines = deployment.worker.get("/metrics").splitlines()
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines if ln.startswith("churnwatch_dependency_errors_total{"))


def assert_each_once(deployment: Deployment, alerts: list[Alert], timeout: float) -> None:
    def all_in() -> bool:
        slack, hooks = received(deployment, alerts)
        return len(slack) == len(alerts) and len(hooks) == len(alerts)

    try:
        wait_for(all_in, "every alert to reach Slack and the webhook", timeout)
    finally:
        slack, hooks = received(deployment, alerts)
        print(f"slack: {len(slack)}/{len(alerts)} alerts {dict(slack)}; webhook: {len(hooks)}/{len(alerts)}")
    time.sleep(1)  # a duplicate would arrive right behind
    slack, hooks = received(deployment, alerts)
    assert slack == Counter({a.alert_id: 1 for a in alerts})
    assert hooks == Counter({a.alert_id: 1 for a in alerts})
    assert deployment.metric("churnwatch_deadletters_total") == 0


async def test_alerts_queued_behind_the_rate_limit_survive_redis_paused(
    deployment: Deployment, own_redis: OwnRedis
) -> None:
    """SIGSTOP redis-server for ~16 s while alerts wait behind Slack's rate limit (0.5/s, burst 3)."""
    alerts = make_alerts("paused", ALERTS_PER_CASE)
    before = retried(deployment)
    await publish(deployment, alerts)
    wait_for(lambda: len(received(deployment, alerts)[0]) >= 1, "the first alert to reach Slack", 30)
    os.kill(own_redis.pid, signal.SIGSTOP)
    try:
        time.sleep(OUTAGE_SECONDS)
        delivered_during = len(received(deployment, alerts)[0])
    finally:
        os.kill(own_redis.pid, signal.SIGCONT)
    assert delivered_during < len(alerts)  # the outage did hold alerts back
    assert_each_once(deployment, alerts, timeout=40)
    assert retried(deployment) > before  # stalled and retried, counted


async def test_alerts_queued_behind_the_rate_limit_survive_redis_killed_and_restarted(
    deployment: Deployment, own_redis: OwnRedis
) -> None:
    """SIGKILL redis-server while alerts wait, restart it (empty) on the same port after ~4 s."""
    alerts = make_alerts("killed", ALERTS_PER_CASE)
    before = retried(deployment)
    await publish(deployment, alerts)
    wait_for(lambda: len(received(deployment, alerts)[0]) >= 1, "the first alert to reach Slack", 30)
    own_redis.kill()
    time.sleep(4)
    own_redis.start()
    assert_each_once(deployment, alerts, timeout=40)
    assert retried(deployment) > before
