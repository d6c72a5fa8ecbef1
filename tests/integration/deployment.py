"""A churnwatch deployment for integration tests: a worker process on the real local stack, its own
topics and consumer group, and a local HTTP receiver standing in for Slack."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerts.model import Alert
from stream.localstack import StackInfo
from stream.localstack.worker import WorkerProcess, running_worker
from stream.settings import Topics
from tests.integration.kafka_io import read_topic
from tests.integration.threaded_receiver import ThreadedReceiver, threaded_receiver

SLACK_PATH = "/services/T000/B000/not-a-real-secret"
WEBHOOK_PATH = "/hooks/churn-alerts"


@dataclass
class Deployment:
    stack: StackInfo
    topics: Topics
    worker: WorkerProcess
    slack: ThreadedReceiver
    log: Path
    env: Mapping[str, str]
    """The worker's environment: another worker started with it joins the same group and topics."""

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the worker's /metrics (0 if absent)."""
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        for line in self.worker.get("/metrics").splitlines():
            head, _, value = line.rpartition(" ")
            if head.split("{")[0] == name and all(w in head for w in wanted):
                return float(value)
        return 0.0

    def rule_set_version(self) -> str:
        return str(json.loads(self.worker.get("/healthz"))["rule_set"])

    def processed(self, topic: str) -> float:
        """Events the worker finished processing on ``topic`` (from its own /metrics)."""
        return self.metric("churnwatch_event_processing_seconds_count", topic=topic)

    def wait_processed(self, topic: str, count: float, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.processed(topic) < count:
            assert time.monotonic() < deadline, f"worker processed {self.processed(topic)} of {count} on {topic}"
            time.sleep(0.2)

    async def alerts_for(self, customer_id: str, count: int, timeout: float = 60) -> list[Alert]:
        def mine(records: list[Any]) -> list[Alert]:
            return [Alert.model_validate_json(r.value) for r in records if r.key == customer_id.encode()]

        records = await read_topic(
            self.stack.kafka_bootstrap,
            self.topics.alerts,
            until=lambda rs: len(mine(rs)) >= count,
            timeout=timeout,
            security=self.stack.kafka_security(),
        )
        return mine(records)

    def slack_posts_for(self, customer_id: str) -> list[Any]:
        return [r.json for r in self.slack.requests if r.path == SLACK_PATH and customer_id in json.dumps(r.json)]

    def webhook_posts_for(self, customer_id: str) -> list[Any]:
        return [r for r in self.slack.requests if r.path == WEBHOOK_PATH and customer_id in json.dumps(r.json)]


@contextmanager
def deploy(local_stack: StackInfo, log_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[Deployment]:
    """Start a worker with unique topics and group (plus ``env``); stop it afterwards."""
    run = uuid.uuid4().hex[:8]
    topics = Topics(
        purchases=f"e2e-{run}.purchases",
        interactions=f"e2e-{run}.interactions",
        feedback=f"e2e-{run}.feedback",
        alerts=f"e2e-{run}.alerts",
        deadletter=f"e2e-{run}.deadletter",
    )
    log = log_dir / f"worker-{run}.log"
    with threaded_receiver() as slack:
        worker_env = {
            "CHURNWATCH_APP_ID": f"churnwatch-e2e-{run}",
            "CHURNWATCH_SLACK_WEBHOOK_URL": slack.url_for(SLACK_PATH),
            "CHURNWATCH_WEBHOOK_URL": slack.url_for(WEBHOOK_PATH),
            # Not made yet, two levels deep: the worker makes its own data directory.
            "CHURNWATCH_DATA_DIR": str(log_dir / f"data-{run}" / "faust"),
            **{f"CHURNWATCH_TOPIC_{name.upper()}": value for name, value in topics.model_dump().items()},
            **(env or {}),
        }
        try:
            with running_worker(local_stack, env=worker_env, output=log) as worker:
                try:
                    yield Deployment(local_stack, topics, worker, slack, log, worker_env)
                finally:  # the worker's own counters, for whoever reads a failing test's output
                    if worker.process.poll() is None:
                        counters = [ln for ln in worker.get("/metrics").splitlines() if ln.startswith("churnwatch_")]
                        print("\n".join(ln for ln in counters if "_total{" in ln))
        finally:
            print(log.read_text()[-3000:])
